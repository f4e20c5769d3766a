"""Measure RouteHead's open choices by cross-validation over the SciFact train queries (never the test queries).

Each of ``--folds`` folds trains on the other folds' SciFact train queries plus the DL19 queries (with the same
80/20 train/validation split as ``routehead train-router``: validation picks the QRHead k and stops the router's
training), and is scored on its own held-out queries, which nothing in that fold saw. The table gives each
method's mean nDCG@10 over all held-out queries (those with a relevant candidate) and its paired difference to the
QRHead-style heads with the standard error of that difference. Reads the cached features that ``routehead
train-router`` computes (same arguments), so it runs in minutes once those exist.

    python benchmarks/router_choices.py --json choices.json
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.bench.runner import paired_difference
from routehead_rag.features import QueryFeatures
from routehead_rag.heads import blend
from routehead_rag.training.config import TrainConfig
from routehead_rag.training.pipeline import DataSpec, gather_features, train_router
from routehead_rag.training.search import ndcg_at_10
from routehead_rag.training.train import (
    Prepared,
    fit_shared_heads,
    kfold,
    per_query_ndcg,
    per_query_router_ndcg,
    qrhead_heads,
    rank_heads,
    split,
)

SHARED = "../shared/data"
# One change at a time from the shipped settings (TrainConfig's defaults); each row trains as train-router does.
VARIANTS = {
    "router (shipped: K=64 P=8 fusion 0, layer 10 mean, top-4, learned shared part)": {},
    "router, fusion weight 0.5": dict(fusion_weight=0.5),
    "router, layer 5": dict(layer=5),
    "router, layer 15": dict(layer=15),
    "router, last-token pooling": dict(pooling="last"),
    "router, top-2": dict(top_k=2),
    "router, top-8": dict(top_k=8),
    "router, K=32": dict(candidates=32),
    "router, P=4": dict(max_heads=4),
    "router, routed heads no deeper than the shared part": dict(max_layer=17),  # the shipped shared part's deepest
}
SHIPPED = next(iter(VARIANTS))


def fold_results(train_q: list[QueryFeatures], test: Prepared, seed: int, reranker: RouteHeadReranker) -> dict[str, list[float]]:
    """Every method's per-query nDCG@10 on ``test``, trained on ``train_q`` alone."""
    fit_q, val_q = split(train_q, seed=seed)
    train, val = Prepared.of(fit_q), Prepared.of(val_q)
    out = {"bm25 (first-stage order)": [ndcg_at_10(fs[None], q.gains, q.ideal_dcg).item()
                                        for q, fs in zip(test.queries, test.fs)],
           "icr (all heads, raw sum)": [ndcg_at_10(q.head_scores.sum(0)[None], q.gains, q.ideal_dcg).item()
                                        for q in test.queries]}
    static, _ = qrhead_heads(train, val)
    out["qrhead (static top-k, k on validation)"] = per_query_ndcg(test, [static], 0.0)
    out["static top-k + fusion 0.5"] = per_query_ndcg(test, [static], 0.5)
    for name, change in VARIANTS.items():
        router, _ = train_router(train_q, reranker, TrainConfig(**change), seed=seed)
        out[name] = per_query_router_ndcg(test.queries, router)
        if name == SHIPPED:
            routed = [router.heads_for(q.embedding) for q in test.queries]
            out["routed heads alone (no shared part)"] = per_query_ndcg(test, routed, 0.0)
            out["routed heads + QRHead heads at 1/4 (shipped before)"] = per_query_ndcg(
                test, [blend(r, {h: 1.0 for h in static}, 0.25) for r in routed], 0.0)
            out["its shared part alone (weights fitted with the routed heads)"] = per_query_ndcg(
                test, [router.config.shared_heads], 0.0)
            qrhead_as_routed = tuple([static] * len(data) for data in (train, val))  # no routing, same span
            alone, share, _ = fit_shared_heads(train, val, list(router.config.shared_heads),
                                                 {h: 1.0 / len(static) for h in static}, qrhead_as_routed, 0.0)
            out["shared part fitted without routing (signed weights alone)"] = per_query_ndcg(
                test, [blend(static, alone, share)], 0.0)
    ranked = rank_heads(train)[:64]
    out["oracle: best single head of the top-64, per query"] = [
        max(ndcg_at_10(z[h][None], q.gains, q.ideal_dcg).item() for h in ranked) for q, z in zip(test.queries, test.z)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--max-queries", type=int, default=None, help="SciFact train queries (a seeded sample)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    reranker = RouteHeadReranker(recipe=Recipe(mode="all"), dtype=args.dtype)
    scifact = gather_features([DataSpec(f"{SHARED}/beir/scifact", "train")], reranker, depth=20,
                              max_queries=args.max_queries)
    dl19 = gather_features([DataSpec(f"{SHARED}/trec-dl/dl19/bm25_top100_with_passages.rank_llm.json", "train",
                                     f"{SHARED}/trec-dl/dl19/qrels.dl19-passage.txt")], reranker, depth=20)
    results: dict[str, list[float]] = {}
    for fold, (held_out, rest) in enumerate(kfold(scifact, args.folds, args.seed), 1):
        for name, values in fold_results(rest + dl19, Prepared.of(held_out), args.seed, reranker).items():
            results.setdefault(name, []).extend(values)
        print(f"fold {fold}/{args.folds} done")
    base = results["qrhead (static top-k, k on validation)"]
    n = len(base)
    print(f"{len(scifact)} SciFact train queries ({n} with a relevant candidate) in {args.folds} folds, + {len(dl19)} "
          "DL19 queries in every fold's training part")
    print(f"{'method':<70} {'ndcg@10':>8} {'vs qrhead':>10} {'± s.e.':>7}")
    table = {}
    for name, values in results.items():
        diff = paired_difference(dict(enumerate(values)), dict(enumerate(base)))  # queries in the same order
        table[name] = {"ndcg@10": round(statistics.fmean(values), 4), "vs_qrhead": diff["delta"], "se": diff["se"]}
        print(f"{name:<70} {table[name]['ndcg@10']:>8.4f} {table[name]['vs_qrhead']:>+10.4f} {table[name]['se']:>7.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"queries": n, "folds": args.folds, "methods": table}, f, indent=1)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
