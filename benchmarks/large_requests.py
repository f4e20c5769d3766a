"""Large requests against ``routehead serve``: are they refused in time, and do they delay the small ones?

The server runs in its own process on loopback with the default model and the default limits. First the p50 of
``--small`` small requests one after another (5 documents of about 25 words: the service time of a small request);
then, for each large request, the same small requests sent one after another while that large request is in flight
(sent 0.2 s before the first small one): its status and time to answer, and the small requests' p50 beside it. The
large requests: a 2,000-word query (refused: over ``--max-query-tokens``), 500 documents of 10 words (refused: over
``--max-request-tokens``), and the largest request the budget admits (served: the worst a small request can meet).
``delay_over_alone`` is (p50 beside it - p50 alone) / p50 alone: a small request waits for less than its own service
time where it is under 1. On a shared CPU the times move with the machine's load, so read the ratios of one run.

    python benchmarks/large_requests.py --json large.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from routehead_rag import RouteHeadReranker
from routehead_rag.serve import ServeSettings

WORDS = ("scurvy vitamin lemons sailors voyage disease citrus navy ship orange acid bones rickets sunlight fruit "
         "cabbage limes captain crew island harbour winter bread water salt").split()
SMALL_QUERY = "What causes scurvy in sailors?"


def text(words: int, seed: int) -> str:
    return " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] for i in range(words))


def large_requests(budget_docs: int) -> dict[str, dict]:
    return {"query_2000_words": {"query": text(2000, 1), "documents": [text(25, k) for k in range(5)]},
            "documents_500_of_10_words": {"query": SMALL_QUERY, "documents": [text(10, k) for k in range(500)]},
            "largest_admitted": {"query": SMALL_QUERY, "documents": [text(150, k) for k in range(budget_docs)]}}


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


async def beside(url: str, large: dict, n: int) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=3600) as client:
        async def send_large() -> tuple[int, float, str]:
            start = time.perf_counter()
            response = await client.post("/v2/rerank", json=large)
            said = response.json().get("error", "") if response.status_code != 200 else ""
            return response.status_code, time.perf_counter() - start, said

        large_task = asyncio.create_task(send_large())
        await asyncio.sleep(0.2)
        smalls = await small_requests(client, n)
        status, seconds, said = await large_task
    return {"status": status, "seconds": round(seconds, 2), "error": said[:160],
            "small_p50_s": round(statistics.median(smalls), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=5, help="small requests per measurement")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "routehead_rag.cli", "serve", "--port", str(port),
                               "--timeout", "3600", "--log-level", "warning"])
    try:
        deadline = time.time() + 300
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("the server did not become ready")
            time.sleep(0.5)

        async def alone() -> list[float]:
            async with httpx.AsyncClient(base_url=url, timeout=3600) as client:
                await small_requests(client, 1)  # warm-up
                return await small_requests(client, args.small)

        p50_alone = statistics.median(asyncio.run(alone()))
        summary: dict = {"small_requests": args.small, "small_p50_alone_s": round(p50_alone, 2)}
        print(f"small requests alone: p50 {p50_alone:.2f} s", flush=True)
        for name, body in large_requests(largest_admitted()).items():
            result = asyncio.run(beside(url, body, args.small))
            result["documents"] = len(body["documents"])
            result["delay_over_alone"] = round((result["small_p50_s"] - p50_alone) / p50_alone, 2)
            summary[name] = result
            print(f"{name}: {result}", flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=600)
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
