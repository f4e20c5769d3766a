"""``routehead bench``: re-rank a dataset's first-stage candidates with every method, side by side.

All re-ranking methods read one cached all-heads forward per query (:mod:`routehead_rag.features`), so
adding a method costs no LLM time and an interrupted run resumes from its cache; latency is then
measured per method on real ``rerank`` calls, as a user would see them, on the first
``latency_queries`` queries, the methods taking turns.
"""

from __future__ import annotations

import math
import resource
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm.auto import tqdm

from ..data.datasets import Dataset
from ..data.first_stage import first_stage_candidates
from ..data.metrics import per_query
from ..features import Workers, extract_features, replay
from ..prompt import MAX_DOC_WORDS, Layout
from ..recipe import Recipe
from ..reranker import RouteHeadReranker
from ..router import DEFAULT_ROUTER
from .methods import METHODS

@dataclass
class MethodResult:
    run: dict[str, list[str]] = field(default_factory=dict)  # qid -> docids, best first
    scores: dict[str, list[float]] = field(default_factory=dict)  # qid -> the method's scores, in run order
    latencies_s: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    heads_per_query: list[int] = field(default_factory=list)
    deepest_layer: list[int] = field(default_factory=list)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def method_rerankers(methods: list[str], model: str | None, router: str | None, dtype: str,
                     max_doc_words: int | None, heads: list[int] | None = None,
                     layout: Layout = "sequential", ape: tuple[float, float] | None = None,
                     ) -> dict[str, RouteHeadReranker]:
    """One reranker per re-ranking method of :data:`METHODS` (``bm25`` has none), sharing one backbone."""
    made = {}
    for name in methods:
        fields, which = METHODS[name]
        if fields is None:
            continue
        recipe = Recipe(**fields, layout=layout, ape=ape)
        if recipe.mode == "static" and heads is not None:
            recipe = replace(recipe, heads=tuple(heads))
        made[name] = RouteHeadReranker(model, recipe, dtype=dtype, max_doc_words=max_doc_words,
                                       router={None: None, "given": router, "default": DEFAULT_ROUTER}[which])
    return made


