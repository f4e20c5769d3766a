"""What the framework adapters share: one engine per adapter, either passed in (shared) or made from its options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .prompt import MAX_DOC_WORDS
from .reranker import RouteHeadReranker

__all__ = ["ENGINE_OPTIONS", "MAX_DOC_WORDS", "adapter_engine"]

ENGINE_OPTIONS = ("model", "mode", "heads", "router", "device", "max_doc_words", "max_tokens", "window_size")


def adapter_engine(reranker: RouteHeadReranker | None, given: Mapping[str, Any], fields: Any) -> RouteHeadReranker:
    """The shared ``reranker`` (then no engine option may be ``given`` too), else one built from ``fields``.

    ``fields``: the adapter, with an attribute per name in :data:`ENGINE_OPTIONS`; ``mode``, ``heads``
    and ``router`` left as ``None`` take the engine's defaults.
    """
    if reranker is not None:
        if not isinstance(reranker, RouteHeadReranker):
            raise TypeError(f"reranker must be a routehead_rag.RouteHeadReranker, not {type(reranker).__name__}.")
        clash = [name for name in ENGINE_OPTIONS if name in given]
        if clash:
            raise ValueError(f"pass either reranker=... or the engine options {clash}, not both; "
                             "configure the shared RouteHeadReranker instead.")
        return reranker
    options = {name: getattr(fields, name) for name in ("device", "max_doc_words", "max_tokens", "window_size")}
    options.update({k: getattr(fields, k) for k in ("mode", "heads", "router") if getattr(fields, k) is not None})
    return RouteHeadReranker(fields.model, **options)
