"""The training steps behind ``routehead detect-heads``, ``search-labels`` and ``train-router``.

Every step starts from cached features (computed on first use, resumable), so the LLM runs once
per training query whatever is re-run afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..bench.datasets import load_dataset
from ..bench.runner import candidates_for
from ..reranker import RouteHeadReranker
from ..router import Router, RouterConfig
from .features import QueryFeatures, extract_features
from .train import Prepared, fit_router, pseudo_labels, rank_heads, split, static_heads


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
                 max_heads: int = 8, top_k: int = 4, fusion_weight: float = 0.0, layer: int | None = None,
                 pooling: str = "mean", seed: int = 0, warm_start: Router | None = None) -> tuple[Router, dict]:
    """Static heads, pseudo labels and the router, from one train/validation split; the router and a report.

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
    train_q, val_q = split(features, seed=seed)
    train, val = Prepared.of(train_q), Prepared.of(val_q)
    static, static_table = static_heads(train, val)
    candidates = rank_heads(train)[:candidates_k]
    labels, _ = pseudo_labels(train, candidates, max_heads, fusion_weight)
    model, val_ndcg = fit_router(train, val, labels, candidates, layer=layer, pooling=pooling, top_k=top_k,
                                 fusion_weight=fusion_weight, seed=seed, init=warm_start)
    backbone = reranker.backbone
    report = {
        "train_queries": len(train), "val_queries": len(val), "val_ndcg@10_routed": round(val_ndcg, 4),
        "static_k_val_ndcg@10": {str(k): round(v, 4) for k, v in static_table.items()},
        "mean_labelled_heads": round(labels.sum(1).mean().item(), 2), "seconds": round(time.time() - started, 1),
        "depth": None, "max_doc_words": reranker.prompts.max_doc_words, "dtype": str(backbone.model.dtype),
        "warm_start": warm_start is not None,
    }
    config = RouterConfig(
        backbone={"name": backbone.name, "n_layers": backbone.n_layers, "n_heads": backbone.n_heads,
                  "fingerprint": backbone.fingerprint},
        candidate_heads=candidates, embed_layer=layer, pooling=pooling, top_k=top_k, fusion_weight=fusion_weight,
        static_heads=static, training=report)
    return Router(config, model), report
