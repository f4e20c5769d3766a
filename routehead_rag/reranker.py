"""The public entry point: :class:`RouteHeadReranker`."""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .backbone import Backbone, load_backbone
from .capture import install
from .documents import Document, DocumentInput, check_query, to_documents
from .forward import window_head_scores
from .heads import MODES, HeadRouter, Mode, check_heads, head_weights, layers_of
from .prompt import INSTRUCTION, MAX_DOC_WORDS, PromptBuilder
from .router import DEFAULT_ROUTER, Router, RouterEnsemble, load_router
from .scoring import rank, rank_prior
from .windows import plan_windows


@dataclass(frozen=True)
class RerankResult:
    """One re-ranked document: ``index`` into the input list, its ``score`` and the input ``document``."""

    index: int
    score: float
    document: DocumentInput


@dataclass(frozen=True)
class ScoringSettings:
    """What decides a query's per-head scores besides the backbone: the prompt and the windows.

    A new setting added here enters the feature cache's key (:func:`routehead_rag.features.features_dir`) by itself.
    """

    instruction: str
    max_doc_words: int | None
    max_doc_tokens: int | None
    reverse: bool
    max_tokens: int
    window_size: int | None


_LOADING = threading.Lock()


@functools.lru_cache(maxsize=8)
def _load_once(model: str | None, device: str, dtype: str) -> Backbone:
    backbone = load_backbone(model, device=device, dtype=dtype)
    install(backbone.model)
    return backbone


def _shared_backbone(model: str | None, device: str, dtype: str) -> Backbone:
    """One backbone per (model, device, dtype) per process, also when threads ask at once."""
    with _LOADING:
        return _load_once(model, device, dtype)


