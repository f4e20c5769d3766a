"""QRHead-style heads, pseudo labels, router training and the shared part of its score, on cached :class:`QueryFeatures`."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from tqdm.auto import tqdm

from ..features import QueryFeatures
from ..router import Router, RouterEnsemble, RouterNet
from ..scoring import fuse, rank, rank_prior, standardize
from ..trust import STATISTICS, Trust, trust_statistics, trust_weights
from .search import best_head_set, ndcg_at_10, ndcg_at_10_rows, single_head_ndcg, tied_best_heads


@dataclass
class Prepared:
    """Features turned into what search and training use: per query ``z: [n_heads_total, n_docs]`` and ``fs: [n_docs]``."""

    queries: list[QueryFeatures]
    z: list[torch.Tensor]  # z-scored head rows
    fs: list[torch.Tensor]  # z-scored first-stage prior (from the candidate order, as at inference)

    @classmethod
    def of(cls, queries: list[QueryFeatures]) -> "Prepared":
        useful = [q for q in queries if q.gains.sum() > 0]  # no relevant candidate: nothing to learn from
        return cls(useful, [standardize(q.head_scores) for q in useful], [standardize(rank_prior(len(q.gains))) for q in useful])

    def __len__(self) -> int:
        return len(self.queries)


def _shuffled(queries: list[QueryFeatures], seed: int) -> list[QueryFeatures]:
    """The queries sorted by qid, then shuffled with ``seed``: an order that depends on nothing else."""
    ordered = sorted(queries, key=lambda q: q.qid)
    random.Random(seed).shuffle(ordered)
    return ordered


def split(queries: list[QueryFeatures], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[QueryFeatures], list[QueryFeatures]]:
    """Deterministic train/validation split by a seeded shuffle of the sorted qids."""
    ordered = _shuffled(queries, seed)
    n_val = max(1, int(len(ordered) * val_fraction))
    return ordered[n_val:], ordered[:n_val]


def kfold(queries: list[QueryFeatures], n_folds: int, seed: int = 0) -> list[tuple[list[QueryFeatures], list[QueryFeatures]]]:
    """``n_folds`` (held-out, rest) pairs over a seeded shuffle of the sorted qids; each query is held out once."""
    ordered = _shuffled(queries, seed)
    return [(ordered[k::n_folds], [q for i, q in enumerate(ordered) if i % n_folds != k]) for k in range(n_folds)]


HeadSet = Sequence[int] | Mapping[int, float]  # heads of equal weight, or {head: signed weight}


def query_ndcg(query: QueryFeatures, weights: Mapping[int, float] | None, fusion_weight: float) -> float:
    """nDCG@10 of one query ranked as at inference (:func:`routehead_rag.scoring.rank`, over its candidate order)."""
    ranking = rank(query.head_scores.double(), weights, rank_prior(len(query.gains)), fusion_weight)
    return ndcg_at_10(ranking.scores[None], query.gains, query.ideal_dcg).item()


def per_query_ndcg(data: Prepared, head_sets: list[HeadSet], fusion_weight: float) -> list[float]:
    """nDCG@10 of each query scored by ``head_sets[i]`` (one set for all if a single set is given)."""
    sets = head_sets * len(data) if len(head_sets) == 1 else head_sets
    return [query_ndcg(q, s if isinstance(s, Mapping) else dict.fromkeys(s, 1.0 / len(s)), fusion_weight)
            for q, s in zip(data.queries, sets)]


def mean_ndcg(data: Prepared, head_sets: list[HeadSet], fusion_weight: float) -> float:
    """Mean of :func:`per_query_ndcg`."""
    values = per_query_ndcg(data, head_sets, fusion_weight)
    return sum(values) / max(len(values), 1)


def rank_heads(data: Prepared) -> list[int]:
    """All heads, best single-head nDCG@10 first."""
    return torch.argsort(single_head_ndcg(data.queries, data.z), descending=True, stable=True).tolist()


def qrhead_heads(train: Prepared, val: Prepared, sizes: tuple[int, ...] = (4, 8, 12, 16, 24, 32),
                 fusion_weight: float = 0.0) -> tuple[list[int], dict[int, float]]:
    """QRHead-style: the top-k heads by single-head quality on ``train``, k chosen by nDCG@10 on ``val``."""
    ranked = rank_heads(train)
    scores = {k: mean_ndcg(val, [ranked[:k]], fusion_weight) for k in sizes}
    best = max(scores, key=lambda k: (scores[k], -k))
    return sorted(ranked[:best]), scores


def pseudo_labels(data: Prepared, candidates: list[int], max_heads: int, fusion_weight: float) -> tuple[torch.Tensor, list[float]]:
    """Multi-hot labels ``[n_queries, K]`` over ``candidates`` (best first) and each query's best nDCG@10.

    A query's positives: the head set found by forward selection with swaps, plus every head that
    alone ties for the best single-head nDCG@10 (docs/method.md has what the ties add).
    """
    labels = torch.zeros(len(data), len(candidates))
    best = []
    for i, (q, z, fs) in enumerate(tqdm(list(zip(data.queries, data.z, data.fs)), desc="pseudo labels", unit="query")):
        zk, base = z[candidates], fusion_weight * fs
        chosen, value = best_head_set(zk, q.gains, q.ideal_dcg, base, max_heads)
        labels[i, chosen + tied_best_heads(zk, q.gains, q.ideal_dcg, base)] = 1.0
        best.append(value)
    return labels, best


def embeddings(data: Prepared, layer: int, pooling: str) -> torch.Tensor:
    """``[n_queries, hidden]`` query embeddings at ``layer`` with ``pooling``."""
    return torch.stack([q.embedding[layer, 0 if pooling == "mean" else 1] for q in data.queries]).float()


def routed_sets(model: RouterNet, x: torch.Tensor, candidates: list[int], top_k: int) -> list[list[int]]:
    with torch.no_grad():
        top = torch.topk(model(x), top_k, dim=1).indices
    return [[candidates[j] for j in row] for row in top.tolist()]


def warm_start(model: RouterNet, source: Router, candidates: list[int]) -> None:
    """Copy ``source``'s query projection, and the embeddings of the heads both route over, into ``model``."""
    with torch.no_grad():
        model.proj.load_state_dict(source.model.proj.state_dict())
        row = {head: i for i, head in enumerate(source.config.candidate_heads)}
        for j, head in enumerate(candidates):
            if head in row:
                model.heads[j] = source.model.heads[row[head]]


