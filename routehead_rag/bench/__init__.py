"""Benchmark data layer: datasets, the BM25 first stage and trec_eval-style metrics for ``routehead bench``."""

from .datasets import Dataset, load_dataset, load_qrels, load_trec_run, sample_queries
from .first_stage import bm25_candidates
from .metrics import evaluate, per_query

__all__ = ["Dataset", "bm25_candidates", "evaluate", "load_dataset", "load_qrels", "load_trec_run",
           "per_query", "sample_queries"]
