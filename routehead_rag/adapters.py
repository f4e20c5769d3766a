"""What the framework adapters share: one engine per adapter, either passed in (shared) or made from its options."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from typing import Any

from .calibration import RAW_SCORE_KEY, shown_score
from .prompt import MAX_DOC_WORDS
from .recipe import Recipe
from .reranker import RouteHeadReranker

__all__ = ["COUNT_OPTIONS", "ENGINE_OPTIONS", "MAX_DOC_WORDS", "RAW_SCORE_KEY", "adapter_engine", "check_count",
           "check_head_list", "shown_score"]

ENGINE_OPTIONS = ("model", "mode", "heads", "router", "device", "max_doc_words", "max_tokens", "window_size")
COUNT_OPTIONS = ("top_n", "max_doc_words", "max_tokens", "window_size")  # positive integers (or None)


def check_count(name: str, value: Any, optional: bool = True) -> int | None:
    """A positive-integer option as the engine takes it, checked before pydantic's lax coercion can turn ``True``
    into 1 or ``"3"``/``3.0`` into 3: a Python ``int``, numpy integers included (``operator.index``); no bools,
    floats or strings; ``None`` where ``optional``."""
    if value is None and optional:
        return None
    number = None if isinstance(value, bool) else _index(value)
    if number is None or number <= 0:
        raise ValueError(f"{name} must be a positive integer{' or None' if optional else ''}, not {value!r}.")
    return number


def check_head_list(value: Any) -> list[int] | None:
    """``heads`` for ``mode="static"`` as the engine takes them: head indices (``int``, numpy integers included),
    no bools, floats or strings; the engine checks them against the model."""
    if value is None:
        return None
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValueError(f"heads must be a list of head indices (layer * n_heads + head), not {value!r}.")
    heads = list(value)
    for i, head in enumerate(heads):
        number = None if isinstance(head, bool) else _index(head)
        if number is None or number < 0:
            raise ValueError(f"heads[{i}] is {head!r}; each head must be an index layer * n_heads + head (an integer "
                             "from 0).")
        heads[i] = number
    return heads


def _index(value: Any) -> int | None:
    try:
        return operator.index(value)
    except TypeError:
        return None


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
    if fields.router is not None:
        options["router"] = fields.router
    return RouteHeadReranker(fields.model, Recipe(mode=fields.mode, heads=fields.heads), **options)