def fit_router(train: Prepared, val: Prepared, labels: torch.Tensor, candidates: list[int], *, layer: int, pooling: str,
               top_k: int, fusion_weight: float, dim: int = 64, sparsity: float = 0.1, epochs: int = 300,
               patience: int = 40, lr: float = 3e-3, weight_decay: float = 0.01, seed: int = 0,
               init: Router | None = None) -> tuple[RouterNet, float]:
    """Train the router on pseudo labels (BCE + ``sparsity`` × mean routing probability), full batch.

    ``init``: a router for the same backbone and query embedding to start from (:func:`warm_start`).
    Early stopping on the validation nDCG@10 of the ``top_k`` routed heads, the starting point included;
    returns the best model and that nDCG.
    """
    torch.manual_seed(seed)
    x_train, x_val = embeddings(train, layer, pooling), embeddings(val, layer, pooling)
    model = RouterNet(x_train.shape[1], len(candidates), dim)
    model.mean.copy_(x_train.mean(0))
    model.std.copy_(x_train.std(0).clamp_min(1e-6))
    with torch.no_grad():  # start from the label frequencies: with no query signal, one fixed set
        frequency = labels.mean(0).clamp(1e-3, 1 - 1e-3)
        model.bias.copy_(torch.log(frequency / (1 - frequency)))
    if init is not None:
        warm_start(model, init, candidates)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    best_value, best_state, since = -1.0, None, 0
    for epoch in range(epochs + 1):
        model.eval()
        value = mean_ndcg(val, routed_sets(model, x_val, candidates, top_k), fusion_weight)
        if value > best_value + 1e-6:
            best_value, best_state, since = value, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            since += 1
        if since >= patience or epoch == epochs:
            break
        model.train()
        logits = model(x_train)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels) + sparsity * torch.sigmoid(logits).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.load_state_dict(best_state)
    return model.eval(), best_value


