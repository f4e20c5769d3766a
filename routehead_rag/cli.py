"""The ``routehead`` command line."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from .documents import check_query, read_documents
from .bench.methods import METHODS, ape_argument
from .heads import MODES, describe
from .prompt import MAX_DOC_WORDS
from .scoring import AGGREGATIONS
from .status import set_verbose
from .training.config import AdaptConfig, TrainConfig

DTYPE_HELP = "auto (bf16 on GPUs and on CPUs with a bf16 matmul, else fp32), bfloat16, float32"


# Characters that could drive a terminal (C0/C1 controls: ESC sequences, NUL, ...) or reorder what it shows (bidi
# overrides), and line breaks: a document printed must show as one line of its own text.
_UNSHOWN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSHOWN_JSON = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")  # json.dumps escapes the C0 ones


def _shown(text: str) -> str:
    """``text`` safe to print on one terminal line: tabs and line breaks as spaces, other controls as escapes."""
    return _UNSHOWN.sub(lambda m: " " if m[0] in "\t\n\r\x0b\x0c\x85\u2028\u2029" else ascii(m[0])[1:-1], text)


def _json_shown(value: object) -> str:
    """``value`` as JSON (non-ASCII text kept) with every control character escaped, also those JSON allows raw."""
    return _UNSHOWN_JSON.sub(lambda m: f"\\u{ord(m[0]):04x}", json.dumps(value, ensure_ascii=False, indent=1))


def _rerank(args: argparse.Namespace) -> int:
    from .recipe import Recipe
    from .reranker import RouteHeadReranker

    docs = read_documents(args.docs)
    check_query(args.query)  # before the model loads
    if args.top_n is not None and args.top_n <= 0:
        raise ValueError(f"--top-n must be a positive integer, not {args.top_n}.")
    heads = _head_list(args.heads)
    reranker = RouteHeadReranker(args.model, Recipe(mode=args.mode, heads=heads), router=args.router,
                                 device=args.device, max_doc_words=args.max_doc_words)
    results = reranker.rerank(args.query, [{"title": d.title, "text": d.text} for d in docs], top_n=args.top_n,
                              first_stage=args.first_stage)
    if args.json:
        print(_json_shown([{"rank": r + 1, "index": res.index, "relevance_score": res.relevance_score,
                            "score": res.score, **res.document} for r, res in enumerate(results)]))
        return 0
    print(f"query: {_shown(args.query)}\n{len(docs)} documents, model {_shown(reranker.backbone.name)}, "
          f"mode {reranker.mode}\n")
    if args.show_heads:
        heads = reranker.select_heads(args.query)
        used = "all heads" if heads is None else describe(heads, reranker.backbone.n_heads)
        print(f"heads (L<layer>.H<head> weight): {used}\n")
    print(f"{'rank':>4} {'doc':>5} {'relevance':>9} {'score':>8}  text")
    for rank, res in enumerate(results, 1):
        doc = res.document
        text = (doc["title"] + ": " if doc["title"] else "") + doc["text"]
        relevance = "-" if res.relevance_score is None else f"{res.relevance_score:.3f}"
        print(f"{rank:>3}. {'[' + str(res.index) + ']':>5} {relevance:>9} {res.score:8.4f}  {_shown(text[:100])}"
              f"{'…' if len(text) > 100 else ''}")
    if reranker.calibration is not None:
        print(f"\nrelevance: the probability that the document is relevant ({reranker.calibration.fit} model), "
              f"{_shown(reranker.calibration.describe())}"
              "\nscore: the mode's own, comparable within this list only; doc: its place in --docs")
    else:
        print("\nrelevance: no calibration for this model and mode; fit one with `routehead calibrate --dataset ... "
              f"--mode {reranker.mode}` (score: the mode's own, comparable within this list only)")
    return 0


def _head_list(text: str | None) -> list[int] | None:
    """``--heads``: comma-separated head indices, or a ``routehead detect-heads`` JSON file (``{"heads": [...]}``)."""
    if text and Path(text).is_file():
        try:
            return [int(h) for h in json.loads(Path(text).read_text())["heads"]]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"--heads {text}: not a detect-heads JSON with a 'heads' list ({err!r}).") from None
    try:
        return [int(h) for h in text.split(",")] if text else None
    except ValueError:
        raise ValueError(f"--heads {text!r} is not a comma-separated list of head indices (layer * n_heads + "
                         "head), e.g. --heads 133,139,153, nor a detect-heads JSON file.") from None


def _bench(args: argparse.Namespace) -> int:
    from .bench.runner import format_table, plot, run_bench, write_runs
    from .data.datasets import load_dataset, sample_queries

    started = time.time()
    dataset = load_dataset(args.dataset, split=args.split, qrels_path=args.qrels)
    if args.max_queries:
        dataset = sample_queries(dataset, args.max_queries)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.compare_default_router and "routehead_default" not in methods:
        methods.append("routehead_default")
    summary, runs = run_bench(dataset, methods, args.depth, model=args.model, router=args.router, run_path=args.run,
                              dtype=args.dtype, max_doc_words=args.max_doc_words, latency_queries=args.latency_queries,
                              baseline=args.baseline, heads=_head_list(args.heads),
                              workers=_workers(args))
    summary["seconds"] = round(time.time() - started, 1)
    print(format_table(summary))
    print(f"({summary['seconds']} s; latency from real rerank calls on {args.latency_queries} queries)")
    if summary["self_hits_dropped"]:
        print(f"dropped {summary['self_hits_dropped']} first-stage hits that were the query itself, as BEIR's "
              "evaluator does (ignore_identical_ids)")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    if args.run_out:
        write_runs(runs, args.run_out)
    if args.plot:
        plot(summary, args.plot)
    return 0


def _features(args: argparse.Namespace) -> int:
    from .data.datasets import load_dataset, sample_queries
    from .data.first_stage import first_stage_candidates
    from .features import extract_features, features_dir
    from .recipe import Recipe
    from .reranker import RouteHeadReranker

    dataset = load_dataset(args.dataset, split=args.split, qrels_path=args.qrels)
    reranker = RouteHeadReranker(args.model, Recipe(mode="all", layout=args.layout, ape=args.ape), dtype=args.dtype,
                                 max_doc_words=args.max_doc_words)
    if args.synthetic:
        from .training.adapt import synthetic_dataset

        dataset = synthetic_dataset(dataset, args.synthetic, reranker)  # questions over its corpus, BM25 over passages
    elif args.max_queries:
        dataset = sample_queries(dataset, args.max_queries)  # the bench's seeded sample
    candidates = first_stage_candidates(dataset, args.depth, None if args.synthetic else args.run).candidates
    features = extract_features(dataset, candidates, reranker, args.depth, workers=_workers(args))
    print(f"{len(features)} queries of {dataset.name} cached in {features_dir(reranker)}")
    return 0


def _workers(args: argparse.Namespace):
    """``--workers N [--ray-address ADDR]``: Ray workers with the engine this command builds, or ``None``."""
    if not getattr(args, "workers", None):
        return None
    from .recipe import Recipe
    from .workers import RayWorkers

    engine = {"model": args.model, "dtype": args.dtype, "max_doc_words": args.max_doc_words,
              "recipe": Recipe(mode="all", layout=getattr(args, "layout", "sequential"), ape=getattr(args, "ape", None))}
    return RayWorkers(args.workers, engine, args.ray_address)


def _add_worker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=None,
                        help="compute the features not cached on N Ray workers, each with its own engine (and GPU, "
                             "where the cluster has them); needs the 'ray' extra")
    parser.add_argument("--ray-address", default=None,
                        help="a Ray cluster to run the workers on (default: a local one, on 127.0.0.1)")


def _specs(args: argparse.Namespace):
    """The training sources that ``--dataset`` (repeatable), ``--split`` and ``--qrels`` name, in order."""
    from .training.pipeline import DataSpec

    splits = args.split or ["train"] * len(args.dataset)
    qrels = args.qrels or [None] * len(args.dataset)
    if len(splits) != len(args.dataset) or len(qrels) != len(args.dataset):
        raise ValueError("give --split and --qrels once per --dataset, in the same order (use 'none' for no qrels file).")
    return [DataSpec(d, s, None if q in (None, "none") else q) for d, s, q in zip(args.dataset, splits, qrels)]


def _training_data(args: argparse.Namespace, config: TrainConfig):
    from .recipe import Recipe
    from .reranker import RouteHeadReranker
    from .training.pipeline import gather_features

    specs = _specs(args)
    reranker = RouteHeadReranker(args.model, Recipe(mode="all"), dtype=args.dtype, max_doc_words=config.max_doc_words)
    return reranker, gather_features(specs, reranker, config.depth, config.max_queries, _workers(args))


def _detect_heads(args: argparse.Namespace) -> int:
    from .training.pipeline import detect_heads

    reranker, features = _training_data(args, _config(TrainConfig, args))
    heads, chosen = detect_heads(features, detector=args.detector)
    Path(args.out).write_text(json.dumps({"heads": heads, "detector": args.detector, "chosen": chosen,
                                          "model": reranker.backbone.name}, indent=1))
    print(f"{len(heads)} heads by {args.detector} ({chosen}) -> {args.out}; use them with --mode static --heads {args.out}")
    return 0


def _search_labels(args: argparse.Namespace) -> int:
    import torch

    from .training.pipeline import search_labels

    config = _config(TrainConfig, args)
    if config.fusion_weight is None:
        raise ValueError("search-labels needs a number for --fusion-weight (the weight its head sets are scored with).")
    _, features = _training_data(args, config)
    candidates, labels, qids = search_labels(features, config.candidates, config.max_heads, config.fusion_weight)
    torch.save({"candidates": candidates, "labels": labels, "qids": qids}, args.out)
    print(f"labels for {len(qids)} queries over {len(candidates)} candidate heads, "
          f"{labels.sum(1).mean():.2f} heads per query on average -> {args.out}")
    return 0


def _train_router(args: argparse.Namespace) -> int:
    from .training.pipeline import train_routers

    config = _config(TrainConfig, args)
    reranker, features = _training_data(args, config)
    router = train_routers(features, reranker, config)
    router.training["data"] = [f"{d} ({s})" for d, s in zip(args.dataset, args.split or ["train"] * len(args.dataset))]
    router.save(args.out)
    print(json.dumps(router.training, indent=1))
    print(f"router -> {args.out}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from .calibration import save_calibration
    from .recipe import Recipe
    from .reranker import RouteHeadReranker
    from .router import DEFAULT_ROUTER
    from .training.calibrate import fit_relevance, load_parts

    out = args.out or args.router or (None if args.model else DEFAULT_ROUTER)
    if out is None:
        raise ValueError("--out is needed: a model other than the default has no router folder to write beside; give "
                         "the folder to keep calibration.json in (pass it to RouteHeadReranker(calibration=...)).")
    specs = _specs(args)
    heads = _head_list(args.heads)
    modes = [args.mode] if not args.across_settings else [m for m in MODES if args.mode in (None, m)]
    rerankers = []
    for mode in modes:
        try:
            rerankers.append(RouteHeadReranker(args.model, Recipe(mode=mode, heads=heads, aggregation=args.aggregation),
                                               router=args.router, dtype=args.dtype, max_doc_words=args.max_doc_words))
        except ValueError as err:  # a mode this model cannot run (no router, no static heads)
            if not args.across_settings:
                raise
            print(f"mode {mode}: left out ({err})")
    min_grades = args.min_grade or [1] * len(specs)
    if len(min_grades) != len(specs):
        raise ValueError("give --min-grade once per --dataset, in the same order, or not at all (default 1 each).")
    parts = load_parts(rerankers[0], specs, args.depth, args.max_queries, "skip" if args.cached_only else "compute",
                       min_grades)
    calibration = fit_relevance(rerankers, parts, args.across_settings)
    path = save_calibration(out, calibration)
    fitted = calibration.fitted_on
    terms = " + ".join(f"{c:.3g} * {name}" for c, name in zip(calibration.coef, calibration.features))
    print(f"{calibration.fit} model for {', '.join(f'{r.mode} ({r.aggregation})' for r in rerankers)}: relevance = "
          f"sigmoid({terms} + {calibration.intercept:.3g}) on standardized evidence, fitted on {fitted['pairs']} "
          f"candidates of {sum(fitted['queries'])} queries ({fitted['relevant']} relevant) -> {path}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import os

    try:
        import uvicorn

        from .serve import ServeSettings, create_app, protocol_for
    except ImportError as err:
        raise ValueError(f"routehead serve needs the server's packages ({err.name} is missing); install them with "
                         "`pip install 'routehead-rag[serve]'`.") from None
    from .recipe import Recipe
    from .reranker import RouteHeadReranker

    api_key = args.api_key or os.environ.get("ROUTEHEAD_API_KEY") or None
    settings = ServeSettings(api_key=api_key, max_documents=args.max_documents, max_body_bytes=args.max_body_bytes,
                             max_query_tokens=args.max_query_tokens, max_request_tokens=args.max_request_tokens,
                             large_request_tokens=args.large_request_tokens or None,
                             max_queue=args.max_queue, max_wait_ms=args.max_wait_ms, timeout_s=args.timeout)
    options = {"model": args.model, "recipe": Recipe(mode=args.mode), "router": args.router, "device": args.device,
               "dtype": args.dtype, "max_doc_words": args.max_doc_words}
    if args.ray:
        from .serve.replicas import Scaling, deploy

        scaling = Scaling(args.replicas, args.min_replicas, args.max_replicas)
        scaling.options()  # a bad --replicas is refused before Ray starts
        print(f"routehead serve on Ray Serve: {scaling}, on http://{args.host}:{args.port}"
              f"{', API key required' if api_key else ''}", flush=True)
        deploy(options, settings, scaling, args.host, args.port, args.ray_address, blocking=True,
               start_timeout_s=args.start_timeout)
        return 0
    engine = RouteHeadReranker(**options)
    print(f"routehead serve: {engine.backbone.name}, recipe {engine.recipe.key()}, on http://{args.host}:{args.port} "
          f"(docs at /docs{', API key required' if api_key else ''})", flush=True)
    app = create_app(engine, settings)
    uvicorn.run(app, http=protocol_for(app), host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=args.timeout)
    return 0


def _presets(args: argparse.Namespace) -> int:
    from .heads import describe
    from .presets import presets

    by_source: dict[str, list] = {}
    for preset in presets().values():
        by_source.setdefault(preset.source.split(" File: ")[0], []).append(preset)
    for source, group in by_source.items():
        for preset in group:
            heads = describe(dict.fromkeys(preset.heads, 1.0), preset.n_heads, most=len(preset.heads))
            print(f"{preset.model}: {preset.n_layers} layers x {preset.n_heads} heads ({preset.n_kv_heads} KV), "
                  f"{len(preset.heads)} heads: {heads}")
        print(f"  source: {source}\n")
    print("Used by mode='static' (the default for these models) when the model's name and shape match.")
    return 0


def _adapt(args: argparse.Namespace) -> int:
    from .training.adapt import adapt

    adapt(args.corpus, args.out, _config(AdaptConfig, args), queries=args.queries, qrels=args.qrels, model=args.model,
          dtype=args.dtype, work_dir=args.work_dir, overwrite=args.overwrite)
    return 0


def _add_config_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, config: type[TrainConfig],
                     names: Sequence[str]) -> None:
    """One option per field of ``config`` named in ``names``, its default and help taken from the field."""
    defaults = config()
    for f in fields(config):
        if f.name in names:
            options = {k: v for k, v in f.metadata.items() if k != "help"}
            options.setdefault("type", type(f.default))
            default = getattr(defaults, f.name)
            shown = "" if default is None else f" (default: {default})"
            parser.add_argument(f"--{f.name.replace('_', '-')}", default=default, help=f.metadata["help"] + shown,
                                **options)


def _config(config: type[TrainConfig], args: argparse.Namespace) -> TrainConfig:
    """The ``config`` that the parsed options ``args`` give (fields without an option keep their defaults)."""
    return config(**{f.name: getattr(args, f.name) for f in fields(config) if hasattr(args, f.name)})


_DATA_OPTIONS = ("depth", "max_doc_words", "max_queries")
_ROUTER_OPTIONS = ("candidates", "max_heads", "top_k", "fusion_weight", "shared_signs", "layer", "pooling", "max_layer",
                   "folds", "routers", "seed")


def _add_training_args(parser: argparse.ArgumentParser, names: Sequence[str] = ()) -> None:
    parser.add_argument("--dataset", action="append", required=True,
                        help="training data (repeatable): BEIR folder, rank_llm .json, Cranfield folder or ir_datasets id")
    parser.add_argument("--split", action="append", help="split per --dataset (default train)")
    parser.add_argument("--qrels", action="append", help="TREC qrels file per --dataset ('none' for none)")
    _add_config_args(parser, TrainConfig, (*_DATA_OPTIONS, *names))
    parser.add_argument("--model", default=None)
    parser.add_argument("--dtype", default="auto", help=DTYPE_HELP)
    parser.add_argument("--out", required=True)


EVERYDAY, RESEARCH = "everyday commands", "research and training"

_EXAMPLES = """examples:
  routehead rerank --query "What causes scurvy?" --docs examples/demo_docs.jsonl --top-n 5
  routehead serve --port 8080            # Cohere /v2/rerank and TEI /rerank over HTTP
  routehead adapt --corpus my_docs/ --out my_router/
  routehead COMMAND --help               # a command's options; docs/usage.md has more"""


