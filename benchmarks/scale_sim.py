"""Feature computation on 1 and 2 local Ray workers, and what it projects for a GPU cluster.

Measures queries per second of ``extract_features`` on Ray workers (each its own engine, one CPU and one torch thread
each) over the same SciFact test queries (BM25 top-20, 150-word documents, the default model), each worker count into
a fresh cache, after the workers' engines have loaded. Then projects the hours to compute the features of
``--train-queries`` training queries on ``--gpus`` GPUs, stating its assumptions: each GPU computes a query in
``--gpu-seconds-per-query`` (default: an estimate for Llama-3.1-8B in bf16 at depth 20, to be replaced by a timing
from ``benchmarks/attention_speed.py --shape llama-3.1-8b --device cuda``), and workers scale with the parallel
efficiency measured here between 1 and 2 workers (the driver only writes the cache; the workers share nothing).

    python benchmarks/scale_sim.py --queries 8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.data.datasets import load_dataset, sample_queries
from routehead_rag.data.first_stage import first_stage_candidates
from routehead_rag.features import extract_features
from routehead_rag.workers import RayWorkers, keep_local_ray_on_loopback

SCIFACT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "beir" / "scifact"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=8, help="SciFact test queries per worker count")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--train-queries", type=int, default=50_000,
                        help="training queries to project for (e.g. a sample of MS MARCO train)")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--gpu-seconds-per-query", type=float, default=0.25,
                        help="one GPU's seconds per query (assumed; measure with attention_speed.py on the GPU)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not SCIFACT.is_dir():
        raise SystemExit(f"{SCIFACT} not found: this benchmark reads SciFact from ../shared/data.")

    keep_local_ray_on_loopback()
    import ray

    ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
    dataset = sample_queries(load_dataset(str(SCIFACT), split="test"), args.queries)
    candidates = first_stage_candidates(dataset, 20).candidates
    result: dict = {"queries": args.queries, "depth": 20, "cpus": os.cpu_count(), "model": "SmolLM2-135M-Instruct"}
    for n in args.workers:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["XDG_CACHE_HOME"] = cache  # a fresh feature cache: every query computed
            reranker = RouteHeadReranker(recipe=Recipe(mode="all"))
            workers = RayWorkers(n, {})
            workers.check(reranker.cache_key())  # the workers' engines are loaded
            start = time.perf_counter()
            extract_features(dataset, candidates, reranker, 20, workers=workers)
            seconds = time.perf_counter() - start
            workers.close()
        result[f"queries_per_s_{n}"] = round(args.queries / seconds, 4)
        print(f"{n} worker(s): {args.queries / seconds:.4f} queries/s ({seconds:.1f} s)", flush=True)
    if {1, 2} <= set(args.workers):
        efficiency = result["queries_per_s_2"] / (2 * result["queries_per_s_1"])
        per_gpu = 1 / args.gpu_seconds_per_query
        hours = args.train_queries / (per_gpu * args.gpus * efficiency) / 3600
        result.update(parallel_efficiency=round(efficiency, 3), projection={
            "train_queries": args.train_queries, "gpus": args.gpus, "gpu_seconds_per_query": args.gpu_seconds_per_query,
            "hours": round(hours, 2), "gpu_hours": round(hours * args.gpus, 2),
            "assumptions": "each GPU a worker at gpu_seconds_per_query (assumed, not measured here); workers scale with "
                           "the parallel efficiency measured between 1 and 2 local workers; the driver's cache writes "
                           "and Ray's scheduling cost what they cost here"})
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
