"""Vectorised nDCG@10 over many candidate head sets, single-head quality, and the per-query pseudo-label search.

Every function works on one query's standardised head scores ``z: [n_heads, n_docs]`` (each head's
scores z-scored across the candidates, see :func:`routehead_rag.scoring.standardize`) and its
candidates' gains; a head set scores the documents by the mean of its heads' rows, plus
``fusion_weight`` times the standardised first-stage score.
"""

from __future__ import annotations

import math

import torch

from ..features import QueryFeatures


def _discounts(k: int) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(k, dtype=torch.float64) + 2)


def ndcg_at_10(scores: torch.Tensor, gains: torch.Tensor, ideal: float) -> torch.Tensor:
    """nDCG@10 of each row of ``scores: [B, n_docs]`` (ties broken by candidate order): ``[B]``."""
    if ideal <= 0:
        return torch.zeros(scores.shape[0], dtype=torch.float64)
    return ndcg_at_10_rows(scores, gains.expand(scores.shape[0], -1), torch.tensor(ideal, dtype=torch.float64))


def ndcg_at_10_rows(scores: torch.Tensor, gains: torch.Tensor, ideal: torch.Tensor) -> torch.Tensor:
    """nDCG@10 of many queries at once: row ``i`` of ``scores`` and ``gains`` (``[n_queries, n_docs]``, shorter lists
    padded with ``-inf`` scores and 0 gains) is one query, ``ideal: [n_queries]`` its ideal DCG (> 0): ``[n_queries]``."""
    order = torch.sort(-scores.double(), dim=1, stable=True).indices[:, :10]  # [n_queries, k]
    return (gains.double().gather(1, order) * _discounts(order.shape[1])).sum(dim=1) / ideal


def single_head_ndcg(queries: list[QueryFeatures], z: list[torch.Tensor]) -> torch.Tensor:
    """Mean nDCG@10 of each head alone, over queries with a relevant candidate: ``[n_heads]``."""
    rows = [ndcg_at_10(zq, q.gains, q.ideal_dcg) for q, zq in zip(queries, z) if q.gains.sum() > 0]
    return torch.stack(rows).mean(dim=0)


def set_ndcg(z: torch.Tensor, heads: list[int], base: torch.Tensor, gains: torch.Tensor, ideal: float) -> float:
    """nDCG@10 of one head set (mean of its z rows) on top of ``base: [n_docs]`` (the weighted first-stage term)."""
    return ndcg_at_10((z[heads].mean(dim=0) + base)[None], gains, ideal).item()


def best_head_set(z: torch.Tensor, gains: torch.Tensor, ideal: float, base: torch.Tensor, max_heads: int,
                  swap_rounds: int = 2) -> tuple[list[int], float]:
    """Forward selection with swaps over sets of at most ``max_heads`` rows of ``z: [K, n_docs]``.

    Rows are expected in decreasing order of global quality: ties go to the lower index, and a
    head is added only if it strictly improves the query's nDCG@10 (so sets stay small).
    Returns (row indices, nDCG@10).
    """
    chosen: list[int] = []
    total = torch.zeros_like(base)  # sum of the chosen rows
    best = ndcg_at_10(base[None], gains, ideal).item() if base.abs().sum() > 0 else -1.0
    for _ in range(max_heads):
        candidates = (total[None] + z) / (len(chosen) + 1) + base  # [K, n]
        values = ndcg_at_10(candidates, gains, ideal)
        values[chosen] = -math.inf
        j = int(torch.argmax(values))  # first maximum = best global rank among ties
        if values[j] <= best + 1e-12:
            break
        chosen.append(j)
        total = total + z[j]
        best = values[j].item()
    for _ in range(swap_rounds):
        improved = False
        for slot in range(len(chosen)):
            others = total - z[chosen[slot]]
            values = ndcg_at_10((others[None] + z) / len(chosen) + base, gains, ideal)
            values[chosen] = -math.inf
            j = int(torch.argmax(values))
            if values[j] > best + 1e-12:
                total = others + z[j]
                chosen[slot], best, improved = j, values[j].item(), True
        if not improved:
            break
    return sorted(chosen), best


def tied_best_heads(z: torch.Tensor, gains: torch.Tensor, ideal: float, base: torch.Tensor) -> list[int]:
    """Rows of ``z`` that alone (on top of ``base``) reach the best single-head nDCG@10, if that beats ``base`` alone.

    On a list with one relevant document many heads tie at the top; each of them judged the query well,
    so each is a positive label, not only the one the forward selection happened to take first.
    """
    values = ndcg_at_10(z + base, gains, ideal)
    if values.max() <= ndcg_at_10(base[None], gains, ideal).item() + 1e-12:
        return []
    return torch.nonzero(values >= values.max() - 1e-12).flatten().tolist()
