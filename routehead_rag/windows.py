"""Split a candidate list that does not fit the context into windows that do; group windows into batches.

Windows are contiguous runs of the input (first-stage) order, as few as fit and balanced in
tokens, so that no window is a near-empty leftover. Scores are made comparable across windows
by :func:`routehead_rag.scoring.calibrated_scores` (attention relative to an even share).
"""

from __future__ import annotations

import math


def _pack(costs: list[int], capacity: int, max_docs: int) -> list[range]:
    windows, start, total = [], 0, 0
    for i, cost in enumerate(costs):
        if i > start and (total + cost > capacity or i - start >= max_docs):
            windows.append(range(start, i))
            start, total = i, 0
        total += cost
    windows.append(range(start, len(costs)))
    return windows


def plan_windows(costs: list[int], capacity: int, max_docs: int | None = None) -> list[range]:
    """Contiguous windows of document indices, each with ``sum(costs) <= capacity``.

    costs: tokens each document takes in the prompt (each must be ``<= capacity``);
    max_docs: at most this many documents per window (``None``: no limit).
    """
    if not costs:
        return []
    if max(costs) > capacity:
        raise ValueError(f"a document of {max(costs)} tokens cannot fit a window of {capacity}")
    limit = max_docs or len(costs)
    n_windows = len(_pack(costs, capacity, limit))
    limit = min(limit, math.ceil(len(costs) / n_windows))  # balance the counts too
    lo, hi = max(costs), capacity
    if len(_pack(costs, hi, limit)) > n_windows:
        limit = max_docs or len(costs)
    while lo < hi:  # the smallest capacity that still needs no more windows
        mid = (lo + hi) // 2
        if len(_pack(costs, mid, limit)) <= n_windows:
            hi = mid
        else:
            lo = mid + 1
    return _pack(costs, lo, limit)


def plan_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Groups of prompt indices to forward together, each padded to its longest: ``len(group) * max(length)``
    tokens at most ``budget`` (a prompt longer than ``budget`` goes alone; ``budget`` 0: every prompt alone).

    Prompts are grouped by length, longest first, so that little of a batch is padding.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches
