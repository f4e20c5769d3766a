"""ICR calibration, both ways, and the recipes that turn scores into a ranking (:func:`rank`, :func:`rank_summed`).

For one document with tokens t: ``c(t) = s_query(t) - s_NA(t)``, the attention of the query rows minus that of
the content-free "N/A" query. Two aggregations:

- **summed** (ICR and QRHead as published, :func:`summed_scores`): ``s(t)`` is the attention summed over the
  heads used (all of them for ICR, its head subset for QRHead), so there is one mask per document: tokens with
  ``c(t) > mean(c) - 2·std(c)`` (sample std, strict) are kept, over the span ICR counts, the ``[i] `` marker
  included; the document's score is the sum of the kept ``c(t)``.
- **per head** (this project's variant, :func:`calibrated_scores`, what the router is trained on): the same
  calibration for every head alone, over the document's own tokens, keeping ``c(t) >= mean(c) - 2·std(c)``
  (population std); the heads' rows are then z-scored and weighted (:func:`fuse`).

The first stage enters a fused score as evidence that may reorder the list but never overturn a clear attention
winner (:func:`with_prior`): a document whose attention leads every other by more than :data:`CLEAR_LEAD` standard
deviations of the list's attention scores stays first.

A window's scores are multiplied by its number of documents, so a score reads as attention relative to an even
share, comparable across windows and lists of different lengths.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch

Aggregation = Literal["summed", "per_head"]
AGGREGATIONS: tuple[str, ...] = ("summed", "per_head")
CLEAR_LEAD = 1.0  # an attention lead (in standard deviations of the list's attention) that the first stage cannot overturn


def calibrated_scores(diff: torch.Tensor, doc_spans: list[tuple[int, int]]) -> torch.Tensor:
    """Per-head calibrated document scores (one mask per head and document).

    diff: ``[n_heads_total, n_keys]``, query-minus-N/A attention of each head to each key (:func:`token_diffs`).
    Returns ``[n_heads_total, n_docs]`` (float64), an empty document scoring 0.
    """
    diff = diff.double()
    scores = torch.zeros(diff.shape[0], len(doc_spans), dtype=torch.float64)
    for d, (start, end) in enumerate(doc_spans):
        if end <= start:
            continue
        c = diff[:, start:end]  # [H, T]
        threshold = c.mean(dim=1, keepdim=True) - 2 * c.std(dim=1, correction=0, keepdim=True)
        scores[:, d] = torch.where(c >= threshold, c, torch.zeros_like(c)).sum(dim=1)
    return scores * len(doc_spans)


def summed_scores(diff: torch.Tensor, marked_spans: list[tuple[int, int]], token_weights: torch.Tensor | None = None,
                  entropy: bool = False) -> torch.Tensor:
    """ICR's calibrated document scores (one mask per document over the heads' summed attention).

    diff: ``[n_keys]``, query-minus-N/A attention summed (or weighted) over the heads used; marked_spans: each
    document's span with its ``[i] `` marker. Returns ``[n_docs]`` (float64). A span of one token keeps it (its
    sample std is undefined). ReAttn (:mod:`routehead_rag.reweighting`): ``token_weights`` (``[n_keys]``) scale
    ``diff`` before the mask; ``entropy`` multiplies a positive score by the normalized entropy of its kept tokens'
    positive attention.
    """
    diff = diff.double() if token_weights is None else diff.double() * token_weights.double()
    scores = torch.zeros(len(marked_spans), dtype=torch.float64)
    for d, (start, end) in enumerate(marked_spans):
        c = diff[start:end]  # [T]
        if len(c) > 1:
            c = c[c > c.mean() - 2 * c.std(correction=1)]
        scores[d] = c.sum()
        if entropy and scores[d] > 0 and len(c) > 1:
            scores[d] *= normalized_entropy(c.clamp(min=0))
    return scores * len(marked_spans)


def normalized_entropy(mass: torch.Tensor) -> float:
    """``H(p) / log(T)`` of ``p = mass / mass.sum()`` over ``mass: [T]`` (non-negative, T > 1): 1 for mass spread
    evenly, 0 for mass on one token (and for no mass)."""
    total = float(mass.sum())
    if total <= 0:
        return 0.0
    p = mass[mass > 0] / total
    return float(-(p * p.log()).sum()) / math.log(len(mass))


def token_diffs(att_query: torch.Tensor, att_na: torch.Tensor) -> torch.Tensor:
    """``c = att_query - att_na`` in float32, ``[..., n_keys]``: what both aggregations calibrate, and what the feature
    cache keeps, so that scores replayed from the cache equal live ones bit for bit."""
    return att_query.float() - att_na.float()


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Z-score each row across documents: ``[..., n_docs]`` (a constant row becomes zeros; no documents, nothing)."""
    x = x.double()
    if x.shape[-1] == 0:
        return x
    std = x.std(dim=-1, correction=0, keepdim=True)
    return (x - x.mean(dim=-1, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))


