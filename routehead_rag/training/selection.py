"""Layer and head choices of the training-free methods of 2025–26, fitted on labelled queries' cached features.

- **Selective-ICR's layer window** (:func:`best_layer_window`): ICR's summed score over the heads of a contiguous
  window of layers only, the forward stopped after its last layer.

The QRHead-style detector (single-head nDCG@10) is :func:`routehead_rag.training.train.qrhead_heads`. The equations,
and the choices the papers leave open, are in docs/method.md ("Training-free advances").
"""

from __future__ import annotations

import torch

from ..features import QueryFeatures
from .search import ndcg_at_10


def windows(n_layers: int, min_layers: int = 1) -> list[range]:
    """Every contiguous window of at least ``min_layers`` of ``n_layers`` layers, as ``range(start, stop)``."""
    return [range(start, stop) for start in range(n_layers) for stop in range(start + min_layers, n_layers + 1)]


def window_scores(query: QueryFeatures, n_layers: int, spans: list[range]) -> torch.Tensor:
    """ICR's summed score of each document of one query over each layer window: ``[n_windows, n_docs]`` float64.

    Per document, the query-minus-N/A attention summed over the heads of the window's layers, then ICR's one mask
    (``c > mean - 2·std``, sample std) and sum, times the window's document count, as
    :meth:`routehead_rag.scoring.TokenDiffs.summed` computes it for one head set.
    """
    diffs = query.diffs
    if diffs is None:
        raise ValueError(f"the features of query {query.qid} hold no token-level attention; recompute them.")
    per_layer = diffs.values.double().view(n_layers, -1, diffs.values.shape[1]).sum(dim=1)  # [n_layers, n_tokens]
    cumulative = torch.cat([torch.zeros(1, per_layer.shape[1], dtype=torch.float64), per_layer.cumsum(dim=0)])
    starts = torch.tensor([w.start for w in spans])
    stops = torch.tensor([w.stop for w in spans])
    summed = cumulative[stops] - cumulative[starts]  # [n_windows, n_tokens]
    out = torch.zeros(len(spans), len(diffs), dtype=torch.float64)
    for d in range(len(diffs)):
        c = summed[:, int(diffs.starts[d]):int(diffs.starts[d + 1])]  # [n_windows, T]
        if c.shape[1] > 1:
            c = torch.where(c > c.mean(dim=1, keepdim=True) - 2 * c.std(dim=1, correction=1, keepdim=True), c, 0.0)
        out[:, d] = c.sum(dim=1) * float(diffs.scale[d])
    return out


def best_layer_window(queries: list[QueryFeatures], n_layers: int, min_layers: int = 2) -> tuple[range, float]:
    """The contiguous layer window (at least ``min_layers`` layers) whose ICR summed score has the best mean nDCG@10
    over ``queries`` (those with a relevant candidate), ties going to the window that stops earliest (the faster
    forward), then the shorter; and that mean."""
    useful = [q for q in queries if q.gains.sum() > 0]
    if not useful:
        raise ValueError("no query with a relevant candidate to choose a layer window on.")
    spans = windows(n_layers, min_layers)
    total = torch.zeros(len(spans), dtype=torch.float64)
    for q in useful:
        total += ndcg_at_10(window_scores(q, n_layers, spans), q.gains, q.ideal_dcg)
    mean = (total / len(useful)).tolist()
    best = max(range(len(spans)), key=lambda i: (round(mean[i], 12), -spans[i].stop, -len(spans[i])))
    return spans[best], mean[best]
