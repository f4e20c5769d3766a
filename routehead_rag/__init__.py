"""routehead-rag: re-rank documents by the attention heads of an LLM, routed per query.

The public names are imported lazily, so that ``routehead_rag.bench`` and the CLI's help start
without loading torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["Backbone", "HeadRouter", "Recipe", "RerankResult", "RouteHeadReranker", "load_backbone"]
_HOMES = {"Backbone": "backbone", "load_backbone": "backbone", "HeadRouter": "heads",
          "Recipe": "recipe", "RerankResult": "reranker", "RouteHeadReranker": "reranker"}

if TYPE_CHECKING:
    from .backbone import Backbone, load_backbone
    from .heads import HeadRouter
    from .recipe import Recipe
    from .reranker import RerankResult, RouteHeadReranker


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'routehead_rag' has no attribute {name!r}")
