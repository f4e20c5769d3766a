"""Layer and head choices of the training-free methods of 2025–26, fitted on labelled queries' cached features.

- **Selective-ICR's layer window** (:func:`best_layer_window`): ICR's summed score over the heads of a contiguous
  window of layers only, the forward stopped after its last layer.
- **CoRe heads** (:func:`core_scores`): each head's mean softmax probability of a relevant document against the
  query's non-relevant candidates, its document scores divided by a temperature.
- **HeadRank heads** (:func:`headrank_scores`): each head's pairwise accuracy on (more, less relevant) candidate
  pairs, less ``entropy_weight`` times the normalised entropy of its attention over the candidates.

Heads chosen by a detector are summed as ICR sums them (:func:`icr_ndcg` with ``heads``), as both papers do.

The QRHead-style detector (single-head nDCG@10) is :func:`routehead_rag.training.train.qrhead_heads`. The equations,
and the choices the papers leave open, are in docs/history.md ("The methods of 2025–26").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..features import QueryFeatures
from ..heads import heads_of
from ..scoring import rank_prior, rank_summed
from .search import ndcg_at_10

HEAD_COUNTS = (4, 8, 12, 16, 24, 32)  # heads a detector may keep, chosen on validation queries (QRHead's 16, CoRe's 8)
CORE_TEMPERATURES = (0.001, 0.01, 0.1)  # CoRe's published 0.001 (Mistral, Granite) and 0.1 (Llama, Phi), and between
ENTROPY_WEIGHTS = (0.0, 0.5, 1.0)  # HeadRank's weight of the entropy term (not published; chosen on validation)


def icr_ndcg(queries: list[QueryFeatures], fusion_weight: float, heads: Sequence[int] | None = None) -> list[float]:
    """Each query's nDCG@10 under ICR (every head summed, as published; ``heads``: those alone, as QRHead and CoRe
    sum them) fused with the first stage's z-scored order at ``fusion_weight`` (0: the attention alone)."""
    weights = None if heads is None else dict.fromkeys(heads, 1.0)
    values = []
    for q in queries:
        if q.diffs is None:
            raise ValueError(f"the features of query {q.qid} hold no token-level attention; recompute them.")
        ranking = rank_summed(q.diffs.summed(weights), rank_prior(len(q.gains)), fusion_weight)
        values.append(ndcg_at_10(ranking.scores[None], q.gains, q.ideal_dcg).item())
    return values


def windows(n_layers: int, min_layers: int = 1) -> list[range]:
    """Every contiguous window of at least ``min_layers`` of ``n_layers`` layers, as ``range(start, stop)``."""
    return [range(start, stop) for start in range(n_layers) for stop in range(start + min_layers, n_layers + 1)]


def n_layers_of(queries: list[QueryFeatures]) -> int:
    """The backbone's layer count, read off cached features (their embedding: ``[n_layers + 1, 2, hidden]``)."""
    return queries[0].embedding.shape[0] - 1


