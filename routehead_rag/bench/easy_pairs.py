"""The signal sanity check: a query's relevant document among a few random ones, first and then last in the input.

For ``n_queries`` seeded queries of a labelled dataset (SciFact test in ``benchmarks/easy_pairs.py``), one of the
query's relevant documents and ``k`` documents drawn at random from the corpus (easy negatives), laid out twice:
the relevant one first (``[rel, neg_1, .., neg_k]``) and the same list reversed (``[neg_k, .., neg_1, rel]``). Any
useful re-ranker puts the relevant document on top in both; one that follows the input order puts it on top only in
the first. Per method, with the first-stage prior (the input order as evidence) on and off:

- ``top1_first`` / ``top1_last``: the fraction of queries with the relevant document ranked first;
- ``order_tau``: Kendall's tau between a list's document scores and its reversed list's (1: the ranking ignores the
  input order; -1: it follows it);
- ``relevance_relevant`` / ``relevance_negative``: the mean ``relevance_score`` of the relevant and the random
  documents, where the method has a calibration (at the method's own first-stage weight, as a user gets it).

Both layouts of a query are one all-heads forward each, cached as any bench query is (:mod:`routehead_rag.features`),
and every method replays them, so the check costs two forwards per query whatever the number of methods.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from typing import Literal

from ..data.datasets import Dataset
from ..features import QueryFeatures, extract_features, replay_evidence, token_level
from ..reranker import RouteHeadReranker
from ..scoring import Ranking, rank, rank_prior, rank_summed

PRIOR_WEIGHT = 1.0  # "prior on" for a method whose own first-stage weight is 0 (ICR, QRHead as published)
ORDERS = ("first", "last")


@dataclass(frozen=True)
class EasyPairs:
    """The lists of the check: ``queries`` (qid -> text), ``relevant`` (qid -> the relevant docid) and ``lists``
    (qid -> order -> docids in input order), over ``dataset``'s corpus."""

    dataset: Dataset
    queries: dict[str, str]
    relevant: dict[str, str]
    lists: dict[str, dict[str, list[str]]]


def easy_pairs(dataset: Dataset, n_queries: int, k: int, seed: int = 0) -> EasyPairs:
    """Draw the check's lists: ``n_queries`` seeded queries that have a relevant document in the corpus, each with
    one relevant document and ``k`` random documents that are not judged relevant for it."""
    if dataset.corpus is None:
        raise ValueError(f"{dataset.name} has no corpus to draw random documents from; use a BEIR folder.")
    if n_queries < 1 or k < 1:
        raise ValueError(f"n_queries and k must be at least 1, not {n_queries} and {k}.")
    rng = random.Random(seed)
    doc_ids = sorted(dataset.corpus)
    qids = sorted(q for q in dataset.queries
                  if any(g > 0 and d in dataset.corpus for d, g in dataset.qrels.get(q, {}).items()))
    qids = sorted(rng.sample(qids, min(n_queries, len(qids))))
    relevant, lists = {}, {}
    for qid in qids:
        judged = dataset.qrels[qid]
        rel = rng.choice(sorted(d for d, g in judged.items() if g > 0 and d in dataset.corpus))
        negatives: list[str] = []
        while len(negatives) < k:
            d = rng.choice(doc_ids)
            if judged.get(d, 0) <= 0 and d not in negatives:
                negatives.append(d)
        relevant[qid] = rel
        lists[qid] = {"first": [rel, *negatives], "last": [*reversed(negatives), rel]}
    return EasyPairs(dataset=dataset, queries={q: dataset.queries[q] for q in qids}, relevant=relevant, lists=lists)


def pair_features(pairs: EasyPairs, reranker: RouteHeadReranker,
                  missing: Literal["compute", "error", "skip"] = "compute") -> dict[str, dict[str, QueryFeatures]]:
    """Both layouts' features per query (qid -> order -> features), computed once and cached (``missing``: see
    :func:`routehead_rag.features.extract_features`; with ``"skip"``, a query may have one order or none)."""
    keys = {f"{q}/{order}": (q, order) for q in pairs.queries for order in ORDERS}
    as_dataset = Dataset(name=f"{pairs.dataset.name} easy pairs", queries={key: pairs.queries[q] for key, (q, _) in
                                                                           keys.items()},
                         qrels={key: {pairs.relevant[q]: 1} for key, (q, _) in keys.items()},
                         corpus=pairs.dataset.corpus)
    candidates = {key: pairs.lists[q][order] for key, (q, order) in keys.items()}
    depth = max(len(docs) for docs in candidates.values())
    out: dict[str, dict[str, QueryFeatures]] = {}
    for features in extract_features(as_dataset, candidates, reranker, depth, missing=missing):
        q, order = keys[features.qid]
        out.setdefault(q, {})[order] = features
    return out


