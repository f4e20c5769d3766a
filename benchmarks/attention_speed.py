"""Time the engine's attention capture against the eager ``output_attentions=True`` reference.

Default model, 20 SciFact abstracts cut to ~150 words, a few SciFact queries. Reports seconds per
query of (a) the reference (eager, full model, two full passes), (b) the engine in mode ``all``
and (c) in mode ``static`` with 16 heads in layers <= 15; the max |a - b| over all per-head
scores; and the engine's peak RSS (measured before the reference runs).

    python benchmarks/attention_speed.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import time
from pathlib import Path

import torch

from routehead_rag import RouteHeadReranker
from routehead_rag.documents import to_documents
from routehead_rag.reference import reference_head_scores

SCIFACT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "beir" / "scifact"


def load_inputs(n_docs: int, words: int, n_queries: int) -> tuple[list[str], list[dict]]:
    if not SCIFACT.is_dir():
        raise SystemExit(f"{SCIFACT} not found: this benchmark reads real SciFact abstracts from ../shared/data.")
    docs = []
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if len(record["text"].split()) >= words:
                docs.append({"title": record["title"], "text": " ".join(record["text"].split()[:words])})
            if len(docs) == n_docs:
                break
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for _, line in zip(range(n_queries), f)]
    return queries, docs


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, queries: list[str]) -> tuple[float, list]:
    """Median seconds per query, and the outputs."""
    times, outputs = [], []
    for query in queries:
        start = time.perf_counter()
        outputs.append(fn(query))
        times.append(time.perf_counter() - start)
    return statistics.median(times), outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--words", type=int, default=150)
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--dtype", default="float32", help="fp32 by default, so the reference comparison is exact")
    args = parser.parse_args()
    torch.manual_seed(0)

    queries, docs = load_inputs(args.docs, args.words, args.queries)
    engine_all = RouteHeadReranker(mode="all", dtype=args.dtype, max_doc_words=args.words)
    n_heads = engine_all.backbone.n_heads
    heads = sorted(random.Random(0).sample(range(15 * n_heads), 15) + [15 * n_heads + 4])  # deepest layer: 15
    engine_static = RouteHeadReranker(mode="static", heads=heads, dtype=args.dtype, max_doc_words=args.words)
    engine_all.rerank(queries[0], docs)  # warm-up

    all_s, _ = timed(lambda q: engine_all.rerank(q, docs), queries)
    static_s, _ = timed(lambda q: engine_static.rerank(q, docs), queries)
    _, fast = timed(lambda q: engine_all.head_scores(q, docs), queries)
    engine_rss = peak_rss_mb()

    prompts = engine_all.prompts
    doc_ids = [prompts.doc_ids(d) for d in to_documents(docs)]
    reference_s, slow = timed(lambda q: reference_head_scores(engine_all.backbone, prompts.build(q, doc_ids)), queries)

    result = {
        "model": engine_all.backbone.name,
        "n_docs": len(docs),
        "prompt_tokens": len(prompts.build(queries[0], doc_ids)),
        "n_queries": len(queries),
        "torch_threads": torch.get_num_threads(),
        "reference_s": round(reference_s, 3),
        "engine_all_s": round(all_s, 3),
        "engine_static_s": round(static_s, 3),
        "speedup_all": round(reference_s / all_s, 2),
        "speedup_static": round(reference_s / static_s, 2),
        "max_abs_diff": max((a - b).abs().max().item() for a, b in zip(fast, slow)),
        "peak_rss_mb": round(engine_rss, 1),
        "reference_peak_rss_mb": round(peak_rss_mb(), 1),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