State = TypeVar("State")


def _listwise_descent(params: list[torch.Tensor], scores: Callable[[], torch.Tensor], offset: torch.Tensor,
                      target: torch.Tensor, penalty: Callable[[], torch.Tensor], value: Callable[[], float],
                      snapshot: Callable[[], State], *, lr: float, epochs: int, patience: int,
                      start: tuple[float, State | None] = (-1.0, None),
                      after_step: Callable[[], None] | None = None) -> State:
    """Adam on ``params`` against the listwise loss: softmax cross-entropy of ``scores()`` (``[n_queries, n_docs]``,
    ``-inf`` where ``offset`` pads) against ``target`` (the normalised gains), plus ``penalty()``; ``after_step``
    (under no_grad) after each step. Early stopping on ``value()`` (the validation nDCG@10) with ``patience``,
    ``start`` (a value and its state) competing; returns the ``snapshot()`` of the best state."""
    optimizer = torch.optim.Adam(params, lr=lr)
    (best, best_state), since = start, 0
    for _ in range(epochs):
        current = value()
        if current > best + 1e-6:
            best, best_state, since = current, snapshot(), 0
        elif (since := since + 1) >= patience:
            break
        log_p = torch.log_softmax(scores(), dim=1).masked_fill(offset.isinf(), 0.0)
        loss = -(target * log_p).sum(1).mean() + penalty()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if after_step is not None:
            with torch.no_grad():
                after_step()
    return best_state


