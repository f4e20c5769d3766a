"""How far to trust the first stage, per query: a fusion weight predicted from what the router already has (the head
scores and the query embedding).

A routed score is ``a + w · fs``: ``a`` the routed heads' weighted z-scored rows, ``fs`` the z-scored first-stage
order. A fixed ``w`` is right on average for the data it was chosen on and wrong elsewhere; but each query shows how
much its attention is worth: whether the routed heads agree with each other and with the first stage, how clearly
one document stands out, how strong the raw attention signal is, and how far the query lies from those the router
was trained on (:func:`trust_statistics`). :class:`Trust` maps those statistics to ``w = softplus(bias + coef ·
standardized statistics)``, at most ``max_weight``; it is learned with the router
(``routehead_rag.training.train.fit_trust``) and starts at the router's fixed weight.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch

from .scoring import fuse, standardize

STATISTICS = ("agreement_with_first_stage", "agreement_between_heads", "top_gap", "raw_strength", "novelty")
MAX_WEIGHT = 4.0  # the most the first stage may weigh in a query's fused score


def trust_statistics(head_scores: torch.Tensor, weights: Mapping[int, float], first_stage: torch.Tensor,
                     novelty: float) -> torch.Tensor:
    """The query's :data:`STATISTICS`, ``[len(STATISTICS)]`` float64, from ``head_scores: [n_heads_total, n_docs]``
    (calibrated per-head scores), the router's ``{head: weight}``, ``first_stage: [n_docs]`` and the query
    embedding's ``novelty`` to the router (:meth:`routehead_rag.router.Router.novelty`).

    agreement_with_first_stage: Pearson correlation of the attention score ``a`` with the first stage;
    agreement_between_heads: mean pairwise correlation of the positively weighted heads' rows; top_gap: the best
    document's lead over the second in ``a``'s z-scores; raw_strength: log of the mean, over those heads, of their
    raw scores' spread (standard deviation across documents); novelty: as given.
    """
    heads = list(weights)
    rows = head_scores[heads].double()  # [n_selected, n_docs]
    z = standardize(rows)
    a = standardize(fuse(head_scores, weights, first_stage, 0.0))  # the attention part of the routed score
    fs = standardize(first_stage)
    positive = z[[i for i, h in enumerate(heads) if weights[h] > 0]]
    if len(positive) > 1:
        correlation = positive @ positive.T / positive.shape[1]  # [p, p]
        between = (correlation.sum() - correlation.diagonal().sum()) / (len(positive) * (len(positive) - 1))
    else:
        between = torch.tensor(1.0, dtype=torch.float64)
    top = torch.topk(a, 2).values if a.numel() > 1 else torch.cat([a, a])
    spread = rows.std(dim=1, correction=0).mean()
    return torch.stack([(a * fs).mean(), between, top[0] - top[1], torch.log(spread + 1e-12),
                        torch.tensor(float(novelty), dtype=torch.float64)])


def trust_weights(statistics: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, coef: torch.Tensor,
                  bias: torch.Tensor, max_weight: float) -> torch.Tensor:
    """``min(softplus(bias + coef · (statistics - mean) / std), max_weight)`` for ``statistics: [n, F]``: ``[n]``
    (differentiable in ``coef`` and ``bias``, so that training and :meth:`Trust.weight` compute it alike)."""
    return torch.nn.functional.softplus(bias + ((statistics - mean) / std) @ coef).clamp(max=max_weight)


@dataclass
class Trust:
    """``w = min(softplus(bias + coef · (statistics - mean) / std), max_weight)`` (fields: plain lists, for JSON)."""

    mean: list[float]
    std: list[float]
    coef: list[float]
    bias: float
    max_weight: float = MAX_WEIGHT

    @classmethod
    def constant(cls, weight: float, mean: list[float], std: list[float]) -> "Trust":
        """The fixed ``weight`` for every query (the starting point of training)."""
        weight = min(max(weight, 1e-4), MAX_WEIGHT)
        return cls(mean, std, [0.0] * len(mean), math.log(math.expm1(weight)))

    def weight(self, statistics: torch.Tensor) -> float:
        """The first stage's weight for a query with these :func:`trust_statistics`."""
        f64 = torch.float64
        return float(trust_weights(statistics.double()[None], torch.tensor(self.mean, dtype=f64),
                                   torch.tensor(self.std, dtype=f64), torch.tensor(self.coef, dtype=f64),
                                   torch.tensor(self.bias, dtype=f64), self.max_weight)[0])

    def to_dict(self) -> dict:
        return asdict(self)