class RouteHeadReranker:
    """Re-rank documents for a query by the attention an LLM's heads pay to them.

    model: ``None`` for the embedded SmolLM2-135M-Instruct, a hub id, a model folder or a ``.gguf``
        file. Backbones are loaded once per process and shared between rerankers.
    mode: ``"routed"`` asks ``router`` for the heads of each query; ``"static"`` uses the same ``heads``
        for every query (QRHead-style); ``"all"`` sums every head (ICR). Default: ``"routed"`` when there
        is a router (given, or the one shipped for the default model), else ``"all"``.
    router: a router folder (``routehead train-router``, ``routehead adapt``), or any
        :class:`HeadRouter`; default: the router shipped for the default model.
    heads: head indices ``layer * n_heads + head`` for ``mode="static"``; default: the router's
        QRHead-style heads (``qrhead_heads``, found on its training data; not the shared part of its
        routed score).
    fusion_weight: weight of the first-stage evidence (the input order, or ``first_stage_scores``)
        in ``static``/``routed`` scores; default: the router's learned weight in ``routed`` mode, else 0.
    max_doc_words / max_doc_tokens: each document is cut to this budget, inside its own span (default:
        150 words, as the shipped router was trained and is benchmarked).
    max_tokens: tokens per forward window (default: the model's context, at most 8192); longer
        lists are split into windows (see :mod:`routehead_rag.windows`).
    window_size: at most this many documents per window (default: as many as fit).
    """

    def __init__(self, model: str | Path | None = None, *, mode: Mode | None = None, router: HeadRouter | str | Path | None = None,
                 heads: Sequence[int] | None = None, fusion_weight: float | None = None, device: str = "auto",
                 dtype: str = "auto", max_doc_words: int | None = MAX_DOC_WORDS, max_doc_tokens: int | None = None,
                 max_tokens: int | None = None, window_size: int | None = None, instruction: str = INSTRUCTION,
                 reverse: bool = True) -> None:
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}.")
        if heads is not None and mode not in (None, "static"):
            raise ValueError(f"heads=[...] is for mode='static' (or no mode), not mode={mode!r}.")
        mode = "static" if heads is not None else mode
        for name, value in (("max_doc_words", max_doc_words), ("max_doc_tokens", max_doc_tokens),
                            ("max_tokens", max_tokens), ("window_size", window_size)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive integer or None, not {value!r}.")
        self.backbone = _shared_backbone(None if model is None else str(model), device, dtype)
        if isinstance(router, (str, Path)):
            router = load_router(router)
        elif router is None and model is None and mode != "all" and (DEFAULT_ROUTER / "config.json").is_file():
            router = load_router(DEFAULT_ROUTER)
        trained = isinstance(router, Router | RouterEnsemble)
        if trained:
            router.check_backbone(self.backbone)
        self.mode: Mode = mode or ("routed" if router is not None else "all")
        if self.mode == "static" and heads is None:
            if not trained or not router.qrhead_heads:
                raise ValueError("mode='static' needs heads=[...] (head indices layer * n_heads + head).")
            heads = router.qrhead_heads
        if self.mode == "routed" and router is None:
            raise ValueError("mode='routed' needs router=... (a router folder, or an object with "
                             "select(query, backbone) -> head indices); none is shipped for this model.")
        self.heads = check_heads(list(heads), self.backbone) if heads is not None else None
        self.router = router
        if fusion_weight is None:
            fusion_weight = router.fusion_weight if trained and self.mode == "routed" else 0.0
        self.fusion_weight = float(fusion_weight)
        self.settings = ScoringSettings(instruction=instruction, max_doc_words=max_doc_words,
                                        max_doc_tokens=max_doc_tokens, reverse=reverse,
                                        max_tokens=min(max_tokens or 8192, self.backbone.max_context),
                                        window_size=window_size)
        self.prompts = PromptBuilder(self.backbone.tokenizer, instruction=instruction, max_doc_words=max_doc_words,
                                     max_doc_tokens=max_doc_tokens, reverse=reverse)

    def cache_key(self) -> dict:
        """Everything that decides this reranker's per-head scores: the backbone's weights and dtype, and
        :class:`ScoringSettings`."""
        return {"backbone": self.backbone.fingerprint, "dtype": str(self.backbone.model.dtype), **asdict(self.settings)}

    def select_heads(self, query: str) -> dict[int, float] | None:
        """The heads that score ``query`` in this reranker's mode, ``{head: weight}`` (``None``: all heads)."""
        if self.mode == "all":
            return None
        if self.mode == "static":
            return head_weights(self.heads, self.backbone)
        # a trained router's weights are kept as trained: rescaled, they would shift its fusion weight's share
        return head_weights(self.router.select(query, self.backbone), self.backbone,
                            normalize=not isinstance(self.router, Router | RouterEnsemble))

    def head_scores(self, query: str, documents: Sequence[DocumentInput]) -> torch.Tensor:
        """Calibrated per-head scores, ``[n_layers * n_heads, n_docs]`` (float64)."""
        return self._scores(check_query(query), to_documents(documents), layers=list(range(self.backbone.n_layers)))

    def rerank(self, query: str, documents: Sequence[DocumentInput], top_n: int | None = None,
               first_stage_scores: Sequence[float] | None = None) -> list[RerankResult]:
        """Documents best first (at most ``top_n``), each with its index in ``documents`` and a float score.

        ``documents`` are taken in first-stage order (best first); ``first_stage_scores``, where the
        retriever gives them, replace that order as the first-stage evidence.
        """
        query = check_query(query)
        if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n <= 0):
            raise ValueError(f"top_n must be a positive integer or None, not {top_n!r}.")
        docs = to_documents(documents)
        if not docs:
            return []
        first_stage = rank_prior(len(docs))
        if first_stage_scores is not None:
            if len(first_stage_scores) != len(docs) or not all(math.isfinite(float(s)) for s in first_stage_scores):
                raise ValueError(f"first_stage_scores needs one finite number per document ({len(docs)}), "
                                 f"got {len(first_stage_scores)}.")
            first_stage = torch.tensor([float(s) for s in first_stage_scores], dtype=torch.float64)
        heads = self.select_heads(query)
        layers = list(range(self.backbone.n_layers)) if heads is None else layers_of(heads, self.backbone.n_heads)
        ranking = rank(self._scores(query, docs, layers), heads, first_stage, self.fusion_weight)
        return [RerankResult(index=i, score=float(ranking.scores[i]), document=documents[i])
                for i in ranking.order[:top_n]]

    def _scores(self, query: str, docs: list[Document], layers: list[int]) -> torch.Tensor:
        """``[n_layers * n_heads, n_docs]`` for the heads of ``layers`` (NaN elsewhere), over as many windows as needed."""
        n_total = self.backbone.n_layers * self.backbone.n_heads
        if not docs:
            return torch.empty(n_total, 0, dtype=torch.float64)
        per_doc = self.prompts.per_doc_overhead(len(docs))
        max_tokens = self.settings.max_tokens
        capacity = max_tokens - self.prompts.overhead(query)
        if capacity <= per_doc:
            raise ValueError(f"the query alone takes {self.prompts.overhead(query)} of the {max_tokens} tokens of a "
                             "window, leaving no room for documents; shorten the query or raise max_tokens.")
        docs_ids = [ids[: capacity - per_doc] for ids in map(self.prompts.doc_ids, docs)]
        windows = plan_windows([len(ids) + per_doc for ids in docs_ids], capacity, self.settings.window_size)
        scores = torch.empty(n_total, len(docs), dtype=torch.float64)
        for window in windows:
            prompt = self.prompts.build(query, [docs_ids[i] for i in window])
            scores[:, window.start:window.stop] = window_head_scores(self.backbone, prompt, layers)
        return scores
