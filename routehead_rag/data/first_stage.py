"""BM25 first stage with ``bm25s``, configured as the BEIR/Pyserini baselines, its index cached on disk."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass

from ..paths import cache_dir
from .datasets import INSTALL_HINT, Dataset, load_trec_run

BM25_PARAMS = {"k1": 1.5, "b": 0.75, "method": "lucene", "stopwords": "en", "stemmer": "english"}


def bm25_candidates(dataset: Dataset, depth: int = 100, ignore_identical_ids: bool = False,
                    ) -> tuple[dict[str, list[str]], dict[str, list[float]]]:
    """Top-``depth`` BM25 hits per query over ``title + " " + text``: ``({qid: [docid]}, {qid: [score]})``, best first.

    Documents with score 0 (no query term) are left out, as Lucene does, so a list may be shorter than ``depth``.
    ``ignore_identical_ids`` drops a hit whose docid equals the qid (BEIR's convention for corpora that contain
    the queries). The index is built once per corpus and cached under ``cache_dir()/bm25/<key>``.
    """
    if dataset.corpus is None:
        raise ValueError(f"{dataset.name} has no corpus, so BM25 cannot run; give candidates (a rank_llm file, a run) "
                         "or a dataset with documents.")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}.")
    bm25s, stemmer = _import_bm25s()
    doc_ids = list(dataset.corpus)
    retriever = _load_or_build_index(doc_ids, dataset.corpus, bm25s, stemmer)
    qids = list(dataset.queries)
    tokens = bm25s.tokenize([dataset.queries[q] for q in qids], stopwords=BM25_PARAMS["stopwords"], stemmer=stemmer,
                            return_ids=False, show_progress=False)
    k = min(depth + int(ignore_identical_ids), len(doc_ids))  # one spare for the dropped self-hit
    indices, scores = retriever.retrieve(tokens, k=k, show_progress=False)  # each (n_queries, k), best first
    candidates, candidate_scores = {}, {}
    for qid, row, row_scores in zip(qids, indices, scores):
        hits = [(doc_ids[i], float(s)) for i, s in zip(row, row_scores)
                if s > 0 and not (ignore_identical_ids and doc_ids[i] == qid)][:depth]
        candidates[qid] = [docid for docid, _ in hits]
        candidate_scores[qid] = [score for _, score in hits]
    return candidates, candidate_scores


@dataclass
class FirstStage:
    """Each query's first-stage candidates, best first (``candidates``), their scores where the first stage gives
    them (``scores``, else ``None``), BM25's seconds per query (``None`` where it did not run), and how many hits
    were the query itself (``self_hits``, dropped as BEIR's evaluator does)."""

    candidates: dict[str, list[str]]
    scores: dict[str, list[float]] | None
    seconds_per_query: float | None
    self_hits: int


def first_stage_candidates(dataset: Dataset, depth: int, run_path: str | None = None) -> FirstStage:
    """Each query's top-``depth`` first-stage candidates: from the TREC run file ``run_path``, else the dataset's own
    (a rank_llm file), else BM25. A hit whose docid equals its qid is dropped before the cut (BEIR's
    ``ignore_identical_ids``: corpora such as ArguAna and Quora hold their own queries)."""
    if run_path or dataset.candidates is not None:
        given = load_trec_run(run_path) if run_path else dataset.candidates
        lists = {q: d for q, d in given.items() if q in dataset.queries}
        kept = {q: [d for d in docs if d != q] for q, docs in lists.items()}
        dropped = sum(len(lists[q]) - len(kept[q]) for q in lists)
        return FirstStage({q: d[:depth] for q, d in kept.items()}, None, None, dropped)
    start = time.perf_counter()
    hits, hit_scores = bm25_candidates(dataset, depth + 1)  # one spare for a dropped self-hit
    seconds = (time.perf_counter() - start) / max(len(dataset.queries), 1)
    candidates, scores, self_hits = {}, {}, 0
    for q, docs in hits.items():
        self_hits += q in docs[:depth]
        kept = [(d, score) for d, score in zip(docs, hit_scores[q]) if d != q][:depth]
        candidates[q], scores[q] = [d for d, _ in kept], [score for _, score in kept]
    return FirstStage(candidates, scores, seconds, self_hits)


def _import_bm25s():
    try:
        import bm25s
        import Stemmer
    except ImportError as err:
        raise ImportError(f"the BM25 first stage needs bm25s and PyStemmer; {INSTALL_HINT}.") from err
    return bm25s, Stemmer.Stemmer(BM25_PARAMS["stemmer"])


def _load_or_build_index(doc_ids: list[str], corpus: dict[str, dict[str, str]], bm25s, stemmer):
    texts = [f"{corpus[d]['title']} {corpus[d]['text']}".strip() for d in doc_ids]
    path = cache_dir() / "bm25" / _index_key(doc_ids, texts, bm25s.__version__)
    if path.is_dir():
        return bm25s.BM25.load(path, show_progress=False)
    retriever = bm25s.BM25(k1=BM25_PARAMS["k1"], b=BM25_PARAMS["b"], method=BM25_PARAMS["method"])
    retriever.index(bm25s.tokenize(texts, stopwords=BM25_PARAMS["stopwords"], stemmer=stemmer, show_progress=False),
                    show_progress=False)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    retriever.save(partial, show_progress=False)
    try:
        partial.rename(path)
    except OSError:  # another process saved the same index first
        shutil.rmtree(partial, ignore_errors=True)
    return retriever


def _index_key(doc_ids: list[str], texts: list[str], version: str) -> str:
    """Hash of the BM25 parameters, the bm25s version and the corpus (ids and texts, in order)."""
    digest = hashlib.sha256(json.dumps({**BM25_PARAMS, "bm25s": version}, sort_keys=True).encode())
    for doc_id, text in zip(doc_ids, texts):
        digest.update(f"{doc_id}\0{text}\0".encode())
    return digest.hexdigest()[:24]
