"""Measure RouteHead's open choices on the training queries' validation split (never on test queries).

Compares, by validation nDCG@10: BM25 order, ICR (all heads), static top-k heads (QRHead), with and
without fusion with the first-stage order, and routers for several embedding layers, poolings,
routed set sizes, candidate pools K and label set sizes P. Reads the cached features that
``routehead train-router`` computes (same arguments), so it runs in minutes once those exist.

    python benchmarks/router_choices.py --dtype bfloat16 --max-queries 400
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics

import torch

from routehead_rag import RouteHeadReranker
from routehead_rag.scoring import rank_prior, standardize
from routehead_rag.training.pipeline import DataSpec, gather_features
from routehead_rag.training.search import ndcg_at_10
from routehead_rag.training.train import Prepared, fit_router, mean_ndcg, pseudo_labels, rank_heads, split

SHARED = "../shared/data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--max-queries", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    reranker = RouteHeadReranker(mode="all", dtype=args.dtype, max_doc_words=150)
    specs = [DataSpec(f"{SHARED}/beir/scifact", "train"),
             DataSpec(f"{SHARED}/trec-dl/dl19/bm25_top100_with_passages.rank_llm.json", "train",
                      f"{SHARED}/trec-dl/dl19/qrels.dl19-passage.txt")]
    features = gather_features(specs, reranker, depth=20, max_queries=args.max_queries)
    train_q, val_q = split(features)
    train, val = Prepared.of(train_q), Prepared.of(val_q)
    out: dict[str, float] = {"train_queries": len(train), "val_queries": len(val)}
    print(f"{len(train)} train / {len(val)} validation queries with a relevant candidate")

    def report(name: str, value: float) -> None:
        out[name] = round(value, 4)
        print(f"{name:<55} {value:.4f}")

    report("bm25", statistics.fmean(ndcg_at_10(rank_prior(len(q.gains))[None], q.gains, q.ideal_dcg).item() for q in val.queries))
    report("icr (raw sum, all heads)", statistics.fmean(ndcg_at_10(q.head_scores.sum(0)[None], q.gains, q.ideal_dcg).item() for q in val.queries))
    report("icr (z mean, all heads)", mean_ndcg(val, [list(range(val.z[0].shape[0]))], 0.0))
    ranked = rank_heads(train)
    for k, w in itertools.product((4, 8, 16, 32), (0.0, 0.5, 1.0, 2.0)):
        report(f"static top-{k} fusion {w}", mean_ndcg(val, [ranked[:k]], w))
    bm25_fused = statistics.fmean(ndcg_at_10((z[ranked[:8]].mean(0) + standardize(q.first_stage))[None], q.gains, q.ideal_dcg).item()
                                  for q, z in zip(val.queries, val.z))
    report("static top-8 fused with the first-stage *scores* (weight 1)", bm25_fused)
    depth = max(len(q.gains) for q in train.queries)
    full = [z for z in train.z if z.shape[1] == depth]
    bias = torch.stack(full).mean(0)  # [n_heads, depth]: mean z-score of each head at each candidate position
    for k, w in itertools.product((8, 16), (0.0, 1.0, 2.0)):
        value = statistics.fmean(
            ndcg_at_10(((z - bias[:, : z.shape[1]])[ranked[:k]].mean(0) + w * fs)[None], q.gains, q.ideal_dcg).item()
            for q, z, fs in zip(val.queries, val.z, val.fs))
        report(f"static top-{k} minus position bias, fusion {w}", value)
    oracle = statistics.fmean(max(ndcg_at_10(z[[h]].mean(0)[None], q.gains, q.ideal_dcg).item() for h in ranked[:64])
                              for q, z in zip(val.queries, val.z))
    report("oracle best single head of top-64", oracle)

    for cand_k, max_heads, w in itertools.product((32, 64), (4, 8), (0.5, 1.0)):
        candidates = ranked[:cand_k]
        labels, best = pseudo_labels(train, candidates, max_heads, w)
        print(f"  labels K={cand_k} P={max_heads} w={w}: {labels.sum(1).mean():.2f} heads/query, train oracle {statistics.fmean(best):.4f}")
        for layer, pooling, top_k in itertools.product((5, 10, 15, 20, 25), ("mean", "last"), (4, 8, 16)):
            if (layer, pooling) != (15, "mean") and (cand_k, max_heads, top_k) != (64, 8, 8):
                continue  # vary the embedding only at one setting of the rest
            _, value = fit_router(train, val, labels, candidates, layer=layer, pooling=pooling, top_k=top_k, fusion_weight=w)
            report(f"router K={cand_k} P={max_heads} w={w} layer={layer} {pooling} top-{top_k}", value)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
