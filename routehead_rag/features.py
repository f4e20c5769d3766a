"""Per-query features, computed once with the LLM and cached on disk; training and the benchmark both read them.

For each labelled query: the calibrated per-head score matrix ``[n_layers * n_heads, n_docs]`` over
its first-stage candidates, every head's token-level calibrated attention (from which ICR's and QRHead's summed
scores follow for any head set), the candidates' gains, and query embeddings from the frozen LLM's hidden
states (every layer, mean- and last-token-pooled), so that the head search, the router training and
every benchmark method replay the LLM's work without running it again.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Protocol

import torch
from tqdm.auto import tqdm

from .data.datasets import Dataset
from .documents import DocumentInput, to_documents
from .embedding import query_embedding
from .evidence import document_evidence
from .paths import cache_dir
from .reranker import RouteHeadReranker
from .reweighting import attach
from .scoring import Ranking, TokenDiffs, rank, rank_prior, rank_summed

FORMAT = 2  # what a cached file holds; part of the cache key, so that files of another format are never read


@dataclass
class QueryFeatures:
    """One query's cached features."""

    qid: str
    head_scores: torch.Tensor  # [n_layers * n_heads, n_docs] float32, calibrated
    gains: torch.Tensor  # [n_docs] graded relevance of each candidate (0 = not relevant or unjudged)
    ideal_dcg: float  # DCG@10 of the ideal ranking of all the query's relevant documents (0: none relevant)
    embedding: torch.Tensor  # [n_layers + 1, 2, hidden]: hidden states per layer, (mean, last token) pooled
    diffs: TokenDiffs | None = None  # every head's query-minus-N/A attention to each document's tokens (None: made
    # without the model, as in training's unit tests)


def features_dir(reranker: RouteHeadReranker) -> Path:
    """Cache folder for everything that decides the scores (:meth:`RouteHeadReranker.cache_key`); queries are keyed
    inside it."""
    key = json.dumps({**reranker.cache_key(), "format": FORMAT}, sort_keys=True)
    return cache_dir() / "features" / hashlib.sha256(key.encode()).hexdigest()[:16]


def compute_features(reranker: RouteHeadReranker, qid: str, query: str, docs: list[dict], doc_ids: list[str],
                     qrels: dict[str, int]) -> QueryFeatures:
    """One query's features (one all-heads forward of the engine plus a query-embedding forward)."""
    gains, best_dcg = judged(doc_ids, qrels)
    diffs = reranker.token_diffs(query, docs)
    return QueryFeatures(qid=qid, head_scores=diffs.per_head().float(), gains=gains, ideal_dcg=best_dcg,
                         embedding=query_embedding(reranker.backbone, query), diffs=diffs)


@dataclass(frozen=True)
class FeatureJob:
    """One query to compute: what :func:`compute_features` takes besides the engine."""

    qid: str
    query: str
    docs: list[dict]
    doc_ids: list[str]
    qrels: dict[str, int]


class Workers(Protocol):
    """Engines elsewhere that compute features (:class:`routehead_rag.workers.RayWorkers`)."""

    n: int

    def check(self, cache_key: dict) -> None: ...

    def map(self, jobs: list[FeatureJob]) -> Iterator[QueryFeatures]: ...


