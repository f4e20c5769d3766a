"""The data layer: evaluation datasets, a user's own corpus, the first stage (BM25) and trec_eval-style metrics.

It knows nothing of the LLM: the engine, training and the benchmark all build on it.
"""

from .corpus import chunk_corpus, read_corpus
from .datasets import Dataset, load_dataset, load_qrels, load_trec_run, sample_queries
from .first_stage import bm25_candidates, first_stage_candidates
from .metrics import evaluate, per_query

__all__ = ["Dataset", "bm25_candidates", "chunk_corpus", "evaluate", "first_stage_candidates", "load_dataset",
           "load_qrels", "load_trec_run", "per_query", "read_corpus", "sample_queries"]
