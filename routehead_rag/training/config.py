"""Every training setting and its default, declared once: the CLI's options are made from these fields, and a
trained router records the config it was trained with (``config.json``, under ``training.config``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import ClassVar

from ..prompt import MAX_DOC_WORDS


def fusion_weight(text: str) -> float | None:
    """``--fusion-weight``: a number, or ``auto`` (``None``: chosen by cross-validation)."""
    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', not {text!r}") from None


def _option(default, help: str, **argparse_options):
    """A config field whose metadata is its command-line option: ``help`` and ``type``/``choices`` where needed."""
    return field(default=default, metadata={"help": help, **argparse_options})


@dataclass
class TrainConfig:
    """How ``routehead train-router`` (and ``detect-heads``, ``search-labels``) turn labelled queries into a router."""

    depth: int = _option(20, "first-stage candidates per query")
    max_doc_words: int = _option(MAX_DOC_WORDS, "words of each document the LLM reads")
    max_queries: int | None = _option(None, "use at most this many queries per dataset", type=int)
    candidates: int = _option(64, "K: heads routed over, the best by single-head nDCG@10")
    max_heads: int = _option(8, "P: heads per pseudo-label set at most")
    top_k: int = _option(4, "heads routed per query")
    fusion_weight: float | None = _option(
        0.0, "weight of the first-stage order in routed scores, or 'auto' to choose it by cross-validation on the "
             "training queries", type=fusion_weight)
    shared_signs: str = _option(
        "positive", "weights of the heads every query shares: 'positive' (a head only ever counts for a document, as "
                    "in ICR; holds up off the training domain) or 'signed' (a head may count against one: a little "
                    "better in domain, far worse off it; docs/method.md)", choices=["positive", "signed"])
    layer: int | None = _option(None, "hidden-state layer of the query embedding (default: a third of the way up)",
                                type=int)
    pooling: str = _option("mean", "query embedding: mean of the query's tokens, or its last token",
                           choices=["mean", "last"])
    max_layer: int | None = _option(
        None, "deepest layer a routed head may lie in (default: any); a shorter forward, at a cost off the training "
              "domain (docs/method.md)", type=int)
    folds: int = _option(5, "folds of the cross-validation that chooses an 'auto' fusion weight")
    routers: int = _option(1, "routers trained, each on its own train/validation split, and averaged")
    seed: int = _option(0, "seed of the splits and of the router's initialisation")

    _COUNTS: ClassVar[tuple[str, ...]] = ("depth", "max_doc_words", "max_queries", "candidates", "max_heads", "top_k",
                                          "folds", "routers")

    def __post_init__(self) -> None:
        for name in self._COUNTS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, not {value!r}.")
        if self.folds < 2:
            raise ValueError(f"--folds must be at least 2, not {self.folds}.")


@dataclass
class AdaptConfig(TrainConfig):
    """How ``routehead adapt`` trains a router on a user's own corpus; where a default differs from
    :class:`TrainConfig`'s, the reason is in its help."""

    max_queries: int | None = _option(240, "queries scored by the LLM, held-out ones included (about 5 s each on "
                                           "2 CPU cores)", type=int)
    fusion_weight: float | None = _option(
        None, "weight of BM25's order in the adapted router's scores (default auto: chosen by cross-validation on "
              "the training queries, since how far BM25 is to be trusted depends on the corpus)", type=fusion_weight)
    routers: int = _option(5, "routers trained, each on its own split of the training queries, and averaged (5: "
                              "steadier and better than one off the shipped router's domain, docs/method.md)")
    chunk_words: int = _option(150, "passage size in words")
    max_chunks: int = _option(320, "passages sampled to write synthetic queries for")
    held_out: float = _option(0.2, "fraction of queries held out for evaluation, never trained on", type=float)

    _COUNTS: ClassVar[tuple[str, ...]] = (*TrainConfig._COUNTS, "chunk_words", "max_chunks")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.held_out < 1:
            raise ValueError(f"--held-out must be a fraction between 0 and 1, not {self.held_out}.")