class FeatureCache:
    """One ``.pt`` file per (query, candidate list) in a folder, written atomically: an interrupted run loses at
    most one query, and a query re-ranked over other candidates gets its own entry."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, qid: str, query: str, doc_ids: list[str]) -> Path:
        digest = hashlib.sha256("\x00".join([query, *doc_ids]).encode()).hexdigest()[:12]
        return self.folder / f"{''.join(c if c.isalnum() or c in '-_.' else '_' for c in qid)[:80]}-{digest}.pt"

    def get(self, qid: str, query: str, doc_ids: list[str]) -> QueryFeatures | None:
        path = self.path(qid, query, doc_ids)
        if not path.is_file():
            return None
        try:
            saved = torch.load(path, weights_only=True)
            diffs = saved.pop("diffs", None)
            return QueryFeatures(**saved, diffs=TokenDiffs(**diffs) if diffs is not None else None)
        except Exception as err:  # a truncated or foreign file
            raise ValueError(f"cached features {path} are unreadable ({err}); delete the file to recompute it.") from err

    def put(self, features: QueryFeatures, query: str, doc_ids: list[str]) -> QueryFeatures:
        path = self.path(features.qid, query, doc_ids)
        tmp = path.with_suffix(".tmp")
        saved = asdict(features)
        if saved["diffs"] is not None:
            saved["diffs"].pop("token_weights")  # ReAttn's, made from the documents' text at replay: never cached
        torch.save(saved, tmp)
        tmp.rename(path)
        return features


def extract_features(dataset: Dataset, candidates: dict[str, list[str]], reranker: RouteHeadReranker, depth: int,
                     seed: int = 0, max_queries: int | None = None,
                     missing: Literal["compute", "error", "skip"] = "compute",
                     workers: Workers | None = None) -> list[QueryFeatures]:
    """Compute (or load from the cache) the features of the queries with candidates; resumable.

    Queries are processed in a seeded random order, so an interrupted run, or ``max_queries``,
    leaves a random subset. ``missing``: what to do with a query that is not cached: compute it, raise
    ``ValueError`` saying how many are missing and how to compute them, or leave it out. ``workers``: compute them
    there (:class:`routehead_rag.workers.RayWorkers`), each written here as it arrives.
    """
    folder = features_dir(reranker)
    cache = FeatureCache(folder)
    qids = sorted(q for q in dataset.queries if candidates.get(q))
    random.Random(seed).shuffle(qids)
    qids = qids[:max_queries]
    found = {q: cache.get(q, dataset.queries[q], candidates[q][:depth]) for q in qids}
    for qid, cached in found.items():  # judgements are not part of the cache key: take today's
        if cached is not None:
            cached.gains, cached.ideal_dcg = judged(candidates[qid][:depth], dataset.qrels.get(qid, {}))
    todo = [q for q in qids if found[q] is None]
    if todo and missing == "error":
        raise ValueError(f"{len(todo)} of {len(qids)} queries of {dataset.name} have no cached features in {folder}; "
                         "compute them first with `routehead features --dataset ...` (resumable, in the background).")
    if missing == "skip":
        return [found[q] for q in sorted(qids) if found[q] is not None]
    if todo:
        where = f"on {workers.n} workers" if workers is not None else "one forward of the whole prompt each"
        print(f"features: {len(qids) - len(todo)} of {len(qids)} queries cached in {folder}; computing {len(todo)} "
              f"({where}: seconds per query on a CPU).")
    jobs = [FeatureJob(q, dataset.queries[q], [dataset.corpus[d] for d in candidates[q][:depth]], candidates[q][:depth],
                       dataset.qrels.get(q, {})) for q in todo]
    if workers is not None and jobs:
        workers.check(reranker.cache_key())
        computed = workers.map(jobs)
    else:
        computed = (compute_features(reranker, j.qid, j.query, j.docs, j.doc_ids, j.qrels) for j in jobs)
    by_qid = {j.qid: j for j in jobs}
    previous = time.perf_counter()
    for n, features in enumerate(tqdm(computed, total=len(jobs), desc="head scores", unit="query", disable=not jobs), 1):
        job = by_qid[features.qid]
        found[job.qid] = cache.put(features, job.query, job.doc_ids)
        now = time.perf_counter()
        if n == 2 and len(jobs) > 2:  # timed on the second query: the first one also warms up
            tqdm.write(f"  about {(now - previous) * (len(jobs) - 2) / 60:.1f} min more for {len(jobs) - 2} queries "
                       f"({now - previous:.1f} s each)")
        previous = now
    return [found[q] for q in sorted(qids)]


def judged(doc_ids: list[str], qrels: dict[str, int]) -> tuple[torch.Tensor, float]:
    """What ``qrels`` say of a candidate list: ``[n_docs]`` gains (negative grades and unjudged: 0), and the ideal
    DCG@10 of all the query's relevant documents."""
    return (torch.tensor([max(qrels.get(d, 0), 0) for d in doc_ids], dtype=torch.float32),
            ideal_dcg(list(qrels.values())))


def ideal_dcg(gains: list[int], k: int = 10) -> float:
    """DCG@k of the best possible ranking (linear gains, log2 discount, as trec_eval)."""
    best = sorted((g for g in gains if g > 0), reverse=True)[:k]
    return float(sum(g / math.log2(i + 2) for i, g in enumerate(best)))


def token_level(reranker: RouteHeadReranker, features: QueryFeatures, query: str,
                documents: list[DocumentInput] | None) -> TokenDiffs:
    """The cached token-level attention as ``reranker`` sums it: with ReAttn's token weights attached where it
    re-weights (then ``documents``, the candidates' texts in the cached order, are needed)."""
    if features.diffs is None:
        raise ValueError(f"the features of query {features.qid} hold no token-level attention; recompute them.")
    if reranker.reweighting == "none":
        return features.diffs
    if documents is None:
        raise ValueError("reweighting='reattn' reads the documents' words: pass the candidates' texts.")
    return attach(features.diffs, reranker.backbone.engine_tokenizer, query,
                  [reranker.prompts.doc_ids(d) for d in to_documents(documents)])


def replay(reranker: RouteHeadReranker, features: QueryFeatures, query: str,
           documents: list[DocumentInput] | None = None) -> tuple[Ranking, dict[int, float] | None]:
    """The ranking ``reranker.rerank(query, candidates)`` gives (candidates in their first-stage order), replayed
    from the cache in the reranker's mode and aggregation, and the heads it read (``None``: all): what the
    benchmark and calibration read. ``documents``: the candidates' texts in the cached order, needed where the
    reranker re-weights the attention by the words it reads (``reweighting="reattn"``)."""
    heads, embedding = reranker.route(query)
    prior = rank_prior(len(features.gains))
    if reranker.aggregation == "summed":
        return rank_summed(token_level(reranker, features, query, documents).summed(heads), prior,
                           reranker.fusion_weight), heads
    scores = features.head_scores.double()
    return rank(scores, heads, prior, reranker.query_fusion_weight(scores, heads, prior, embedding)), heads


def replay_evidence(reranker: RouteHeadReranker, features: QueryFeatures, query: str,
                    documents: list[DocumentInput]) -> tuple[Ranking, torch.Tensor]:
    """:func:`replay`'s ranking and the evidence ``reranker``'s relevance model reads
    (:func:`routehead_rag.evidence.document_evidence`, ``[n_docs, n_features]``), as ``rerank`` computes them, from
    the cache; ``documents``: the candidates' texts, in the cached order."""
    if features.diffs is None:
        raise ValueError(f"the features of query {features.qid} hold no token-level attention; recompute them.")
    ranking, heads = replay(reranker, features, query, documents)
    evidence = document_evidence(query, to_documents(documents), features.diffs.mass(heads), ranking.scores,
                                 reranker.settings.max_doc_words)
    return ranking, evidence
