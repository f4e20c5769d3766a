"""routehead-rag: re-rank documents by the attention heads of an LLM, routed per query."""

from .backbone import Backbone, load_backbone
from .heads import HeadRouter
from .reranker import RerankResult, RouteHeadReranker

__all__ = ["Backbone", "HeadRouter", "RerankResult", "RouteHeadReranker", "load_backbone"]
