"""Load on ``routehead serve``: throughput and latency at 1, 4 and 16 concurrent clients, then a burst beyond the queue.

The server runs in its own process on loopback with the default model; the requests are real: SciFact test queries
(the bench's seeded sample) with their BM25 top-20, documents cut to 150 words. ``sequential_rps`` is the same
requests on the in-process engine, one call after another. Every response's ranking is held to the in-process
engine's (``mismatches``); ``errors`` counts 5xx and connection failures, ``rejected`` the 429/503 answers of the
burst; ``rss_growth_pct`` is the server's resident memory at the end against after a warm-up pass of every request
at the highest concurrency (the server's largest batches; ``rss_mb_after_*`` follow it level by level). The server's request
timeout is set long (``--timeout``), so that the queue limit, not the timeout, bounds the wait: on a CPU a queue of 16
requests at depth 20 takes minutes, and a request answered 503 for waiting would count as an error here.

    python benchmarks/serve_load.py --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import httpx

from served import served

from routehead_rag import RouteHeadReranker
from routehead_rag.data.datasets import load_dataset, sample_queries
from routehead_rag.data.first_stage import first_stage_candidates
from routehead_rag.documents import cut_words


def requests_of(n: int, depth: int, words: int) -> list[dict]:
    dataset = sample_queries(load_dataset("beir/scifact/test"), 100)
    candidates = first_stage_candidates(dataset, depth).candidates
    qids = sorted(q for q in dataset.queries if candidates.get(q))[:n]
    return [{"query": dataset.queries[q],
             "documents": [{"title": dataset.corpus[d]["title"], "text": cut_words(dataset.corpus[d]["text"], words)}
                           for d in candidates[q]]} for q in qids]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def run_level(url: str, bodies: list[dict], expected: list[list[int]], clients: int) -> dict:
    """Every body once, ``clients`` at a time: requests per second, latency percentiles, errors, mismatches."""
    latencies, errors, mismatches, other = [], 0, 0, 0
    gate = asyncio.Semaphore(clients)

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal errors, mismatches, other
        async with gate:
            start = time.perf_counter()
            try:
                response = await client.post("/v2/rerank", json=bodies[i])
            except httpx.HTTPError:
                errors += 1
                return
            latencies.append(time.perf_counter() - start)
            if response.status_code >= 500:
                errors += 1
            elif response.status_code != 200:
                other += 1
            elif [r["index"] for r in response.json()["results"]] != expected[i]:
                mismatches += 1

    async with httpx.AsyncClient(base_url=url, timeout=3600) as client:
        start = time.perf_counter()
        await asyncio.gather(*[one(client, i) for i in range(len(bodies))])
        seconds = time.perf_counter() - start
    latencies.sort()
    return {"rps": round(len(bodies) / seconds, 4), "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
            "errors": errors, "mismatches": mismatches, "other_4xx": other}


async def burst(url: str, body: dict, n: int) -> dict:
    """``n`` requests at once: how many were refused (429/503), answered, or failed."""
    async with httpx.AsyncClient(base_url=url, timeout=3600) as client:
        responses = await asyncio.gather(*[client.post("/v2/rerank", json=body) for _ in range(n)],
                                         return_exceptions=True)
    codes = [r.status_code if isinstance(r, httpx.Response) else None for r in responses]
    return {"rejected": sum(c in (429, 503) for c in codes), "answered": codes.count(200),
            "errors": sum(c is None or c >= 500 and c != 503 for c in codes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=12, help="requests per concurrency level")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--words", type=int, default=150)
    parser.add_argument("--max-queue", type=int, default=16, help="the server's queue limit")
    parser.add_argument("--burst", type=int, default=48, help="requests sent at once after the levels")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="the server's request timeout: long enough that the queue limit, not the timeout, bounds "
                             "the wait (16 queued requests take minutes on a CPU)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    bodies = requests_of(args.requests, args.depth, args.words)
    engine = RouteHeadReranker()
    engine.rerank(bodies[0]["query"], bodies[0]["documents"])  # warm-up
    start = time.perf_counter()
    expected = [[r.index for r in engine.rerank(b["query"], b["documents"])] for b in bodies]
    sequential_rps = len(bodies) / (time.perf_counter() - start)
    print(f"in-process engine: {sequential_rps:.4f} requests/s over {len(bodies)} requests", flush=True)

    with served("--max-queue", str(args.max_queue), "--timeout", str(args.timeout), "--log-level", "warning") as (
            url, server):
        levels = [int(level) for level in args.levels.split(",")]
        # warm-up: every request once at the highest concurrency, so that the server has formed its largest batches
        # (and the allocator holds their memory) before the growth is measured from here
        warm_up = asyncio.run(run_level(url, bodies, expected, max(levels)))
        rss_start = rss_mb(server.pid)
        print(f"warm-up at {max(levels)} clients: {warm_up}; server RSS {rss_start:.0f} MB", flush=True)
        summary: dict = {"sequential_rps": round(sequential_rps, 4), "requests_per_level": len(bodies),
                         "depth": args.depth, "words": args.words, "cpus": os.cpu_count(),
                         "rss_mb_after_warm_up": round(rss_start, 1)}
        errors, mismatches = warm_up["errors"], warm_up["mismatches"]
        for clients in levels:
            level = asyncio.run(run_level(url, bodies, expected, clients))
            print(f"{clients:>3} clients: {level}", flush=True)
            summary.update({f"rps_{clients}": level["rps"], f"p50_ms_{clients}": level["p50_ms"],
                            f"p99_ms_{clients}": level["p99_ms"], f"rss_mb_after_{clients}": round(rss_mb(server.pid), 1)})
            errors += level["errors"]
            mismatches += level["mismatches"]
        flood = asyncio.run(burst(url, bodies[0], args.burst))
        print(f"burst of {args.burst}: {flood}", flush=True)
        rss_end = rss_mb(server.pid)
        summary.update(errors=errors + flood["errors"], mismatches=mismatches, rejected=flood["rejected"],
                       burst=args.burst, burst_answered=flood["answered"], rss_mb_at_end=round(rss_end, 1),
                       rss_growth_pct=round(100 * (rss_end - rss_start) / rss_start, 2))
        summary["rps_16_over_sequential"] = round(summary.get("rps_16", 0) / sequential_rps, 3)
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
