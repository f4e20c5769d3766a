from llama_index.postprocessor.routehead.base import RouteHeadRerank

__all__ = ["RouteHeadRerank"]
