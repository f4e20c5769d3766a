"""The training steps behind ``routehead detect-heads``, ``search-labels`` and ``train-router``.

Every step starts from cached features (computed on first use, resumable), so the LLM runs once
per training query whatever is re-run afterwards.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from ..backbone import Backbone
from ..data.datasets import load_dataset
from ..data.first_stage import first_stage_candidates
from ..features import QueryFeatures, Workers, extract_features
from ..reranker import RouteHeadReranker
from ..router import Router, RouterConfig, RouterEnsemble
from .config import TrainConfig
from .selection import best_layer_window, core_heads, headrank_heads, n_layers_of, window_heads
from .train import (
    Prepared,
    embeddings,
    fit_router,
    fit_shared_heads,
    held_out_ndcg,
    kfold,
    pseudo_labels,
    qrhead_heads,
    rank_heads,
    routed_sets,
    split,
)

FUSION_WEIGHTS = (0.0, 0.25, 0.5, 1.0)  # tried when the fusion weight is left to cross-validation
SHARED_CANDIDATES = 64  # heads the shared part of a router's score may weight


@dataclass
class DataSpec:
    """One training source as the CLI names it: a dataset spec, its split and optional qrels file."""

    dataset: str
    split: str = "train"
    qrels: str | None = None


def gather_features(specs: list[DataSpec], reranker: RouteHeadReranker, depth: int,
                    max_queries: int | None = None, workers: Workers | None = None) -> list[QueryFeatures]:
    """Features of every labelled query of every source (first stage: given candidates or BM25); those not cached
    are computed here, or on ``workers``."""
    features: list[QueryFeatures] = []
    for spec in specs:
        dataset = load_dataset(spec.dataset, split=spec.split, qrels_path=spec.qrels)
        candidates = first_stage_candidates(dataset, depth).candidates
        features += extract_features(dataset, candidates, reranker, depth, max_queries=max_queries, workers=workers)
    if not features:
        raise ValueError("no labelled query with candidates was found in the training data; check --dataset/--split/--qrels.")
    return features


DETECTORS = ("qrhead", "core", "headrank", "selective-icr")


def detect_heads(features: list[QueryFeatures], seed: int = 0,
                 detector: str = "qrhead") -> tuple[list[int], dict[str, float | str]]:
    """Heads for ``mode="static"`` found on labelled queries (a train split; counts and settings by a validation
    split) and what was chosen: ``qrhead`` (top-k by single-head nDCG@10, as QRHead), ``core`` (CoRe's contrastive
    score), ``headrank`` (HeadRank's discriminability and entropy) or ``selective-icr`` (every head of the layer
    window with the best ICR nDCG@10; summed with equal weights, these heads score as ``mode="all",
    layers=window``)."""
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}, not {detector!r}.")
    train, val = split(features, seed=seed)
    if detector == "qrhead":
        heads, table = qrhead_heads(Prepared.of(train), Prepared.of(val))
        return heads, {f"val_ndcg@10 k={k}": v for k, v in table.items()}
    if detector == "selective-icr":
        window, ndcg = best_layer_window(features, n_layers_of(features))
        return window_heads(window, features), {"layers": f"{window.start}-{window.stop - 1}", "ndcg@10": ndcg}
    heads, setting, ndcg = (core_heads if detector == "core" else headrank_heads)(train, val)
    return heads, {"setting": setting, "val_ndcg@10": ndcg}


def search_labels(features: list[QueryFeatures], top_k_candidates: int, max_heads: int,
                  fusion_weight: float) -> tuple[list[int], torch.Tensor, list[str]]:
    """Candidate heads (top-K by single-head quality over all queries), multi-hot labels ``[n, K]``, their qids."""
    data = Prepared.of(features)
    candidates = rank_heads(data)[:top_k_candidates]
    labels, _ = pseudo_labels(data, candidates, max_heads, fusion_weight)
    return candidates, labels, [q.qid for q in data.queries]


def train_router(features: list[QueryFeatures], reranker: RouteHeadReranker, config: TrainConfig,
                 warm_start: Router | None = None, seed: int | None = None) -> tuple[Router, dict]:
    """QRHead-style heads, pseudo labels, the router and the shared part of its score, from one train/validation
    split (``seed``, default ``config.seed``); the router and a report, which records ``config``.

    ``config.fusion_weight=None``: the weight of :data:`FUSION_WEIGHTS` with the best mean nDCG@10 (as at
    inference) over ``config.folds``-fold cross-validation of ``features``. ``config.max_layer``: the deepest
    layer a routed head may lie in (default: any; the forward runs to the deepest routed or shared head).
    ``warm_start``: a router for this backbone to start from (its query embedding layer and pooling, and its
    shared part, are kept as starting points).
    """
    started = time.time()
    seed = config.seed if seed is None else seed
    backbone, layer = reranker.backbone, config.layer
    n_layers = backbone.n_layers
    if warm_start is not None:
        warm_start.check_backbone(backbone)
        if (layer not in (None, warm_start.config.embed_layer)) or config.pooling != warm_start.config.pooling:
            raise ValueError(f"a warm start keeps the starting router's query embedding (layer "
                             f"{warm_start.config.embed_layer}, {warm_start.config.pooling} pooling); "
                             "drop --layer/--pooling or train from scratch.")
        layer = warm_start.config.embed_layer
    layer = n_layers // 3 if layer is None else layer
    if not 0 <= layer <= n_layers:
        raise ValueError(f"--layer must be within 0..{n_layers} (hidden states of {backbone.name}), not {layer}.")
    if config.max_layer is not None and not 0 <= config.max_layer < n_layers:
        raise ValueError(f"--max-layer must be within 0..{n_layers - 1} (layers of {backbone.name}), "
                         f"not {config.max_layer}.")
    fit = functools.partial(_fit, backbone=backbone, config=config, layer=layer, seed=seed, warm_start=warm_start)
    by_weight = {}
    fusion_weight = config.fusion_weight
    if fusion_weight is None:
        by_weight = _cross_validated_fusion(features, fit, config.folds, seed)
        fusion_weight = max(by_weight, key=lambda w: (by_weight[w], -w))  # ties: trust the heads
    router, report = fit(features, fusion_weight)
    report.update({
        "fusion_weight": fusion_weight, "fusion_weight_cv_ndcg@10": {str(w): round(v, 4) for w, v in by_weight.items()},
        "seconds": round(time.time() - started, 1), "dtype": str(backbone.model.dtype),
        "warm_start": warm_start is not None, "seed": seed, "config": asdict(config)})
    router.config.training = report
    return router, report


def train_routers(features: list[QueryFeatures], reranker: RouteHeadReranker, config: TrainConfig,
                  warm_start: Router | None = None) -> Router | RouterEnsemble:
    """``config.routers`` routers by :func:`train_router` with seeds ``config.seed``, ``config.seed + 1``, ...: each
    on its own train/validation split and folds of ``features``; one router alone, several averaged
    (:class:`RouterEnsemble`). At inference one query embedding serves all members, and the forward runs to the
    deepest head any of them weights."""
    started, routers, members = time.time(), [], config.routers
    for i in range(members):
        router, report = train_router(features, reranker, config, warm_start, seed=config.seed + i)
        routers.append(router)
        each = (time.time() - started) / (i + 1)
        chosen = report["fusion_weight_cv_ndcg@10"]
        print(f"router {i + 1}/{members} (seed {config.seed + i}): fusion weight of BM25's order {report['fusion_weight']}"
              + (f" ({config.folds}-fold cross-validated nDCG@10 by weight: {chosen})" if chosen else "")
              + f", validation nDCG@10 {report['val_ndcg@10']}"
              + (f"; about {each * (members - i - 1):.0f} s more" if i + 1 < members else ""))
    if members == 1:
        return routers[0]
    return RouterEnsemble(routers, {"members": members, "seeds": list(range(config.seed, config.seed + members)),
                                    "seconds": round(time.time() - started, 1), "config": asdict(config)})


def _fit(features: list[QueryFeatures], fusion_weight: float, *, backbone: Backbone, config: TrainConfig, layer: int,
         seed: int, warm_start: Router | None) -> tuple[Router, dict]:
    """One router with a given fusion weight, from one train/validation split of ``features``; and its report.

    The shared part is learned last, jointly with the routed heads' share (:func:`fit_shared_heads`): signed
    weights over the 64 best single heads no deeper than the QRHead-style heads (so it costs no deeper a forward),
    from those heads at equal weights; or, warm-started, over the starting router's shared heads from its weights.
    The routed heads are the K best single heads no deeper than ``config.max_layer`` (``None``: of any layer).
    """
    candidates_k, max_heads, top_k, max_layer = config.candidates, config.max_heads, config.top_k, config.max_layer
    pooling = config.pooling
    train_q, val_q = split(features, seed=seed)
    train, val = Prepared.of(train_q), Prepared.of(val_q)
    qrhead, qrhead_table = qrhead_heads(train, val)
    ranked = rank_heads(train)
    candidates = [h for h in ranked if max_layer is None or h // backbone.n_heads <= max_layer][:candidates_k]
    if len(candidates) < top_k:
        where = "" if max_layer is None else f" in layers 0..{max_layer}"
        raise ValueError(f"only {len(candidates)} candidate heads{where}, fewer than the {top_k} routed per query; "
                         "lower --top-k, or raise --candidates or --max-layer.")
    labels, _ = pseudo_labels(train, candidates, max_heads, fusion_weight)
    model, val_routed = fit_router(train, val, labels, candidates, layer=layer, pooling=pooling, top_k=top_k,
                                   fusion_weight=fusion_weight, seed=seed, init=warm_start)
    routed = tuple(routed_sets(model, embeddings(data, layer, pooling), candidates, top_k) for data in (train, val))
    if warm_start is not None and warm_start.config.shared_heads:
        start = warm_start.config.shared_heads
        linear = list(start)
    else:
        start = {h: 1.0 / len(qrhead) for h in qrhead}
        deepest = max(qrhead) // backbone.n_heads
        linear = [h for h in ranked if h // backbone.n_heads <= deepest][:SHARED_CANDIDATES]
    shared_heads, shared_fraction, scaled_fusion = fit_shared_heads(train, val, linear, start, routed, fusion_weight,
                                                                    signed=config.shared_signs == "signed")
    router_config = RouterConfig(
        backbone={"name": backbone.name, "n_layers": backbone.n_layers, "n_heads": backbone.n_heads,
                  "fingerprint": backbone.fingerprint},
        candidate_heads=candidates, embed_layer=layer, pooling=pooling, top_k=top_k, fusion_weight=scaled_fusion,
        qrhead_heads=qrhead, shared_fraction=shared_fraction, shared_heads=shared_heads)
    router = Router(router_config, model)
    return router, {
        "train_queries": len(train), "val_queries": len(val), "val_ndcg@10": round(held_out_ndcg(val.queries, router), 4),
        "val_ndcg@10_routed_heads_alone": round(val_routed, 4), "shared_fraction": round(shared_fraction, 4),
        "shared_heads_weighted": len(shared_heads),
        "qrhead_k_val_ndcg@10": {str(k): round(v, 4) for k, v in qrhead_table.items()},
        "mean_labelled_heads": round(labels.sum(1).mean().item(), 2)}


def _cross_validated_fusion(features: list[QueryFeatures], fit: Callable[[list[QueryFeatures], float], tuple[Router, dict]],
                            n_folds: int, seed: int) -> dict[float, float]:
    """Mean nDCG@10 of each of :data:`FUSION_WEIGHTS` over the held-out folds of ``features`` (queries with a
    relevant candidate), each fold's router fitted by ``fit(rest, weight)`` on the other folds."""
    totals, count = dict.fromkeys(FUSION_WEIGHTS, 0.0), 0
    for held_out, rest in tqdm(kfold(features, n_folds, seed), desc=f"fusion weight ({n_folds}-fold)", unit="fold"):
        held_out = Prepared.of(held_out).queries
        count += len(held_out)
        for weight in FUSION_WEIGHTS:
            totals[weight] += held_out_ndcg(held_out, fit(rest, weight)[0]) * len(held_out)
    return {w: total / max(count, 1) for w, total in totals.items()}
