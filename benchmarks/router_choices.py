"""Measure RouteHead's open choices by cross-validation over the SciFact train queries (never the test queries).

Each of ``--folds`` folds trains on the other folds' SciFact train queries plus the DL19 queries (with the same
80/20 train/validation split as ``routehead train-router``: validation picks the static k and stops the router's
training), and is scored on its own held-out queries, which nothing in that fold saw. The table gives each
method's mean nDCG@10 over all held-out queries (those with a relevant candidate) and its paired difference to the
static heads (QRHead) with the standard error of that difference. Reads the cached features that ``routehead
train-router`` computes (same arguments), so it runs in minutes once those exist.

    python benchmarks/router_choices.py --json choices.json
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from routehead_rag import RouteHeadReranker
from routehead_rag.heads import blend
from routehead_rag.training.features import QueryFeatures
from routehead_rag.training.pipeline import DataSpec, gather_features
from routehead_rag.training.search import ndcg_at_10
from routehead_rag.training.train import (Prepared, embeddings, fit_router, kfold, mean_ndcg, per_query_ndcg,
                                          pseudo_labels, rank_heads, routed_sets, split, static_heads)

SHARED = "../shared/data"
DEFAULT = dict(candidates_k=64, max_heads=8, fusion_weight=0.0, layer=10, pooling="mean", top_k=4,
               static_weight=0.25)  # as shipped
# One change at a time from the shipped settings.
VARIANTS = {
    "router (shipped: K=64 P=8 fusion 0, layer 10 mean, top-4, static 0.25)": {},
    "router, static weight 0 (routed heads alone)": dict(static_weight=0.0),
    "router, static weight 0.5": dict(static_weight=0.5),
    "router, fusion weight 0.5": dict(fusion_weight=0.5),
    "router, fusion weight 1": dict(fusion_weight=1.0),
    "router, layer 5": dict(layer=5),
    "router, layer 15": dict(layer=15),
    "router, layer 20": dict(layer=20),
    "router, last-token pooling": dict(pooling="last"),
    "router, top-8": dict(top_k=8),
    "router, K=32": dict(candidates_k=32),
    "router, P=4": dict(max_heads=4),
    "router, top-2": dict(top_k=2),
    "router, top-3": dict(top_k=3),
    "router, fusion 0.5, layer 15, static 0 (settings shipped before)": dict(fusion_weight=0.5, layer=15,
                                                                             static_weight=0.0),
}


def signed_weights(train: Prepared, val: Prepared, candidates: list[int], start: list[int], l2: float = 1e-3,
                   lr: float = 1e-2, epochs: int = 400, patience: int = 50) -> dict[int, float]:
    """A static linear combination of the ``candidates``' z-scores with weights free in sign, trained listwise
    (softmax cross-entropy against each query's normalised gains, L2 ``l2``) from ``start`` at equal weights;
    early stopping on the validation nDCG@10."""
    n_docs = max(len(q.gains) for q in train.queries)
    z = torch.zeros(len(train), len(candidates), n_docs)  # [n_queries, K, n_docs], padded
    target = torch.zeros(len(train), n_docs)
    padded = torch.ones(len(train), n_docs, dtype=torch.bool)
    for i, (q, zq) in enumerate(zip(train.queries, train.z)):
        z[i, :, :len(q.gains)], target[i, :len(q.gains)], padded[i, :len(q.gains)] = zq[candidates], q.gains, False
    target = target / target.sum(dim=1, keepdim=True)
    w = torch.tensor([1.0 / len(start) if h in start else 0.0 for h in candidates], requires_grad=True)
    optimizer = torch.optim.Adam([w], lr=lr)
    best, best_w, since = -1.0, None, 0
    for _ in range(epochs):
        value = mean_ndcg(val, [dict(zip(candidates, w.tolist()))], 0.0)
        best, best_w, since = (value, w.detach().clone(), 0) if value > best + 1e-6 else (best, best_w, since + 1)
        if since >= patience:
            break
        logits = torch.einsum("k,nkd->nd", w, z).masked_fill(padded, float("-inf"))
        loss = -(target * torch.log_softmax(logits, dim=1).masked_fill(padded, 0.0)).sum(1).mean() + l2 * w.square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return dict(zip(candidates, best_w.tolist()))


def fold_results(train_q: list[QueryFeatures], test: Prepared, seed: int, n_heads: int) -> dict[str, list[float]]:
    """Every method's per-query nDCG@10 on ``test``, trained on ``train_q`` alone."""
    fit_q, val_q = split(train_q, seed=seed)
    train, val = Prepared.of(fit_q), Prepared.of(val_q)
    out = {"bm25 (first-stage order)": [ndcg_at_10(fs[None], q.gains, q.ideal_dcg).item()
                                        for q, fs in zip(test.queries, test.fs)],
           "icr (all heads, raw sum)": [ndcg_at_10(q.head_scores.sum(0)[None], q.gains, q.ideal_dcg).item()
                                        for q in test.queries]}
    static, _ = static_heads(train, val)
    out["qrhead (static top-k, k on validation)"] = per_query_ndcg(test, [static], 0.0)
    out["static top-k + fusion 0.5"] = per_query_ndcg(test, [static], 0.5)
    ranked, labels = rank_heads(train), {}
    no_deeper = [h for h in ranked if h // n_heads <= max(static) // n_heads][:64]  # costs no more than qrhead
    out["signed static weights, top-64 heads up to qrhead's deepest layer"] = per_query_ndcg(
        test, [signed_weights(train, val, no_deeper, static)], 0.0)
    for name, change in VARIANTS.items():
        s = {**DEFAULT, **change}
        key = (s["candidates_k"], s["max_heads"], s["fusion_weight"])
        candidates = ranked[:s["candidates_k"]]
        if key not in labels:
            labels[key] = pseudo_labels(train, candidates, s["max_heads"], s["fusion_weight"])[0]
        model, _ = fit_router(train, val, labels[key], candidates, layer=s["layer"], pooling=s["pooling"],
                              top_k=s["top_k"], fusion_weight=s["fusion_weight"], seed=seed)
        routed = routed_sets(model, embeddings(test, s["layer"], s["pooling"]), candidates, s["top_k"])
        out[name] = per_query_ndcg(test, [blend(r, static, s["static_weight"]) for r in routed], s["fusion_weight"])
    oracle = ranked[:64]
    out["oracle: best single head of the top-64, per query"] = [
        max(ndcg_at_10(z[h][None], q.gains, q.ideal_dcg).item() for h in oracle) for q, z in zip(test.queries, test.z)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--max-queries", type=int, default=None, help="SciFact train queries (a seeded sample)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    reranker = RouteHeadReranker(mode="all", dtype=args.dtype, max_doc_words=150)
    scifact = gather_features([DataSpec(f"{SHARED}/beir/scifact", "train")], reranker, depth=20,
                              max_queries=args.max_queries)
    dl19 = gather_features([DataSpec(f"{SHARED}/trec-dl/dl19/bm25_top100_with_passages.rank_llm.json", "train",
                                     f"{SHARED}/trec-dl/dl19/qrels.dl19-passage.txt")], reranker, depth=20)
    results: dict[str, list[float]] = {}
    for fold, (held_out, rest) in enumerate(kfold(scifact, args.folds, args.seed), 1):
        for name, values in fold_results(rest + dl19, Prepared.of(held_out), args.seed, reranker.backbone.n_heads).items():
            results.setdefault(name, []).extend(values)
        print(f"fold {fold}/{args.folds} done")
    base = results["qrhead (static top-k, k on validation)"]
    n = len(base)
    print(f"{len(scifact)} SciFact train queries ({n} with a relevant candidate) in {args.folds} folds, + {len(dl19)} "
          "DL19 queries in every fold's training part")
    print(f"{'method':<70} {'ndcg@10':>8} {'vs qrhead':>10} {'± s.e.':>7}")
    table = {}
    for name, values in results.items():
        diff = [a - b for a, b in zip(values, base)]
        table[name] = {"ndcg@10": round(statistics.fmean(values), 4), "vs_qrhead": round(statistics.fmean(diff), 4),
                       "se": round(statistics.stdev(diff) / n ** 0.5, 4)}
        print(f"{name:<70} {table[name]['ndcg@10']:>8.4f} {table[name]['vs_qrhead']:>+10.4f} {table[name]['se']:>7.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"queries": n, "folds": args.folds, "methods": table}, f, indent=1)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