def rank_prior(n_docs: int) -> torch.Tensor:
    """First-stage prior from the input order alone (best first): ``-log2(rank + 1)``, ``[n_docs]``."""
    return -torch.log2(torch.arange(n_docs, dtype=torch.float64) + 2)


def with_prior(attention: torch.Tensor, first_stage: torch.Tensor, fusion_weight: float) -> torch.Tensor:
    """``attention + fusion_weight · z(first_stage)`` (``[n_docs]`` each), except that a document whose attention
    leads the runner-up by more than :data:`CLEAR_LEAD` standard deviations of the list's attention stays first (its
    score then leads the fused runner-up by its attention lead): the prior reorders everything else, but never
    overturns a decision the attention makes clearly, wherever in the input the winner was given."""
    if fusion_weight == 0 or attention.numel() < 2:
        return attention
    attention = attention.double()
    fused = attention + fusion_weight * standardize(first_stage)
    top = torch.topk(attention, 2)
    lead = float(top.values[0] - top.values[1])
    if lead > CLEAR_LEAD * float(attention.std(correction=0)):
        best = int(top.indices[0])
        runner_up = float(torch.cat([fused[:best], fused[best + 1:]]).max())
        fused[best] = max(float(fused[best]), runner_up + lead)
    return fused


def fuse(head_scores: torch.Tensor, weights: Mapping[int, float], first_stage: torch.Tensor,
         fusion_weight: float) -> torch.Tensor:
    """Score of weighted heads (modes ``routed`` and ``static``): the weighted sum of the heads' z-scored rows
    (``weights``: ``{head: weight}``, absolute values summing to 1, or less for a trained router's blend, a negative
    weight counting against a document) plus ``fusion_weight`` × the z-scored first stage (:func:`with_prior`: a
    clear attention winner stays first).

    head_scores: ``[n_heads_total, n_docs]``; first_stage: ``[n_docs]`` (scores, or :func:`rank_prior`).
    Returns ``[n_docs]``. Z-scoring puts heads of different scales on one footing; the result ranks
    documents within one list.
    """
    w = torch.tensor(list(weights.values()), dtype=torch.float64)  # [n_selected]
    return with_prior(w @ standardize(head_scores[list(weights)]), first_stage, fusion_weight)


@dataclass(frozen=True)
class Ranking:
    """One candidate list re-ranked: ``order`` (document indices, best first; ties keep the input order) and
    ``scores: [n_docs]`` (float64, in input order)."""

    order: list[int]
    scores: torch.Tensor


def rank(head_scores: torch.Tensor, weights: Mapping[int, float] | None, first_stage: torch.Tensor,
         fusion_weight: float) -> Ranking:
    """Rank documents by their heads' per-head scores: what ``rerank`` (aggregation ``per_head``), the benchmark and
    training all call.

    head_scores: ``[n_heads_total, n_docs]`` calibrated scores (rows of unselected heads may be NaN).
    weights: ``None`` for all heads (the sum of the raw rows: ``icr_per_head``), else ``{head: weight}`` for :func:`fuse`
    with ``first_stage: [n_docs]`` (scores, or :func:`rank_prior`) at ``fusion_weight``.
    """
    scores = head_scores.sum(dim=0) if weights is None else fuse(head_scores, weights, first_stage, fusion_weight)
    return _ranked(scores)


