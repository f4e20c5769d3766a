"""What both quickstarts share: the SciFact sample they index, how heads are named, and the nDCG report."""

from __future__ import annotations

import argparse
import os
import random
import sys

import numpy as np

from routehead_rag.data import load_dataset, load_trec_run, sample_queries
from routehead_rag.heads import describe
from routehead_rag.paths import shared_data_dir


def demo_args(doc: str) -> argparse.Namespace:
    """The quickstarts' shared options: how many labelled queries, and how many words of each abstract."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=20, help="labelled test queries to evaluate (default 20)")
    parser.add_argument("--max-doc-words", type=int, default=60,
                        help="words of each abstract the reranker reads (default 60, to keep the run short on a CPU)")
    parser.add_argument("--show-heads", action="store_true", help="print the heads that scored the first query")
    return parser.parse_args()


def scifact_sample(n_queries: int, n_docs: int = 300, seed: int = 0):
    """``n_queries`` labelled SciFact test queries and about ``n_docs`` abstracts: their relevant documents, BM25's
    top-10 for each query (hard negatives) and random others. Returns ``(queries, qrels, corpus)``."""
    data = shared_data_dir()
    folder = data / "beir" / "scifact" if data else None
    if folder is None or not (folder / "corpus.jsonl").is_file():
        sys.exit("SciFact not found: this example reads beir/scifact (BEIR layout: corpus.jsonl, queries.jsonl, "
                 "qrels/test.tsv) under $ROUTEHEAD_SHARED_DATA or ../shared/data. Download BEIR's SciFact, then run "
                 "ROUTEHEAD_SHARED_DATA=/path/to/data python " + os.path.basename(sys.argv[0]) + " (the folder that "
                 "holds beir/scifact). To re-rank your own files instead: python "
                 "examples/rerank_my_files_llamaindex.py examples/my_docs \"What causes scurvy?\"")
    dataset = sample_queries(load_dataset(str(folder), split="test"), n_queries, seed=seed)
    run_file = folder / "run.bm25-flat.pyserini.top100.trec"
    bm25 = load_trec_run(run_file) if run_file.is_file() else {}
    keep = set()
    for qid, rels in dataset.qrels.items():
        keep |= {docid for docid, rel in rels.items() if rel > 0} | set(bm25.get(qid, [])[:10])
    others = sorted(set(dataset.corpus) - keep)
    keep |= set(random.Random(seed).sample(others, max(0, n_docs - len(keep))))
    return dataset.queries, dataset.qrels, {docid: dataset.corpus[docid] for docid in sorted(keep)}


def describe_heads(reranker, query: str, show: bool) -> str:
    """The model, and with ``show`` which heads score ``query``: ``L<layer>.H<head>`` names, or all of them."""
    if not show:
        return f"model {reranker.backbone.name} (mode {reranker.mode!r})"
    heads, n_heads = reranker.select_heads(query), reranker.backbone.n_heads
    if heads is None:
        n_all = reranker.backbone.n_layers * n_heads
        return f"model {reranker.backbone.name}, all {n_all} heads (mode {reranker.mode!r})"
    return f"model {reranker.backbone.name}, {len(heads)} heads (mode {reranker.mode!r}): {describe(heads, n_heads)}"


def report(before: list[float], after: list[float], n_docs: int, seconds: float) -> None:
    """Print the retriever's nDCG@10 beside the retriever + reranker's, per-query wins and losses."""
    b, a = np.array(before), np.array(after)
    print(f"\nnDCG@10 on {len(b)} SciFact test queries ({n_docs} abstracts, top-20 re-ranked, "
          f"{seconds:.1f} s/query on {os.cpu_count()} CPU cores):")
    print(f"  retriever (all-MiniLM-L6-v2)      {b.mean():.3f}")
    print(f"  retriever + RouteHeadRerank       {a.mean():.3f}   ({a.mean() - b.mean():+.3f}; "
          f"better on {(a > b).sum()}, worse on {(a < b).sum()}, equal on {(a == b).sum()} queries)")