def run_bench(dataset: Dataset, methods: list[str], depth: int, *, model: str | None = None, router: str | None = None,
              run_path: str | None = None, dtype: str = "auto", max_doc_words: int | None = MAX_DOC_WORDS,
              latency_queries: int = 10, baseline: str | None = None, heads: list[int] | None = None,
              workers: Workers | None = None) -> tuple[dict, dict[str, tuple[dict[str, list[str]], dict[str, list[float]]]]]:
    """Evaluate ``methods`` on ``dataset``: the JSON-ready summary (see the CLI's ``--json``) and each method's run
    with its scores (``{qid: docids best first}``, ``{qid: scores in that order}``).

    Every other method's nDCG@10 is also compared with ``baseline``'s (default: the first method) query by query.
    ``heads``: the static methods' heads (default: the router's QRHead-style heads, or the model's preset).
    ``workers``: where the features not cached are computed (default: here).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}.")
    baseline = baseline or methods[0]
    if baseline not in methods:
        raise ValueError(f"--baseline {baseline} is not one of the methods run ({', '.join(methods)}); add it to --methods.")
    first_stage = first_stage_candidates(dataset, depth, run_path)
    candidates = first_stage.candidates
    qids = sorted(q for q in dataset.queries if candidates.get(q))
    if not qids:
        raise ValueError(f"no query of {dataset.name} has first-stage candidates; check --run / --dataset.")
    rerankers = method_rerankers(methods, model, router, dtype, max_doc_words, heads)
    results = {m: MethodResult() for m in methods}
    if "bm25" in methods:
        results["bm25"].run = {q: candidates[q] for q in qids}
        results["bm25"].scores = ({q: first_stage.scores[q] for q in qids} if first_stage.scores is not None
                                  else {q: [float(len(candidates[q]) - r) for r in range(len(candidates[q]))]
                                        for q in qids})  # a given list has only its order
        seconds = first_stage.seconds_per_query
        results["bm25"].latencies_s = [seconds] if seconds is not None else []
        results["bm25"].peak_rss_mb = _rss_mb()

    if rerankers:
        features = extract_features(dataset, candidates, next(iter(rerankers.values())), depth, workers=workers)
        progress = tqdm(features, desc=f"re-ranking {dataset.name}", unit="query")
        for entry in progress:
            qid, query, doc_ids = entry.qid, dataset.queries[entry.qid], candidates[entry.qid]
            for name, reranker in rerankers.items():
                ranking, heads = replay(reranker, entry, query, [dataset.corpus[d] for d in doc_ids])
                results[name].run[qid] = [doc_ids[i] for i in ranking.order]
                results[name].scores[qid] = [float(ranking.scores[i]) for i in ranking.order]
                if heads is not None:
                    results[name].heads_per_query.append(len(heads))
                    results[name].deepest_layer.append(max(heads) // reranker.backbone.n_heads)
            progress.set_postfix({m: f"{_mean_ndcg(results[m].run, dataset):.3f}" for m in methods})
        calls = [(dataset.queries[q], [dataset.corpus[d] for d in candidates[q]]) for q in qids[:latency_queries]]
        _time_reranks(rerankers, calls, results)
    model_name = next(iter(rerankers.values())).backbone.name if rerankers else (model or "none")
    summary = _summary(dataset, results, depth, model_name, latency_queries, baseline)
    summary["self_hits_dropped"] = first_stage.self_hits
    return summary, {m: (r.run, r.scores) for m, r in results.items()}


def _time_reranks(rerankers: dict[str, RouteHeadReranker], calls: list[tuple[str, list[dict[str, str]]]],
                  results: dict[str, MethodResult]) -> None:
    """Latency as a user sees it: real ``rerank`` calls, the methods interleaved query by query and their order
    rotated, so that a slow spell of the machine, or the first call's warm-up, falls on each method alike."""
    names = list(rerankers)
    for i, (query, docs) in enumerate(calls):
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = time.perf_counter()
            rerankers[name].rerank(query, docs)
            results[name].latencies_s.append(time.perf_counter() - start)
    peak_mb = _rss_mb()  # the process's peak: one figure for all methods, which share one backbone
    for name in names:
        results[name].peak_rss_mb = peak_mb


def _mean_ndcg(run: dict[str, list[str]], dataset: Dataset) -> float:
    values = per_query(run, {q: dataset.qrels[q] for q in run}, k=10)
    return statistics.fmean(v["nDCG@10"] for v in values.values()) if values else 0.0


def _summary(dataset: Dataset, results: dict[str, MethodResult], depth: int, model: str, latency_queries: int,
             baseline: str) -> dict:
    qrels = {q: dataset.qrels[q] for q in next(iter(results.values())).run}
    at10_by_method = {name: per_query(r.run, qrels, k=10) for name, r in results.items()}
    ndcg = {name: {q: v["nDCG@10"] for q, v in at10.items()} for name, at10 in at10_by_method.items()}
    methods = {}
    for name, result in results.items():
        at10 = at10_by_method[name]
        at_depth = at10 if depth == 10 else per_query(result.run, qrels, k=depth)
        lat = sorted(result.latencies_s)
        row = {
            "ndcg@10": round(statistics.fmean(v["nDCG@10"] for v in at10.values()), 4),
            "recall@10": round(statistics.fmean(v["R@10"] for v in at10.values()), 4),
            f"recall@{depth}": round(statistics.fmean(v[f"R@{depth}"] for v in at_depth.values()), 4),
            "mrr@10": round(statistics.fmean(v["RR@10"] for v in at10.values()), 4),
            "latency_ms_median": round(1000 * statistics.median(lat), 1) if lat else None,
            "latency_ms_p90": round(1000 * lat[min(len(lat) - 1, math.ceil(0.9 * len(lat)) - 1)], 1) if lat else None,
            "queries_per_s": round(len(lat) / sum(lat), 3) if lat and sum(lat) > 0 else None,
            "peak_rss_mb": round(result.peak_rss_mb, 1),
        }
        if name != baseline:
            row["ndcg@10_vs_baseline"] = paired_difference(ndcg[name], ndcg[baseline])
        if result.heads_per_query:
            row["heads_per_query"] = {"mean": round(statistics.fmean(result.heads_per_query), 2),
                                      "min": min(result.heads_per_query), "max": max(result.heads_per_query)}
            row["deepest_layer_mean"] = round(statistics.fmean(result.deepest_layer), 2)
        methods[name] = row
    return {"dataset": dataset.name, "n_queries": len(qrels), "depth": depth, "model": model,
            "latency_queries": latency_queries, "baseline": baseline, "methods": methods,
            "per_query_ndcg@10": {name: {q: round(v, 4) for q, v in values.items()} for name, values in ndcg.items()}}