def rank_summed(summed: torch.Tensor, first_stage: torch.Tensor, fusion_weight: float) -> Ranking:
    """Rank documents by their :func:`summed_scores` (``[n_docs]``): ICR's and QRHead's score as published where
    ``fusion_weight`` is 0, else the z-scored summed score plus ``fusion_weight`` × the z-scored first stage
    (:func:`with_prior`: a clear attention winner stays first)."""
    scores = summed.double() if fusion_weight == 0 else with_prior(standardize(summed), first_stage, fusion_weight)
    return _ranked(scores)


def _ranked(scores: torch.Tensor) -> Ranking:
    values = scores.tolist()
    return Ranking(order=sorted(range(len(values)), key=lambda i: (-values[i], i)), scores=scores)


@dataclass(frozen=True)
class TokenDiffs:
    """Query-minus-N/A attention of every head to every token of each document, as the feature cache keeps it:
    enough to replay both aggregations, for any head set, without the model.

    values: ``[n_heads_total, n_tokens]`` float32 (:func:`token_diffs`), the documents' marked spans (``[i] ``
    marker, then the document) one after another in input order; starts: ``[n_docs + 1]`` offsets of the spans
    in ``values``; markers: ``[n_docs]`` marker tokens at the start of each span; scale: ``[n_docs]``, the number of
    documents in each one's window.
    """

    values: torch.Tensor
    starts: torch.Tensor
    markers: torch.Tensor
    scale: torch.Tensor
    token_weights: torch.Tensor | None = None  # [n_tokens]: ReAttn's, where attached (never cached)

    def __len__(self) -> int:
        return len(self.markers)

    def _span(self, d: int) -> torch.Tensor:
        return self.values[:, int(self.starts[d]):int(self.starts[d + 1])]

    def per_head(self) -> torch.Tensor:
        """:func:`calibrated_scores` of every head: ``[n_heads_total, n_docs]`` float64."""
        out = torch.zeros(self.values.shape[0], len(self), dtype=torch.float64)
        for d in range(len(self)):
            span = self._span(d)
            out[:, d] = calibrated_scores(span, [(int(self.markers[d]), span.shape[1])])[:, 0] * float(self.scale[d])
        return out

    def summed(self, weights: Mapping[int, float] | None = None) -> torch.Tensor:
        """:func:`summed_scores` over the heads of ``weights`` (``{head: weight}``; ``None``: every head at weight
        1, ICR), re-weighted as ReAttn where :attr:`token_weights` are attached: ``[n_docs]`` float64."""
        out = torch.zeros(len(self), dtype=torch.float64)
        for d in range(len(self)):
            span = self._span(d).double()
            diff = span.sum(dim=0) if weights is None else torch.tensor(list(weights.values()),
                                                                        dtype=torch.float64) @ span[list(weights)]
            reweighted = self.token_weights is not None
            token_weights = self.token_weights[int(self.starts[d]):int(self.starts[d + 1])] if reweighted else None
            out[d] = summed_scores(diff, [(0, span.shape[1])], token_weights, entropy=reweighted)[0] * float(
                self.scale[d])
        return out

    def mass(self, weights: Mapping[int, float] | None = None) -> torch.Tensor:
        """Each document's own query-minus-N/A attention per head (:func:`head_mass`) over the heads of ``weights``
        (``None``: every head): ``[n_docs]`` float64."""
        totals = torch.stack([self._span(d).double().sum(dim=1) for d in range(len(self))], dim=1) if len(self) else \
            torch.zeros(self.values.shape[0], 0, dtype=torch.float64)
        return head_mass(totals, weights)


def head_mass(totals: torch.Tensor, weights: Mapping[int, float] | None) -> torch.Tensor:
    """The evidence ``attention`` (:mod:`routehead_rag.evidence`): ``totals: [n_heads_total, n_docs]``, each head's
    query-minus-N/A attention summed over a document's marked span with no mask and no list scale, averaged over the
    heads of ``weights`` (``None``: every head alike), a negative weight counting against, over the sum of the
    absolute weights (as the summed aggregation's capture weighs the heads). Returns ``[n_docs]`` float64."""
    if weights is None:
        return totals.double().mean(dim=0)
    w = torch.tensor(list(weights.values()), dtype=torch.float64)
    return w @ totals[list(weights)].double() / w.abs().sum()
