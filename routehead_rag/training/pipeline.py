"""The training steps behind ``routehead detect-heads``, ``search-labels`` and ``train-router``.

Every step starts from cached features (computed on first use, resumable), so the LLM runs once
per training query whatever is re-run afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from ..bench.datasets import load_dataset
from ..bench.runner import candidates_for
from ..reranker import RouteHeadReranker
from ..router import Router, RouterConfig
from .features import QueryFeatures, extract_features
from .train import Prepared, fit_router, held_out_ndcg, pseudo_labels, rank_heads, split, static_heads

FUSION_WEIGHTS = (0.0, 0.25, 0.5, 1.0)  # tried when the fusion weight is left to the validation split


@dataclass
class DataSpec:
    """One training source as the CLI names it: a dataset spec, its split and optional qrels file."""

    dataset: str
    split: str = "train"
    qrels: str | None = None


def gather_features(specs: list[DataSpec], reranker: RouteHeadReranker, depth: int,
                    max_queries: int | None = None) -> list[QueryFeatures]:
    """Features of every labelled query of every source (first stage: given candidates or BM25)."""
    features: list[QueryFeatures] = []
    for spec in specs:
        dataset = load_dataset(spec.dataset, split=spec.split, qrels_path=spec.qrels)
        candidates, _ = candidates_for(dataset, depth, None)
        features += extract_features(dataset, candidates, None, reranker, depth, max_queries=max_queries)
    if not features:
        raise ValueError("no labelled query with candidates was found in the training data; check --dataset/--split/--qrels.")
    return features


def detect_heads(features: list[QueryFeatures], seed: int = 0) -> tuple[list[int], dict[int, float]]:
    """QRHead-style static heads: top-k by single-head nDCG@10 on a train split, k by a validation split."""
    train, val = split(features, seed=seed)
    return static_heads(Prepared.of(train), Prepared.of(val))


def search_labels(features: list[QueryFeatures], top_k_candidates: int, max_heads: int,
                  fusion_weight: float) -> tuple[list[int], torch.Tensor, list[str]]:
    """Candidate heads (top-K by single-head quality over all queries), multi-hot labels ``[n, K]``, their qids."""
    data = Prepared.of(features)
    candidates = rank_heads(data)[:top_k_candidates]
    labels, _ = pseudo_labels(data, candidates, max_heads, fusion_weight)
    return candidates, labels, [q.qid for q in data.queries]


def train_router(features: list[QueryFeatures], reranker: RouteHeadReranker, *, candidates_k: int = 64,
                 max_heads: int = 8, top_k: int = 4, fusion_weight: float | None = 0.0, static_weight: float = 0.25,
                 layer: int | None = None, pooling: str = "mean", seed: int = 0,
                 warm_start: Router | None = None) -> tuple[Router, dict]:
    """Static heads, pseudo labels and the router, from one train/validation split; the router and a report.

    ``fusion_weight=None``: a router is trained for each of :data:`FUSION_WEIGHTS` and the one with the best
    validation nDCG@10 (as at inference) kept. ``static_weight``: the static heads' share of a routed score.
    ``warm_start``: a router for this backbone to start from (its query embedding layer and pooling are kept).
    """
    started = time.time()
    n_layers = reranker.backbone.n_layers
    if warm_start is not None:
        warm_start.check_backbone(reranker.backbone)
        if (layer not in (None, warm_start.config.embed_layer)) or pooling != warm_start.config.pooling:
            raise ValueError(f"a warm start keeps the starting router's query embedding (layer "
                             f"{warm_start.config.embed_layer}, {warm_start.config.pooling} pooling); "
                             "drop --layer/--pooling or train from scratch.")
        layer = warm_start.config.embed_layer
    layer = n_layers // 3 if layer is None else layer  # cross-validated on SciFact train, docs/method.md
    if not 0 <= layer <= n_layers:
        raise ValueError(f"--layer must be within 0..{n_layers} (hidden states of {reranker.backbone.name}), not {layer}.")
    if not 0 <= static_weight < 1:
        raise ValueError(f"--static-weight must be in [0, 1) (the routed heads need a share), not {static_weight}.")
    train_q, val_q = split(features, seed=seed)
    train, val = Prepared.of(train_q), Prepared.of(val_q)
    static, static_table = static_heads(train, val)
    candidates = rank_heads(train)[:candidates_k]
    backbone = reranker.backbone
    config = RouterConfig(
        backbone={"name": backbone.name, "n_layers": backbone.n_layers, "n_heads": backbone.n_heads,
                  "fingerprint": backbone.fingerprint},
        candidate_heads=candidates, embed_layer=layer, pooling=pooling, top_k=top_k, fusion_weight=0.0,
        static_heads=static, static_weight=static_weight)
    fits = {}  # fusion weight -> (router, labels, validation nDCG@10 of the routed heads alone, as at inference)
    for weight in FUSION_WEIGHTS if fusion_weight is None else (fusion_weight,):
        labels, _ = pseudo_labels(train, candidates, max_heads, weight)
        model, val_routed = fit_router(train, val, labels, candidates, layer=layer, pooling=pooling, top_k=top_k,
                                       fusion_weight=weight, seed=seed, init=warm_start)
        router = Router(replace(config, fusion_weight=weight), model)
        fits[weight] = (router, labels, val_routed, held_out_ndcg(val.queries, router))
    chosen = max(fits, key=lambda w: (fits[w][3], -w))  # ties: trust the heads
    router, labels, val_routed, val_ndcg = fits[chosen]
    router.config.training = {
        "train_queries": len(train), "val_queries": len(val), "val_ndcg@10": round(val_ndcg, 4),
        "val_ndcg@10_routed_heads_alone": round(val_routed, 4),
        "static_k_val_ndcg@10": {str(k): round(v, 4) for k, v in static_table.items()},
        "fusion_weight_val_ndcg@10": {str(w): round(f[3], 4) for w, f in fits.items()},
        "mean_labelled_heads": round(labels.sum(1).mean().item(), 2), "seconds": round(time.time() - started, 1),
        "depth": None, "max_doc_words": reranker.prompts.max_doc_words, "dtype": str(backbone.model.dtype),
        "warm_start": warm_start is not None,
    }
    return router, router.config.training