def paired_difference(values: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """Mean per-query difference ``values - baseline`` over their common queries and its standard error
    (sample standard deviation / sqrt(n)): ``{"delta": .., "se": ..}``. A difference within about two
    standard errors of 0 may be noise."""
    diffs = [values[q] - baseline[q] for q in values if q in baseline]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    return {"delta": round(statistics.fmean(diffs), 4), "se": round(se, 4)}


def format_table(summary: dict) -> str:
    """The terminal table, one row per method; ``vs <baseline>``: the mean per-query nDCG@10 difference (± its
    standard error) from the baseline method."""
    cols = ["ndcg@10", "recall@10", f"recall@{summary['depth']}", "mrr@10", "latency_ms_median", "latency_ms_p90", "peak_rss_mb"]
    paired = f"vs {summary['baseline']}"
    width = max(20, len(paired) + 2)
    lines = [f"{summary['dataset']}: {summary['n_queries']} queries, depth {summary['depth']}, model {summary['model']}",
             f"{'method':<18}{cols[0]:>10}{paired:>{width}}" + "".join(f"{c:>18}" for c in cols[1:])]
    for name, row in summary["methods"].items():
        diff = row.get("ndcg@10_vs_baseline")
        diff_text = f"{diff['delta']:+.4f} ± {diff['se']:.4f}" if diff else "-"
        lines.append(f"{name:<18}{_cell(cols[0], row[cols[0]]):>10}{diff_text:>{width}}"
                     + "".join(f"{_cell(c, row.get(c)):>18}" for c in cols[1:]))
    return "\n".join(lines)


def _cell(column: str, value: float | None) -> str:
    """Metrics to 4 decimals (0.3700, not 0.37, so columns line up), milliseconds and megabytes to 1; '-' if none."""
    if value is None:
        return "-"
    return f"{value:.1f}" if column.startswith(("latency", "peak")) else f"{value:.4f}"


def write_runs(runs: dict[str, tuple[dict[str, list[str]], dict[str, list[float]]]], folder: str) -> None:
    """One TREC run file per method, ``qid Q0 docid rank score method``, with the method's own scores (for bm25 over
    a given candidate list, which carries no scores: ``n - rank + 1``), so that runs can be fused and evaluated by
    standard tools."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name, (run, scores) in runs.items():
        with open(out / f"{name}.trec", "w") as f:
            for qid, docs in run.items():
                for rank, (docid, score) in enumerate(zip(docs, scores[qid]), 1):
                    f.write(f"{qid} Q0 {docid} {rank} {score!r} {name}\n")


def plot(summary: dict, path: str) -> None:
    """nDCG@10 and median latency per method, side by side (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["methods"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar(names, [summary["methods"][n]["ndcg@10"] for n in names])
    left.set_title(f"nDCG@10 — {summary['dataset']}")
    right.bar(names, [summary["methods"][n]["latency_ms_median"] or 0 for n in names])
    right.set_title("median latency per query (ms)")
    fig.tight_layout()
    fig.savefig(path)
