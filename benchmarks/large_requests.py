"""Large requests against ``routehead serve``: are they refused in time, and do they delay the small ones?

The server runs in its own process on loopback with the default model and the default limits. For each large
request: the p50 of ``--small`` small requests one after another (5 documents of about 25 words: the service time of
a small request), then the same small requests sent one after another while that large request is in flight: its
status and time to answer, and the small requests' times beside it. The large requests: a 2,000-word query (refused:
over ``--max-query-tokens``), 500 documents of 10 words (refused: over ``--max-request-tokens``), and the largest
request the budget admits (served, on the second engine thread of ``--large-request-tokens``), sent 0.2 s before the
first small request (``..._sent_together``) and 3 s before (``..._already_running``: inside its forward, which
nothing interrupts). ``delay_over_alone`` is (p50 beside it - p50 alone) / p50 alone: a small request waits for less
than its own service time where it is under 1. On a shared CPU the times move with the machine's load, which is why
each p50 alone is measured just before its large request.

    python benchmarks/large_requests.py --json large.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx

from served import served

from routehead_rag import RouteHeadReranker
from routehead_rag.serve import ServeSettings

WORDS = ("scurvy vitamin lemons sailors voyage disease citrus navy ship orange acid bones rickets sunlight fruit "
         "cabbage limes captain crew island harbour winter bread water salt").split()
SMALL_QUERY = "What causes scurvy in sailors?"


def text(words: int, seed: int) -> str:
    return " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] for i in range(words))


def large_requests(budget_docs: int) -> dict[str, tuple[dict, float]]:
    """Each large request and how long before the small ones it is sent."""
    largest = {"query": SMALL_QUERY, "documents": [text(150, k) for k in range(budget_docs)]}
    return {"query_2000_words": ({"query": text(2000, 1), "documents": [text(25, k) for k in range(5)]}, 0.2),
            "documents_500_of_10_words": ({"query": SMALL_QUERY, "documents": [text(10, k) for k in range(500)]}, 0.2),
            "largest_admitted_sent_together": (largest, 0.2), "largest_admitted_already_running": (largest, 3.0)}


def largest_admitted() -> int:
    """How many 150-word documents the server's default token budget admits (laid out by the same engine)."""
    engine, budget = RouteHeadReranker(), ServeSettings().max_request_tokens
    n = 1
    while engine.prepare(SMALL_QUERY, [text(150, k) for k in range(n + 1)]).tokens <= budget:
        n += 1
    return n


async def small_requests(client: httpx.AsyncClient, n: int) -> list[float]:
    times = []
    for k in range(n):
        start = time.perf_counter()
        response = await client.post("/v2/rerank", json={"query": SMALL_QUERY,
                                                         "documents": [text(25, k + j) for j in range(5)]})
        response.raise_for_status()
        times.append(time.perf_counter() - start)
    return times


async def beside(url: str, large: dict, head_start_s: float, n: int) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=3600) as client:
        async def send_large() -> tuple[int, float, str]:
            start = time.perf_counter()
            response = await client.post("/v2/rerank", json=large)
            said = response.json().get("error", "") if response.status_code != 200 else ""
            return response.status_code, time.perf_counter() - start, said

        large_task = asyncio.create_task(send_large())
        await asyncio.sleep(head_start_s)
        smalls = await small_requests(client, n)
        status, seconds, said = await large_task
    return {"status": status, "seconds": round(seconds, 2), "error": said[:160], "documents": len(large["documents"]),
            "small_p50_s": round(statistics.median(smalls), 2), "small_s": [round(t, 2) for t in smalls]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=5, help="small requests per measurement")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    with served("--timeout", "3600", "--log-level", "warning") as (url, _):
        async def alone() -> float:
            async with httpx.AsyncClient(base_url=url, timeout=3600) as client:
                return statistics.median(await small_requests(client, args.small))

        asyncio.run(alone())  # warm-up
        summary: dict = {"small_requests": args.small}
        for name, (body, head_start_s) in large_requests(largest_admitted()).items():
            p50_alone = asyncio.run(alone())
            result = {"small_p50_alone_s": round(p50_alone, 2), **asyncio.run(beside(url, body, head_start_s,
                                                                                     args.small))}
            result["delay_over_alone"] = round((result["small_p50_s"] - p50_alone) / p50_alone, 2)
            summary[name] = result
            print(f"{name}: {result}", flush=True)
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
