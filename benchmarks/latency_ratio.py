"""Latency of one re-ranker setup against another, in one run: the issue's rule that a new default may cost at most
1.5x today's routed mode "on the same machine in the same run".

Each setup is ``key=value`` pairs of ``RouteHeadReranker`` options (``model``, ``mode``, ``layout``, ``layers`` as
``start-stop``, ``reweighting``, ``heads`` as ``a/b/c``); the two take turns query by query on the same seeded SciFact
test queries (BM25 top-20, 150-word documents), so a slow spell of a shared machine falls on both alike. One warm-up
call each is not timed.

    python benchmarks/latency_ratio.py --a mode=routed --b model=gemma-3-270m,mode=all [--queries 6]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.data.datasets import load_dataset, sample_queries
from routehead_rag.data.first_stage import first_stage_candidates
from routehead_rag.paths import shared_data_dir
from routehead_rag.recipe import RECIPE_FIELDS

DEPTH = 20


def setup(text: str) -> dict:
    """``"model=gemma-3-270m,mode=all,layers=9-13"`` as ``RouteHeadReranker`` options, the recipe's fields in
    ``recipe=Recipe(...)``."""
    options: dict = {}
    for pair in filter(None, text.split(",")):
        key, _, value = pair.partition("=")
        if key == "layers":
            start, _, stop = value.partition("-")
            options[key] = list(range(int(start), int(stop) + 1))
        elif key == "heads":
            options[key] = [int(h) for h in value.split("/")]
        else:
            options[key] = value
    recipe = Recipe(**{k: v for k, v in options.items() if k in RECIPE_FIELDS})
    return {"recipe": recipe, **{k: v for k, v in options.items() if k not in RECIPE_FIELDS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", default="mode=routed", help="the baseline setup (default: the default model, routed)")
    parser.add_argument("--b", required=True, help="the setup compared with it")
    parser.add_argument("--queries", type=int, default=6)
    args = parser.parse_args()
    data = shared_data_dir()
    if data is None or not (data / "beir" / "scifact").is_dir():
        raise SystemExit("SciFact not found: this benchmark reads ../shared/data/beir/scifact.")
    dataset = sample_queries(load_dataset(str(data / "beir" / "scifact"), split="test"), 100)
    candidates = first_stage_candidates(dataset, DEPTH).candidates
    qids = [q for q in sorted(dataset.queries) if candidates.get(q)][:args.queries + 1]
    calls = [(dataset.queries[q], [dataset.corpus[d] for d in candidates[q][:DEPTH]]) for q in qids]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a relevance model fitted across settings: not what is timed
        rerankers = {name: RouteHeadReranker(**setup(text)) for name, text in (("a", args.a), ("b", args.b))}
    seconds: dict[str, list[float]] = {"a": [], "b": []}
    for k, (query, docs) in enumerate(calls):
        for name, reranker in rerankers.items():
            started = time.perf_counter()
            reranker.rerank(query, docs)
            if k:  # the first call of each is a warm-up
                seconds[name].append(time.perf_counter() - started)
    a, b = (statistics.median(seconds[n]) for n in ("a", "b"))
    for name, text, median in (("a", args.a, a), ("b", args.b, b)):
        print(f"{name}: {text:<45} median {median:6.2f} s per query ({rerankers[name].backbone.name}, "
              f"{len(seconds[name])} SciFact test queries, BM25 top-{DEPTH})")
    print(f"b / a = {b / a:.2f}")


if __name__ == "__main__":
    main()
