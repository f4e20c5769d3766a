"""nDCG@k, Recall@k and RR@k with trec_eval's conventions (the numbers ``ir_measures`` gives for nDCG@k, R@k, RR@k).

- nDCG: linear gain ``rel``, discount ``1/log2(rank+1)``; the ideal ranking is built from the query's qrels with
  ``rel > 0``; labels <= 0 gain nothing.
- Relevant (Recall, RR) means ``rel > 0``. A judged query with no relevant document scores 0.
- A run is ``{qid: [docid, ...]}`` (best first) or ``{qid: {docid: score}}``; scores are ranked as trec_eval does:
  score descending, ties by docid descending.
- Queries are those of the qrels: a judged query the run lacks scores 0 (as ``ir_measures`` and ``trec_eval -c``
  do); a query that is only in the run is skipped (as trec_eval does).
- Checked equal to ``ir_measures`` 0.4, except RR@k on score ties: its msmarco provider breaks them by docid ascending.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Run = Mapping[str, Sequence[str] | Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def ranking(hits: Sequence[str] | Mapping[str, float]) -> list[str]:
    """Docids best first; a ``{docid: score}`` mapping is sorted by score descending, then docid descending."""
    if isinstance(hits, Mapping):
        return [docid for docid, _ in sorted(hits.items(), key=lambda h: (h[1], h[0]), reverse=True)]
    return list(hits)


def ndcg_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int = 10) -> float:
    gains = np.array([max(rels.get(docid, 0), 0) for docid in ranked[:k]], dtype=float)
    ideal = np.array(sorted((r for r in rels.values() if r > 0), reverse=True)[:k], dtype=float)
    if not ideal.size:
        return 0.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    return float(gains @ discounts[: gains.size] / (ideal @ discounts[: ideal.size]))


def recall_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int = 10) -> float:
    n_relevant = sum(r > 0 for r in rels.values())
    return sum(rels.get(docid, 0) > 0 for docid in ranked[:k]) / n_relevant if n_relevant else 0.0


def rr_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int = 10) -> float:
    return next((1.0 / rank for rank, docid in enumerate(ranked[:k], 1) if rels.get(docid, 0) > 0), 0.0)


def per_query(run: Run, qrels: Qrels, k: int = 10) -> dict[str, dict[str, float]]:
    """``{qid: {"nDCG@k": .., "R@k": .., "RR@k": ..}}`` for every query of the qrels."""
    scores = {}
    for qid, rels in qrels.items():
        ranked = ranking(run.get(qid, []))
        scores[qid] = {f"nDCG@{k}": ndcg_at_k(ranked, rels, k), f"R@{k}": recall_at_k(ranked, rels, k),
                       f"RR@{k}": rr_at_k(ranked, rels, k)}
    return scores


def evaluate(run: Run, qrels: Qrels, k: int = 10) -> dict[str, float]:
    """Mean nDCG@k, R@k, RR@k over the queries of the qrels, plus ``"queries"``: how many there are."""
    if not any(qid in qrels for qid in run):
        raise ValueError("no query of the run is in the qrels; check that their query ids match.")
    table = per_query(run, qrels, k)
    means = {name: float(np.mean([row[name] for row in table.values()])) for name in next(iter(table.values()))}
    return {**means, "queries": len(table)}