def fit_shared_heads(train: Prepared, val: Prepared, candidates: list[int], start: Mapping[int, float],
                     routed: tuple[list[list[int]], list[list[int]]], fusion_weight: float, l2: float = 1e-3,
                     lr: float = 1e-2, epochs: int = 400, patience: int = 50,
                     signed: bool = True) -> tuple[dict[int, float], float, float]:
    """The shared part of a routed score: weights ``v`` over ``candidates`` (``signed``: free in sign, else kept
    ``>= 0``) and the routed heads' weight ``alpha >= 0``, learned jointly.

    A query's score is ``v · z[candidates] + alpha · mean(z[routed heads]) + fusion_weight · fs``, trained listwise
    (softmax cross-entropy against the normalised gains, L2 ``l2`` on ``v``) from ``v = start`` (its negative weights
    at 0 where not ``signed``), ``alpha = 0``; early stopping on the validation nDCG@10, the start included (a state
    where every weight is 0 is skipped: it ranks by the first stage alone, which the router cannot express). ``routed``: each train and validation query's
    routed heads. Returns ``{head: v / |v|}`` (non-zero weights), the shared fraction ``|v| / (|v| + alpha)`` and
    the fusion weight relative to ``|v| + alpha`` (L1 norms), as :func:`routehead_rag.heads.blend` and
    :func:`routehead_rag.scoring.fuse` take them.
    """
    def stack(data: Prepared, routed_sets: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z: [n_queries, K + routed + first stage, n_docs]``, ``offset`` (-inf pads shorter lists) and gains."""
        n_docs = max(len(q.gains) for q in data.queries)
        z = torch.zeros(len(data), len(candidates) + 2, n_docs)
        offset, gains = torch.full((len(data), n_docs), float("-inf")), torch.zeros(len(data), n_docs)
        for i, (q, zq, fs, r) in enumerate(zip(data.queries, data.z, data.fs, routed_sets)):
            n = len(q.gains)
            z[i, :-2, :n], z[i, -2, :n], z[i, -1, :n] = zq[candidates], zq[r].mean(0), fs
            offset[i, :n], gains[i, :n] = 0.0, q.gains
        return z, offset, gains

    (z, offset, gains), (z_val, offset_val, gains_val) = stack(train, routed[0]), stack(val, routed[1])
    target = gains / gains.sum(dim=1, keepdim=True)
    ideal_val = torch.tensor([q.ideal_dcg for q in val.queries])
    v = torch.tensor([float(start.get(h, 0.0)) if signed else max(float(start.get(h, 0.0)), 0.0)
                      for h in candidates], requires_grad=True)  # a warm start's negative weights dropped
    alpha = torch.zeros(1, requires_grad=True)
    fixed = torch.tensor([fusion_weight])

    def scores(z: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:  # [n_queries, n_docs]
        return torch.einsum("k,nkd->nd", torch.cat([v, alpha, fixed]), z) + offset

    def value() -> float:
        with torch.no_grad():
            if v.abs().sum() + alpha.abs().sum() == 0:
                return -1.0
            return ndcg_at_10_rows(scores(z_val, offset_val), gains_val, ideal_val).mean().item()

    def project() -> None:
        alpha.clamp_(min=0.0)
        if not signed:
            v.clamp_(min=0.0)

    v_best, alpha_best = _listwise_descent(
        [v, alpha], lambda: scores(z, offset), offset, target, lambda: l2 * v.square().sum(), value,
        lambda: (v.detach().clone(), alpha.item()), lr=lr, epochs=epochs, patience=patience, after_step=project)
    shared_norm = v_best.abs().sum().item()
    total = shared_norm + alpha_best
    weights = {h: w / shared_norm for h, w in zip(candidates, v_best.tolist()) if w != 0}
    return weights, shared_norm / total, fusion_weight / total


def held_out_ndcg(queries: list[QueryFeatures], router: Router | RouterEnsemble | None) -> float:
    """Mean of :func:`per_query_router_ndcg`."""
    values = per_query_router_ndcg(queries, router)
    return sum(values) / max(len(values), 1)


def per_query_router_ndcg(queries: list[QueryFeatures], router: Router | RouterEnsemble | None) -> list[float]:
    """nDCG@10 of each of ``queries`` (one with no relevant candidate scores 0), as at inference: the first-stage
    order for ``None``, else ``router``'s heads fused with it by the router's weight."""
    if router is None:
        return [ndcg_at_10(rank_prior(len(q.gains))[None], q.gains, q.ideal_dcg).item() for q in queries]
    values = []
    for q in queries:
        weights = router.weights_for(q.embedding)
        fusion = router.fusion_weight_for(q.head_scores.double(), weights, rank_prior(len(q.gains)), q.embedding)
        values.append(query_ndcg(q, weights, fusion))
    return values


TRUST_START = 0.25  # the least first-stage weight that fit_trust's descent starts from


def fit_trust(router: Router | RouterEnsemble, train: list[QueryFeatures], val: list[QueryFeatures], *,
              scored_by: Callable[[QueryFeatures], Router | RouterEnsemble] | None = None, l2: float = 1e-2,
              lr: float = 0.05, epochs: int = 300, patience: int = 40) -> Trust:
    """The first stage's weight per query for ``router`` (a :class:`Trust` over :func:`trust_statistics`), trained
    listwise (softmax cross-entropy of ``a + w(q) · fs`` against the normalised gains, L2 ``l2`` on its
    coefficients) from the router's fixed weight (or :data:`TRUST_START`, if larger); early stopping on the validation
    nDCG@10, the router's own weight included.

    ``scored_by``: per query, the router whose heads score it (default ``router`` for every query). A router
    trained without the query's domain shows trust how routing fares off its training domain, which queries the
    router was trained on cannot show (:func:`routehead_rag.training.domains.fit_trust_off_domain`)."""
    def stack(queries: list[QueryFeatures]) -> tuple[torch.Tensor, ...]:
        """Statistics ``[n, F]``, attention part and first stage ``[n, n_docs]`` (-inf offset pads), gains, ideal."""
        n_docs = max(len(q.gains) for q in queries)
        stats = torch.zeros(len(queries), len(STATISTICS), dtype=torch.float64)
        a, fs = torch.zeros(len(queries), n_docs, dtype=torch.float64), torch.zeros(len(queries), n_docs, dtype=torch.float64)
        offset = torch.full((len(queries), n_docs), float("-inf"), dtype=torch.float64)
        gains = torch.zeros(len(queries), n_docs, dtype=torch.float64)
        for i, q in enumerate(queries):
            n, prior, scores = len(q.gains), rank_prior(len(q.gains)), q.head_scores.double()
            scorer = router if scored_by is None else scored_by(q)
            weights = scorer.weights_for(q.embedding)
            stats[i] = trust_statistics(scores, weights, prior, scorer.novelty(q.embedding))
            a[i, :n], fs[i, :n] = fuse(scores, weights, prior, 0.0), standardize(prior)
            offset[i, :n], gains[i, :n] = 0.0, q.gains.double()
        return stats, a, fs, offset, gains, torch.tensor([q.ideal_dcg for q in queries], dtype=torch.float64)

    train_q, val_q = Prepared.of(train).queries, Prepared.of(val).queries
    if not train_q or not val_q:
        raise ValueError("learning the first stage's weight per query needs training and validation queries with a "
                         "relevant candidate.")
    (stats, a, fs, offset, gains, _), (s_val, a_val, fs_val, off_val, g_val, ideal_val) = stack(train_q), stack(val_q)
    mean, std = stats.mean(0), stats.std(0).clamp_min(1e-6)
    start = Trust.constant(router.fusion_weight, mean.tolist(), std.tolist())
    coef = torch.zeros(len(STATISTICS), dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(start.bias, dtype=torch.float64)  # first the router's own weight, for the first candidate
    target = gains / gains.sum(dim=1, keepdim=True)

    def scores(stats: torch.Tensor, a: torch.Tensor, fs: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        w = trust_weights(stats, mean, std, coef, bias, start.max_weight)
        return a + w[:, None] * fs + offset

    def value() -> float:
        with torch.no_grad():
            return ndcg_at_10_rows(scores(s_val, a_val, fs_val, off_val), g_val, ideal_val).mean().item()

    own = (value(), (coef.detach().clone(), start.bias))  # the router's own weight
    # then the descent, from weight TRUST_START at least: near 0 the softplus is flat, and the weight would stay put
    bias = torch.tensor(Trust.constant(max(router.fusion_weight, TRUST_START), start.mean, start.std).bias,
                        dtype=torch.float64, requires_grad=True)
    best_coef, best_bias = _listwise_descent(
        [coef, bias], lambda: scores(stats, a, fs, offset), offset, target, lambda: l2 * coef.square().sum(), value,
        lambda: (coef.detach().clone(), bias.item()), lr=lr, epochs=epochs, patience=patience, start=own)
    return Trust(mean.tolist(), std.tolist(), best_coef.tolist(), best_bias, start.max_weight)


def with_trust(router: Router | RouterEnsemble, trust: Trust) -> Router | RouterEnsemble:
    """``router`` (unchanged) with the first stage's weight predicted per query by ``trust``."""
    if isinstance(router, RouterEnsemble):
        return RouterEnsemble([with_trust(m, trust) for m in router.members], router.training)
    return Router(dataclasses.replace(router.config, trust=trust.to_dict()), router.model)