class _Commands:
    """The subcommands, listed in the top-level help by group (argparse lists subcommands in one flat block)."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS)
        self.listing: dict[str, list[tuple[str, str]]] = {EVERYDAY: [], RESEARCH: []}
        self.common = argparse.ArgumentParser(add_help=False)
        self.common.add_argument("--verbose", action="store_true",
                                 help="show every wait with its duration and the model libraries' progress bars "
                                      "(or set ROUTEHEAD_VERBOSE=1)")

    def add(self, name: str, group: str, summary: str, examples: str = "", details: str = "") -> argparse.ArgumentParser:
        self.listing[group].append((name, summary))
        description = summary[0].upper() + summary[1:] + "." + (f"\n\n{details}" if details else "")
        return self.sub.add_parser(name, prog=f"routehead {name}", description=description, parents=[self.common],
                                   epilog=f"examples:\n{examples}" if examples else None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    def describe(self) -> str:
        width = max(len(name) for group in self.listing.values() for name, _ in group) + 2
        return "\n\n".join(f"{group}:\n" + "\n".join(f"  {name:<{width}} {summary}" for name, summary in commands)
                             for group, commands in self.listing.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routehead", usage="routehead [-h] COMMAND ...",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=_EXAMPLES)
    commands = _Commands(parser)

    rerank = commands.add("rerank", EVERYDAY, "re-rank documents for a query, best first", examples="""\
  routehead rerank --query "What causes scurvy?" --docs examples/demo_docs.jsonl --top-n 5
  routehead rerank --query "..." --docs hits.jsonl --json      # for scripts
  routehead rerank --query "..." --docs hits.txt --show-heads  # which heads scored it""")
    rerank.add_argument("--query", required=True, help="the query")
    rerank.add_argument("--docs", required=True, help='.jsonl of {"text", "title"?}, or a text file with one document per line')
    rerank.add_argument("--top-n", type=int, default=None, help="print only the best N")
    rerank.add_argument("--model", default=None, help="hub id, model folder or .gguf (default: embedded SmolLM2-135M-Instruct)")
    rerank.add_argument("--mode", choices=MODES, default=None, help="default: routed where a router exists, else all")
    rerank.add_argument("--router", default=None, help="router folder (default: the one shipped for the default model)")
    rerank.add_argument("--heads", default=None, help="comma-separated head indices for --mode static")
    rerank.add_argument("--device", default="auto")
    rerank.add_argument("--max-doc-words", type=int, default=MAX_DOC_WORDS, help="words of each document the model reads")
    rerank.add_argument("--json", action="store_true", help="print the ranking as JSON")
    rerank.add_argument("--show-heads", action="store_true", help="also print the heads that scored the query")
    rerank.add_argument("--first-stage", choices=("order", "none"), default="order",
                        help="order: the file's order is a retriever's ranking, best first (default); none: a set")
    rerank.set_defaults(handler=_rerank)

    serve = commands.add("serve", EVERYDAY, "serve the rerank HTTP APIs (Cohere, Jina, vLLM, TEI)",
                         examples="""\
  routehead serve --port 8080 --api-key KEY
  routehead serve --ray --replicas 4           # Ray Serve replicas (the 'ray' extra)""",
                         details="docs/server.md has the routes, the limits and how to point clients at it.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--model", default=None, help="hub id, model folder or .gguf (default: embedded SmolLM2-135M-Instruct)")
    serve.add_argument("--mode", choices=MODES, default=None, help="default: routed where a router exists, else all")
    serve.add_argument("--router", default=None, help="router folder (default: the one shipped for the default model)")
    serve.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (or set ROUTEHEAD_API_KEY)")
    serve.add_argument("--max-documents", type=int, default=1000, help="documents per request; beyond: 413")
    serve.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024,
                       help="bytes of a request body, counted as it streams in; beyond: 413")
    serve.add_argument("--max-query-tokens", type=int, default=2048,
                       help="tokens of a query (after the request's max_tokens_per_query cut); beyond: 422")
    serve.add_argument("--max-request-tokens", type=int, default=8192,
                       help="prompt tokens one request may cost (its documents and query in every window), which "
                            "bounds how long it holds the engine; beyond: 413. Raise it on a GPU")
    serve.add_argument("--large-request-tokens", type=int, default=2048,
                       help="requests of at least this many prompt tokens run on a second engine thread, so that "
                            "small requests share the machine with them instead of waiting (0: one thread)")
    serve.add_argument("--max-queue", type=int, default=64, help="requests that may wait; beyond: 429 + Retry-After")
    serve.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
    serve.add_argument("--timeout", type=float, default=120.0, help="seconds a request may wait and run (then 503)")
    serve.add_argument("--max-doc-words", type=int, default=MAX_DOC_WORDS, help="words of each document the model reads")
    serve.add_argument("--device", default="auto")
    serve.add_argument("--dtype", default="auto", help=DTYPE_HELP)
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--ray", action="store_true", help="serve from replicas on Ray Serve (needs the 'ray' extra)")
    serve.add_argument("--replicas", type=int, default=1, help="with --ray: replicas, each with its own engine")
    serve.add_argument("--min-replicas", type=int, default=None, help="with --ray: autoscale from this many ...")
    serve.add_argument("--max-replicas", type=int, default=None, help="... to this many, by requests in progress")
    serve.add_argument("--ray-address", default=None,
                       help="with --ray: a Ray cluster to join (default: a local one, on 127.0.0.1)")
    serve.add_argument("--start-timeout", type=float, default=300.0,
                       help="with --ray: seconds to retry start-up where Ray loses an actor while starting (then "
                            "an error that says what to do)")
    serve.set_defaults(handler=_serve)

    adapt = commands.add("adapt", EVERYDAY, "train a router on your own documents (synthetic queries, or yours)",
                         examples="""\
  routehead adapt --corpus my_docs/ --out my_router/      # then RouteHeadReranker(router="my_router/")
  routehead adapt --corpus my_docs/ --queries q.jsonl --qrels qrels.txt --out my_router/""",
                         details="Takes about 25 minutes on 2 CPU cores with the default model; resumable. "
                                 "`routehead adapt --help-all` lists the\nadvanced options too; docs/training.md "
                                 "says what each step does.")
    adapt.add_argument("--corpus", required=True, help="folder of .txt/.md, .jsonl of {id, text, title?}, BEIR folder "
                                                       "or Cranfield folder (only the documents are read)")
    adapt.add_argument("--out", required=True, help="router folder to write")
    adapt.add_argument("--queries", help='your queries: .jsonl of {"id" (or "_id"), "text"} (needs --qrels)')
    adapt.add_argument("--qrels", help="your judgements: TREC qrels or BEIR .tsv, over document or passage ids")
    _add_config_args(adapt, AdaptConfig, ("max_chunks",))
    adapt.add_argument("--model", default=None, help="backbone (default: the embedded SmolLM2-135M-Instruct)")
    adapt.add_argument("--overwrite", action="store_true", help="replace a router already in --out")
    adapt.set_defaults(handler=_adapt)
    advanced = adapt.add_argument_group("advanced options")
    _add_config_args(advanced, AdaptConfig, (*_DATA_OPTIONS, *_ROUTER_OPTIONS, "chunk_words", "held_out"))
    advanced.add_argument("--dtype", default="auto", help=DTYPE_HELP)
    advanced.add_argument("--work-dir", default=None, help="where generated queries are kept (default: the user cache)")
    _hide_unless_asked(adapt, advanced)

    calibrate = commands.add("calibrate", RESEARCH, "fit the relevance model behind relevance_score in [0, 1]",
                             details="Fitted on labelled queries, written into calibration.json beside the router.")
    calibrate.add_argument("--dataset", action="append", required=True,
                           help="labelled data (repeatable): BEIR folder, rank_llm .json, Cranfield folder or "
                                "ir_datasets id")
    calibrate.add_argument("--split", action="append", help="split per --dataset (default train)")
    calibrate.add_argument("--qrels", action="append", help="TREC qrels per --dataset, where it has none ('none': skip)")
    calibrate.add_argument("--min-grade", action="append", type=int,
                           help="per --dataset, the lowest grade that counts as relevant (default 1; TREC DL's "
                                "passage qrels: 2, as the track binarizes them, grade 1 being 'related' only)")
    calibrate.add_argument("--mode", choices=MODES, default=None, help="default: routed where a router exists, else all")
    calibrate.add_argument("--aggregation", choices=AGGREGATIONS, default=None,
                           help="default: summed for all/static (as published), per_head for routed")
    calibrate.add_argument("--router", default=None, help="router folder (default: the one shipped for the default model)")
    calibrate.add_argument("--heads", default=None, help="comma-separated head indices for --mode static")
    calibrate.add_argument("--model", default=None, help="backbone (default: the embedded SmolLM2-135M-Instruct)")
    calibrate.add_argument("--depth", type=int, default=20, help="first-stage candidates per query")
    calibrate.add_argument("--max-queries", type=int, default=None, help="a seeded sample of N queries per dataset")
    calibrate.add_argument("--max-doc-words", type=int, default=MAX_DOC_WORDS, help="words of each document the model reads")
    calibrate.add_argument("--dtype", default="auto", help=DTYPE_HELP)
    calibrate.add_argument("--out", default=None, help="folder for calibration.json (default: the router's folder)")
    calibrate.add_argument("--across-settings", action="store_true",
                           help="fit the model that serves every setup without its own, on the evidence of every "
                                "mode this model can run (--mode: that one only)")
    calibrate.add_argument("--cached-only", action="store_true",
                           help="use only the queries whose features are cached (no model run)")
    calibrate.set_defaults(handler=_calibrate)

    bench = commands.add("bench", RESEARCH, "evaluate re-ranking methods on a dataset (nDCG@10, latency, ...)",
                         examples="""\
  routehead bench --dataset beir/scifact/test --depth 20 --methods bm25,routehead --max-queries 100""",
                         details="docs/benchmarks.md has the methods and the numbers measured so far.")
    bench.add_argument("--dataset", required=True, help="ir_datasets id, BEIR folder, rank_llm .json or Cranfield folder")
    bench.add_argument("--split", default="test", help="qrels split of a BEIR folder")
    bench.add_argument("--qrels", default=None, help="TREC qrels file, where the dataset has none")
    bench.add_argument("--run", default=None, help="TREC run file with the first-stage candidates (default: BM25)")
    bench.add_argument("--depth", type=int, default=100, help="candidates re-ranked per query")
    bench.add_argument("--methods", default="bm25,icr,qrhead,routehead",
                       help="comma-separated, of: " + ",".join(METHODS) + " (icr, qrhead: as published; *_per_head: "
                            "each head masked alone; routehead_summed: the routed heads summed as ICR does)")
    bench.add_argument("--baseline", default=None,
                       help="method the others are compared with, query by query (default: the first of --methods)")
    bench.add_argument("--max-queries", type=int, default=None, help="a fixed seeded sample of N queries")
    bench.add_argument("--model", default=None)
    bench.add_argument("--router", default=None, help="router folder for routehead/qrhead (default: the shipped one)")
    bench.add_argument("--heads", default=None, help="heads of the static methods (qrhead*): comma-separated indices "
                                                    "or a `routehead detect-heads` JSON (default: the router's, or "
                                                    "the model's preset)")
    bench.add_argument("--compare-default-router", action="store_true", help="add routehead_default (the shipped router)")
    bench.add_argument("--dtype", default="auto", help=DTYPE_HELP)
    bench.add_argument("--max-doc-words", type=int, default=MAX_DOC_WORDS, help="words of each document the model reads")
    bench.add_argument("--latency-queries", type=int, default=10, help="queries timed with real rerank calls per method")
    bench.add_argument("--json", default=None, help="write the summary here")
    bench.add_argument("--run-out", default=None, help="folder for one TREC run file per method")
    bench.add_argument("--plot", default=None, help="PNG with nDCG@10 and latency per method")
    _add_worker_args(bench)
    bench.set_defaults(handler=_bench)

    features = commands.add("features", RESEARCH, "compute the per-query head features into the cache",
                            details="Resumable: run it in the background, a later run goes on where it stopped.")
    features.add_argument("--dataset", required=True, help="ir_datasets id, BEIR folder, rank_llm .json or Cranfield folder")
    features.add_argument("--split", default="test", help="qrels split of a BEIR folder")
    features.add_argument("--qrels", default=None, help="TREC qrels file, where the dataset has none")
    features.add_argument("--run", default=None, help="TREC run file with the first-stage candidates (default: BM25)")
    features.add_argument("--depth", type=int, default=20, help="candidates per query")
    features.add_argument("--max-queries", type=int, default=None,
                          help="the same seeded sample of N queries as `routehead bench --max-queries N`")
    features.add_argument("--synthetic", type=int, default=None, metavar="N",
                          help="instead of the dataset's queries: N questions the model writes over its corpus "
                               "(chunked into 150-word passages), as `routehead adapt` does; kept in the cache")
    features.add_argument("--model", default=None)
    features.add_argument("--dtype", default="auto", help=DTYPE_HELP)
    features.add_argument("--max-doc-words", type=int, default=MAX_DOC_WORDS, help="words of each document the model reads")
    features.add_argument("--layout", choices=("sequential", "block"), default="sequential",
                          help="prompt layout (default sequential, ICR's; block: each document alone after the chat head)")
    features.add_argument("--ape", type=ape_argument, default=None, metavar="T,S",
                          help="with --layout block: the query attends to the documents as APE has it, temperature T "
                               "and scale S (docs/history.md, 'Block layout and APE')")
    _add_worker_args(features)
    features.set_defaults(handler=_features)

    detect = commands.add("detect-heads", RESEARCH, "find heads on labelled queries (QRHead, CoRe, HeadRank...)")
    _add_training_args(detect)
    detect.add_argument("--detector", choices=("qrhead", "core", "headrank", "selective-icr"), default="qrhead",
                        help="how heads are chosen (default qrhead: single-head nDCG@10; docs/method.md, 'The head "
                             "detector')")
    detect.set_defaults(handler=_detect_heads)

    search = commands.add("search-labels", RESEARCH, "search each query's best head set (pseudo labels)")
    _add_training_args(search, ("candidates", "max_heads", "fusion_weight"))
    search.set_defaults(handler=_search_labels)

    train = commands.add("train-router", RESEARCH, "train a router: QRHead-style heads, pseudo labels, the router", details="docs/training.md has the recipes.")
    _add_training_args(train, _ROUTER_OPTIONS)
    _add_worker_args(train)
    train.set_defaults(handler=_train_router)

    listing = commands.add("presets", RESEARCH, "list the published (QRHead) head lists for GPU-sized models")
    listing.set_defaults(handler=_presets)

    parser.description = "Re-rank retrieved documents by the attention of an LLM's heads.\n\n" + commands.describe()
    return parser


def _hide_unless_asked(parser: argparse.ArgumentParser, group: argparse._ArgumentGroup) -> None:
    """``--help`` leaves ``group``'s options out (they still parse); ``--help-all`` shows them."""
    shown = {action: action.help for action in group._group_actions}
    for action in shown:
        action.help = argparse.SUPPRESS

    class HelpAll(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
            for action, text in shown.items():
                action.help = text
            parser.print_help()
            parser.exit()

    parser.add_argument("--help-all", action=HelpAll, nargs=0, help="show the advanced options too, and exit")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        set_verbose(True)
    try:
        return args.handler(args)
    except (ValueError, TypeError, OSError) as err:  # OSError: FileNotFoundError, IsADirectoryError, PermissionError
        print(f"routehead {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
