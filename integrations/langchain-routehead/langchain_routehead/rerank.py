"""``RouteHeadRerank``: a LangChain document compressor over routehead-rag's :class:`RouteHeadReranker`.

All scoring lives in the engine; this adapter passes ``page_content`` in the order the retriever gave
(the engine reads it as the first-stage order, best first) and returns copies of the best documents
with ``metadata["relevance_score"]``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator

from routehead_rag import RerankResult, RouteHeadReranker
from routehead_rag.adapters import (
    COUNT_OPTIONS,
    MAX_DOC_WORDS,
    RAW_SCORE_KEY,
    adapter_engine,
    check_count,
    check_head_list,
    shown_score,
)


class RouteHeadRerank(BaseDocumentCompressor):
    """Re-rank documents by the attention an LLM's heads pay to them; keep the best ``top_n``.

    Either configure the engine through the fields below, or pass ``reranker=RouteHeadReranker(...)``
    to share one engine (and one loaded model) with other components, e.g. the LlamaIndex postprocessor.
    ``mode``, ``heads`` and ``router`` left as ``None`` take the engine's defaults.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    model: str | None = None
    """None: the embedded SmolLM2-135M-Instruct; else a hub id, model folder or .gguf file."""
    top_n: int | None = Field(default=5, gt=0)
    """Number of documents to return, best first; None returns them all, re-ranked."""
    mode: str | None = None
    """'routed', 'static' (with heads) or 'all' (ICR); None: the engine's default."""
    heads: list[int] | None = None
    """Head indices (layer * n_heads + head) for mode='static'."""
    router: Any = Field(default=None, exclude=True)
    """A router (folder, or object with select(query, backbone) -> heads) for mode='routed'; None: the engine's."""
    device: str = "auto"
    """'auto' (cuda, then mps, then cpu), or a torch device."""
    max_doc_words: int | None = MAX_DOC_WORDS
    """Each document is cut to this many words (inside its own span; the query is never cut)."""
    max_tokens: int | None = None
    """Tokens per forward window; None: the model's context."""
    window_size: int | None = None
    """At most this many documents per forward window."""

    _reranker: RouteHeadReranker = PrivateAttr()

    def __init__(self, *, reranker: RouteHeadReranker | None = None, **data: Any) -> None:
        super().__init__(**data)
        self._reranker = adapter_engine(reranker, data, self)

    @field_validator(*COUNT_OPTIONS, mode="before")
    @classmethod
    def _check_count(cls, value: Any, info: ValidationInfo) -> int | None:
        """As the engine: positive integers (numpy's too) or None; not ``True``, ``2.0`` or ``"3"``."""
        return check_count(info.field_name, value)

    @field_validator("heads", mode="before")
    @classmethod
    def _check_heads(cls, value: Any) -> list[int] | None:
        return check_head_list(value)

    @property
    def reranker(self) -> RouteHeadReranker:
        """The engine; e.g. ``reranker.select_heads(query)`` tells which heads score a query."""
        return self._reranker

    def compress_documents(self, documents: Sequence[Document], query: str,
                           callbacks: Callbacks | None = None) -> Sequence[Document]:
        """Copies of the best ``top_n`` documents, best first, each with ``metadata["relevance_score"]`` (float: the
        relevance score in [0, 1] where the engine has a calibration, else its own score) and
        ``metadata["routehead_score"]`` (the engine's own score)."""
        if not documents:
            return []
        results = self._reranker.rerank(query, [doc.page_content for doc in documents], top_n=self.top_n)
        return _copies(documents, results)

    async def acompress_documents(self, documents: Sequence[Document], query: str,
                                  callbacks: Callbacks | None = None) -> Sequence[Document]:
        """As :meth:`compress_documents`, with the forward passes in a worker thread: the event loop keeps running."""
        if not documents:
            return []
        texts = [doc.page_content for doc in documents]
        results = await asyncio.to_thread(self._reranker.rerank, query, texts, top_n=self.top_n)
        return _copies(documents, results)


def _copies(documents: Sequence[Document], results: Sequence[RerankResult]) -> list[Document]:
    """The ranked documents as copies (same ``id``, deep-copied metadata); the inputs are left unchanged."""
    return [documents[r.index].model_copy(update={
        "metadata": {**copy.deepcopy(documents[r.index].metadata), "relevance_score": shown_score(r),
                     RAW_SCORE_KEY: float(r.score)}})
        for r in results]
