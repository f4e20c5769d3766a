"""LangChain integration of routehead-rag: ``RouteHeadRerank``, a document compressor."""

from langchain_routehead.rerank import RouteHeadRerank

__all__ = ["RouteHeadRerank"]
