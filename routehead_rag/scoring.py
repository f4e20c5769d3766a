"""ICR calibration, and the one recipe that turns per-head scores into a ranking (:func:`rank`).

For one head and one document with tokens t: ``c(t) = s_query(t) - s_NA(t)`` (attention of the
query rows minus that of the content-free "N/A" query); tokens with ``c(t) >= mean(c) - 2·std(c)``
are kept and the document's score is the sum of the kept ``c(t)``. A window's scores are
multiplied by its number of documents, so a score reads as attention relative to an even share,
comparable across windows and lists of different lengths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch


def calibrated_scores(att_query: torch.Tensor, att_na: torch.Tensor, doc_spans: list[tuple[int, int]]) -> torch.Tensor:
    """Per-head calibrated document scores.

    att_query, att_na: ``[n_heads_total, n_keys]``, the query rows' mean attention to each key.
    Returns ``[n_heads_total, n_docs]`` (float64), an empty document scoring 0.
    """
    diff = (att_query.double() - att_na.double())  # [H, K]
    scores = torch.zeros(diff.shape[0], len(doc_spans), dtype=torch.float64)
    for d, (start, end) in enumerate(doc_spans):
        if end <= start:
            continue
        c = diff[:, start:end]  # [H, T]
        threshold = c.mean(dim=1, keepdim=True) - 2 * c.std(dim=1, correction=0, keepdim=True)
        scores[:, d] = torch.where(c >= threshold, c, torch.zeros_like(c)).sum(dim=1)
    return scores * len(doc_spans)


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Z-score each row across documents: ``[..., n_docs]`` (a constant row becomes zeros)."""
    x = x.double()
    std = x.std(dim=-1, correction=0, keepdim=True)
    return (x - x.mean(dim=-1, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))


def rank_prior(n_docs: int) -> torch.Tensor:
    """First-stage prior from the input order alone (best first): ``-log2(rank + 1)``, ``[n_docs]``."""
    return -torch.log2(torch.arange(n_docs, dtype=torch.float64) + 2)


def fuse(head_scores: torch.Tensor, weights: Mapping[int, float], first_stage: torch.Tensor,
         fusion_weight: float) -> torch.Tensor:
    """Score of weighted heads (modes ``routed`` and ``static``): the weighted sum of the heads' z-scored rows
    (``weights``: ``{head: weight}``, absolute values summing to 1, or less for a trained router's blend, a negative
    weight counting against a document) plus ``fusion_weight`` × the z-scored first stage.

    head_scores: ``[n_heads_total, n_docs]``; first_stage: ``[n_docs]`` (scores, or :func:`rank_prior`).
    Returns ``[n_docs]``. Z-scoring puts heads of different scales on one footing; the result ranks
    documents within one list.
    """
    w = torch.tensor(list(weights.values()), dtype=torch.float64)  # [n_selected]
    return w @ standardize(head_scores[list(weights)]) + fusion_weight * standardize(first_stage)


@dataclass(frozen=True)
class Ranking:
    """One candidate list re-ranked: ``order`` (document indices, best first; ties keep the input order) and
    ``scores: [n_docs]`` (float64, in input order)."""

    order: list[int]
    scores: torch.Tensor


def rank(head_scores: torch.Tensor, weights: Mapping[int, float] | None, first_stage: torch.Tensor,
         fusion_weight: float) -> Ranking:
    """Rank documents by their heads' scores: what ``rerank``, the benchmark and training all call.

    head_scores: ``[n_heads_total, n_docs]`` calibrated scores (rows of unselected heads may be NaN).
    weights: ``None`` for all heads (ICR: the sum of the raw rows), else ``{head: weight}`` for :func:`fuse`
    with ``first_stage: [n_docs]`` (scores, or :func:`rank_prior`) at ``fusion_weight``.
    """
    scores = head_scores.sum(dim=0) if weights is None else fuse(head_scores, weights, first_stage, fusion_weight)
    values = scores.tolist()
    return Ranking(order=sorted(range(len(values)), key=lambda i: (-values[i], i)), scores=scores)
