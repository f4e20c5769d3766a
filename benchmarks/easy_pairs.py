"""Easy pairs: does each method put a query's relevant SciFact abstract above random ones, whatever the input order?

For ``--queries`` seeded SciFact test queries, the relevant abstract plus ``--k`` random abstracts, once with the
relevant one first and once last (the list reversed); top-1 accuracy per method with the first-stage prior (the input
order) on and off, Kendall's tau between a list's and its reversed list's document scores, and the mean
``relevance_score`` of relevant and random abstracts (``routehead_rag.bench.easy_pairs``). Two forwards per query,
cached (about 2 minutes for 40 queries on 2 cores).

    python benchmarks/easy_pairs.py [--queries 40] [--k 4] [--methods icr,qrhead,routehead_default] [--layout block [--ape T,S]]
        [--model M] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from routehead_rag.bench.easy_pairs import PRIOR_WEIGHT, easy_pairs, evaluate, format_rows, pair_features
from routehead_rag.bench.methods import ape_argument
from routehead_rag.bench.runner import method_rerankers
from routehead_rag.data.datasets import load_dataset
from routehead_rag.paths import shared_data_dir
from routehead_rag.prompt import LAYOUTS, MAX_DOC_WORDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=40, help="seeded SciFact test queries (default 40)")
    parser.add_argument("--k", type=int, default=4, help="random abstracts beside the relevant one (default 4)")
    parser.add_argument("--methods", default="icr,qrhead,routehead_default",
                        help="methods of `routehead bench` (default: icr,qrhead,routehead_default)")
    parser.add_argument("--prior-weight", type=float, default=PRIOR_WEIGHT,
                        help="first-stage weight with the prior on, for methods whose own is 0 (default 1.0)")
    parser.add_argument("--layout", choices=LAYOUTS, default="sequential",
                        help="prompt layout: sequential (ICR's) or block (each document alone after the chat head)")
    parser.add_argument("--ape", type=ape_argument, default=None, metavar="T,S",
                        help="with --layout block: APE's attention temperature T and scale S for the query")
    parser.add_argument("--model", default=None,
                        help="hub id, folder or .gguf of the backbone (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    data = shared_data_dir()
    if data is None or not (data / "beir" / "scifact").is_dir():
        raise SystemExit("SciFact not found: this benchmark reads ../shared/data/beir/scifact (or set "
                         "ROUTEHEAD_SHARED_DATA to the folder holding beir/scifact).")
    started = time.time()
    pairs = easy_pairs(load_dataset(str(data / "beir" / "scifact"), split="test"), args.queries, args.k, args.seed)
    methods = [m.strip() for m in args.methods.split(",") if m.strip() and m.strip() != "bm25"]
    rerankers = method_rerankers(methods, args.model, None, "auto", MAX_DOC_WORDS, layout=args.layout,
                                 ape=args.ape)
    features = pair_features(pairs, next(iter(rerankers.values())))
    rows = evaluate(pairs, features, rerankers, args.prior_weight)
    print(f"easy pairs: {len(pairs.queries)} SciFact test queries, the relevant abstract and {args.k} random ones, "
          f"model {next(iter(rerankers.values())).backbone.name}, {args.layout} layout"
          + ("" if args.ape is None else f", APE temperature {args.ape[0]} scale {args.ape[1]}"))
    print(format_rows(rows))
    print(f"({time.time() - started:.0f} s; prior on: each method's own first-stage weight, or {args.prior_weight} "
          "where that is 0)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
