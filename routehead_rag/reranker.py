"""The public entry point: :class:`RouteHeadReranker`."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .backbone import Backbone, load_backbone
from .documents import Document, DocumentInput, check_query, to_documents
from .forward import window_head_scores
from .heads import MODES, HeadRouter, Mode, check_heads, layers_of
from .prompt import INSTRUCTION, PromptBuilder
from .scoring import aggregate
from .windows import plan_windows


@dataclass(frozen=True)
class RerankResult:
    """One re-ranked document: ``index`` into the input list, its ``score`` and the input ``document``."""

    index: int
    score: float
    document: DocumentInput


@functools.lru_cache(maxsize=4)
def _shared_backbone(model: str | None, device: str, dtype: str) -> Backbone:
    return load_backbone(model, device=device, dtype=dtype)


class RouteHeadReranker:
    """Re-rank documents for a query by the attention an LLM's heads pay to them.

    model: ``None`` for the embedded SmolLM2-135M-Instruct, a hub id, a model folder or a ``.gguf``
        file. Backbones are loaded once per process and shared between rerankers.
    mode: ``"all"`` sums every head (ICR); ``"static"`` sums ``heads``; ``"routed"`` asks ``router``
        for the heads of each query.
    heads: head indices ``layer * n_heads + head`` for ``mode="static"``.
    max_doc_words / max_doc_tokens: each document is cut to this budget, inside its own span.
    max_tokens: tokens per forward window (default: the model's context, at most 8192); longer
        lists are split into windows (see :mod:`routehead_rag.windows`).
    window_size: at most this many documents per window (default: as many as fit).
    """

    def __init__(self, model: str | Path | None = None, *, mode: Mode = "all", heads: Sequence[int] | None = None,
                 router: HeadRouter | None = None, device: str = "auto", dtype: str = "auto",
                 max_doc_words: int | None = 300, max_doc_tokens: int | None = None, max_tokens: int | None = None,
                 window_size: int | None = None, instruction: str = INSTRUCTION, reverse: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}.")
        if mode == "static" and heads is None:
            raise ValueError("mode='static' needs heads=[...] (head indices layer * n_heads + head).")
        if mode == "routed" and router is None:
            raise ValueError("mode='routed' needs router=... (an object with select(query, backbone) -> head indices).")
        for name, value in (("max_doc_words", max_doc_words), ("max_doc_tokens", max_doc_tokens),
                            ("max_tokens", max_tokens), ("window_size", window_size)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive integer or None, not {value!r}.")
        self.backbone = _shared_backbone(None if model is None else str(model), device, dtype)
        self.mode: Mode = mode
        self.heads = check_heads(list(heads), self.backbone) if heads is not None else None
        self.router = router
        self.max_tokens = min(max_tokens or self.backbone.max_context, self.backbone.max_context, 8192 if max_tokens is None else max_tokens)
        self.window_size = window_size
        self.prompts = PromptBuilder(self.backbone.tokenizer, instruction=instruction, max_doc_words=max_doc_words,
                                     max_doc_tokens=max_doc_tokens, reverse=reverse)

    def select_heads(self, query: str) -> list[int] | None:
        """The heads that score ``query`` in this reranker's mode (``None``: all heads)."""
        if self.mode == "all":
            return None
        if self.mode == "static":
            return self.heads
        return check_heads(list(self.router.select(query, self.backbone)), self.backbone)

    def head_scores(self, query: str, documents: Sequence[DocumentInput]) -> torch.Tensor:
        """Calibrated per-head scores, ``[n_layers * n_heads, n_docs]`` (float64)."""
        return self._scores(check_query(query), to_documents(documents), layers=list(range(self.backbone.n_layers)))

    def rerank(self, query: str, documents: Sequence[DocumentInput], top_n: int | None = None) -> list[RerankResult]:
        """Documents best first (at most ``top_n``), each with its index in ``documents`` and a float score."""
        query = check_query(query)
        if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n <= 0):
            raise ValueError(f"top_n must be a positive integer or None, not {top_n!r}.")
        docs = to_documents(documents)
        if not docs:
            return []
        heads = self.select_heads(query)
        layers = list(range(self.backbone.n_layers)) if heads is None else layers_of(heads, self.backbone.n_heads)
        scores = aggregate(self._scores(query, docs, layers), heads).tolist()
        order = sorted(range(len(docs)), key=lambda i: (-scores[i], i))
        return [RerankResult(index=i, score=float(scores[i]), document=documents[i]) for i in order[:top_n]]

    def _scores(self, query: str, docs: list[Document], layers: list[int]) -> torch.Tensor:
        """``[n_layers * n_heads, n_docs]`` for the heads of ``layers`` (NaN elsewhere), over as many windows as needed."""
        n_total = self.backbone.n_layers * self.backbone.n_heads
        if not docs:
            return torch.empty(n_total, 0, dtype=torch.float64)
        per_doc = self.prompts.per_doc_overhead(len(docs))
        capacity = self.max_tokens - self.prompts.overhead(query)
        if capacity <= per_doc:
            raise ValueError(f"the query alone takes {self.prompts.overhead(query)} of the {self.max_tokens} tokens of a "
                             "window, leaving no room for documents; shorten the query or raise max_tokens.")
        docs_ids = [ids[: capacity - per_doc] for ids in map(self.prompts.doc_ids, docs)]
        windows = plan_windows([len(ids) + per_doc for ids in docs_ids], capacity, self.window_size)
        scores = torch.empty(n_total, len(docs), dtype=torch.float64)
        for window in windows:
            prompt = self.prompts.build(query, [docs_ids[i] for i in window])
            scores[:, window.start:window.stop] = window_head_scores(self.backbone, prompt, layers)
        return scores