def replay_with_prior(reranker: RouteHeadReranker, features: QueryFeatures, query: str, prior_on: bool,
                      prior_weight: float = PRIOR_WEIGHT, documents: list | None = None) -> Ranking:
    """The ranking ``reranker`` gives the cached list, with the input order as first-stage evidence at the method's
    own weight (``prior_on``: a router's, per query where it predicts one; ``prior_weight`` for a method whose weight
    is 0, as ICR and QRHead publish them) or at weight 0. ``documents``: the list's texts, for ReAttn."""
    heads, embedding = reranker.route(query)
    prior = rank_prior(len(features.gains))
    if reranker.aggregation == "summed":
        weight = (reranker.fusion_weight or prior_weight) if prior_on else 0.0
        return rank_summed(token_level(reranker, features, query, documents).summed(heads), prior, weight)
    scores = features.head_scores.double()
    if heads is None:  # all heads summed raw: no first stage in it (icr_per_head)
        return rank(scores, None, prior, 0.0)
    own = reranker.mode == "routed" or reranker.fusion_weight != 0  # a router's weight (per query) or one given
    weight = 0.0 if not prior_on else (reranker.query_fusion_weight(scores, heads, prior, embedding) if own
                                       else prior_weight)
    return rank(scores, heads, prior, weight)


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-a of two score lists over the same items: concordant minus discordant pairs over all pairs
    (a pair tied in either list counts as neither)."""
    n = len(a)
    if n < 2:
        return 1.0
    signs = [(a[i] - a[j]) * (b[i] - b[j]) for i in range(n) for j in range(i + 1, n)]
    return (sum(s > 0 for s in signs) - sum(s < 0 for s in signs)) / len(signs)


@dataclass
class PairResult:
    """One method and prior setting over the check's queries."""

    top1: dict[str, list[bool]] = field(default_factory=lambda: {order: [] for order in ORDERS})
    taus: list[float] = field(default_factory=list)
    relevance_relevant: list[float] = field(default_factory=list)
    relevance_negative: list[float] = field(default_factory=list)

    def row(self) -> dict:
        n = len(self.taus)
        return {"queries": n,
                **{f"top1_{order}": round(sum(self.top1[order]) / n, 4) for order in ORDERS},
                "order_tau": round(statistics.fmean(self.taus), 4),
                "relevance_relevant": _mean(self.relevance_relevant),
                "relevance_negative": _mean(self.relevance_negative)}


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def evaluate(pairs: EasyPairs, features: dict[str, dict[str, QueryFeatures]],
             rerankers: dict[str, RouteHeadReranker], prior_weight: float = PRIOR_WEIGHT) -> dict[str, dict]:
    """Each method's row, prior on and off: ``{"<method> prior on": row, "<method> prior off": row}`` (see the module
    docstring for the row's fields)."""
    results = {(name, on): PairResult() for name in rerankers for on in (True, False)}
    for qid, query in pairs.queries.items():
        for (name, on), result in results.items():
            reranker = rerankers[name]
            by_doc: dict[str, dict[str, float]] = {}
            for order in ORDERS:
                doc_ids = pairs.lists[qid][order]
                docs = [pairs.dataset.corpus[d] for d in doc_ids]
                ranking = replay_with_prior(reranker, features[qid][order], query, on, prior_weight, docs)
                result.top1[order].append(doc_ids[ranking.order[0]] == pairs.relevant[qid])
                by_doc[order] = dict(zip(doc_ids, ranking.scores.tolist()))
                if on and reranker.calibration is not None:  # as the user gets it: the method's own weight
                    relevance = reranker.calibration(replay_evidence(reranker, features[qid][order], query, docs)[1])
                    relevance = relevance.tolist()
                    for d, p in zip(doc_ids, relevance):
                        (result.relevance_relevant if d == pairs.relevant[qid] else result.relevance_negative).append(p)
            docs = pairs.lists[qid]["first"]
            result.taus.append(kendall_tau([by_doc["first"][d] for d in docs], [by_doc["last"][d] for d in docs]))
    return {f"{name} prior {'on' if on else 'off'}": result.row() for (name, on), result in results.items()}


def format_rows(rows: dict[str, dict]) -> str:
    """The terminal table: one row per method and prior setting."""
    cols = ["top1_first", "top1_last", "order_tau", "relevance_relevant", "relevance_negative"]
    lines = [f"{'method':<28}" + "".join(f"{c:>20}" for c in cols)]
    for name, row in rows.items():
        lines.append(f"{name:<28}" + "".join(f"{'-' if row[c] is None else format(row[c], '.3f'):>20}" for c in cols))
    return "\n".join(lines)