def window_heads(window: range, queries: list[QueryFeatures]) -> list[int]:
    """Every head of the layers of ``window``, for the backbone of ``queries``' features."""
    return heads_of(window, queries[0].head_scores.shape[0] // n_layers_of(queries))


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


def _useful(queries: list[QueryFeatures]) -> list[QueryFeatures]:
    useful = [q for q in queries if q.gains.sum() > 0 and (q.gains == 0).any()]
    if not useful:
        raise ValueError("no query with both relevant and non-relevant candidates to detect heads on.")
    return useful


def core_scores(queries: list[QueryFeatures], temperature: float) -> torch.Tensor:
    """CoRe's contrastive score of every head, ``[n_heads_total]``: over each query's relevant candidates ``d+``, the
    mean of ``exp(s(d+)/t) / (exp(s(d+)/t) + sum over non-relevant d- of exp(s(d-)/t))``, where ``s`` is the head's
    calibrated attention to the document (its per-head score over the number of candidates: a share of the query's
    attention) and ``t`` the temperature."""
    total, count = None, 0
    for q in _useful(queries):
        logits = q.head_scores.double() / len(q.gains) / temperature  # [H, n_docs]
        negatives = logits[:, q.gains == 0]  # [H, n_neg]
        for p in torch.nonzero(q.gains > 0).flatten().tolist():
            both = torch.cat([logits[:, p:p + 1], negatives], dim=1)
            probability = torch.exp(logits[:, p] - torch.logsumexp(both, dim=1))  # [H]
            total = probability if total is None else total + probability
            count += 1
    return total / count


def headrank_scores(queries: list[QueryFeatures], entropy_weight: float) -> torch.Tensor:
    """HeadRank's selection score of every head, ``[n_heads_total]``: its discriminability, the fraction of
    (more relevant, less relevant) candidate pairs of adjacent grades that it orders rightly (ties: half), less
    ``entropy_weight`` × its mean normalised entropy over queries of ``p(d) = max(s(d), 0) / sum``, the share of its
    positive calibrated attention each candidate gets (1: spread evenly or none at all; 0: on one candidate)."""
    right, pairs, entropy = None, 0, None
    useful = _useful(queries)
    for q in useful:
        s = q.head_scores.double()  # [H, n_docs]
        grades = sorted(set(q.gains.tolist()))
        for lower, higher in zip(grades, grades[1:]):  # adjacent grades: the hard pairs
            hi, lo = s[:, q.gains == higher], s[:, q.gains == lower]  # [H, a], [H, b]
            diff = hi[:, :, None] - lo[:, None, :]  # [H, a, b]
            won = (diff > 0).double().sum(dim=(1, 2)) + 0.5 * (diff == 0).double().sum(dim=(1, 2))
            right = won if right is None else right + won
            pairs += diff.shape[1] * diff.shape[2]
        positive = s.clamp(min=0)
        mass = positive.sum(dim=1, keepdim=True)
        p = torch.where(mass > 0, positive / torch.where(mass > 0, mass, 1.0), 1.0 / s.shape[1])
        h = -(p * torch.log(p.clamp(min=1e-300))).sum(dim=1) / torch.log(torch.tensor(float(s.shape[1])))
        entropy = h if entropy is None else entropy + h
    return right / pairs - entropy_weight * entropy / len(useful)


Scorer = Callable[[list[QueryFeatures]], torch.Tensor]


def detected_heads(train: list[QueryFeatures], val: list[QueryFeatures], scorers: dict[str, Scorer],
                   counts: tuple[int, ...] = HEAD_COUNTS) -> tuple[list[int], str, float]:
    """The heads a detector keeps: for each scorer (a setting: name -> head scores from ``train``) and each head count,
    the top heads summed as ICR sums them, the pair with the best mean nDCG@10 on ``val`` (ties: fewer heads, then the
    first scorer). Returns the heads (ascending), the chosen setting's name and its validation nDCG@10."""
    best: tuple[float, int, int] | None = None
    chosen: tuple[list[int], str] = ([], "")
    for i, (name, scorer) in enumerate(scorers.items()):
        ranked = torch.argsort(scorer(train), descending=True, stable=True).tolist()
        for k in counts:
            heads = sorted(ranked[:k])
            values = icr_ndcg(val, 0.0, heads)
            key = (round(sum(values) / len(values), 12), -k, -i)
            if best is None or key > best:
                best, chosen = key, (heads, name)
    return chosen[0], chosen[1], best[0]


def core_heads(train: list[QueryFeatures], val: list[QueryFeatures]) -> tuple[list[int], str, float]:
    """CoRe heads: :func:`core_scores` at each of :data:`CORE_TEMPERATURES`, the temperature and count by ``val``."""
    return detected_heads(train, val, {f"t={t}": (lambda qs, t=t: core_scores(qs, t)) for t in CORE_TEMPERATURES})


def headrank_heads(train: list[QueryFeatures], val: list[QueryFeatures]) -> tuple[list[int], str, float]:
    """HeadRank heads: :func:`headrank_scores` at each of :data:`ENTROPY_WEIGHTS`, weight and count by ``val``."""
    return detected_heads(train, val, {f"entropy={w}": (lambda qs, w=w: headrank_scores(qs, w))
                                       for w in ENTROPY_WEIGHTS})
