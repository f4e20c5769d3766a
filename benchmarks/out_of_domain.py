"""Leave one domain out, from the feature cache: SciFact, TREC DL19 passages and Cranfield, each measured with every
setting chosen on the other two (``routehead_rag.training.domains``).

Each domain's evaluation queries: SciFact test (the bench's seeded 100), DL19 (all 43), Cranfield (the seeded 100);
its training queries, lent when another domain is held out: SciFact train (the seeded 150), and DL19's and
Cranfield's own; and for each, 40 synthetic questions the model wrote over its corpus (``routehead features
--synthetic 40``, as ``routehead adapt`` writes them). BM25 top-20, 150-word documents, the default model. The
features must be cached first (hours on a CPU, so in the background; a later run resumes):

    routehead features --dataset ../shared/data/beir/scifact --split test --max-queries 100
    routehead features --dataset ../shared/data/beir/scifact --split train --max-queries 150
    routehead features --dataset ../shared/data/trec-dl/dl19/bm25_top100_with_passages.rank_llm.json \\
        --qrels ../shared/data/trec-dl/dl19/qrels.dl19-passage.txt
    routehead features --dataset ../shared/data/classic/cranfield --max-queries 100
    routehead features --dataset D --synthetic 40    # for each of the three datasets above

    python benchmarks/out_of_domain.py [--model M] [--layout block [--ape T,S]] [--partial] [--no-router] [--routers N]
        [--latency N] [--save-router DIR] [--json out.json]

Rows per held-out domain: ``bm25``; the training-free ``icr`` and ``icr_reattn`` (ICR re-weighted as ReAttn,
``routehead_rag.reweighting``); heads or a layer window chosen on the other domains' training queries: ``qrhead``
(QRHead-style heads), ``selective_icr`` (Selective-ICR's layer window), ``core`` and ``headrank`` (those
detectors' heads); ``icr_fused`` (the floor: ICR with the first stage at the weight best on the other domains);
routers: ``routehead_signed`` (shared head weights free in sign), ``routehead`` (the training default: shared
weights kept positive), ``routehead_trust`` (the first stage's weight per query, fitted on a split of the same
training queries) and ``routehead_trust_off`` (that weight fitted off domain: each training domain's queries scored
by a router trained without it). ``--routers N`` averages N routers each time one is trained (1: about 5 minutes on
one core; 5: about 22). ``--save-router DIR`` also trains the router to ship, on every domain, as
``routehead_trust_off`` is trained (the shipped router was made so, with ``--routers 1``). ``--partial`` uses the
queries cached so far (to look at the numbers while the cache fills). ``--model`` and ``--layout`` give another
backbone or layout its table (its features cached the same way, with ``routehead features --model M`` or
``--layout block``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import statistics
import time
import warnings
from pathlib import Path

from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.bench.methods import ape_argument
from routehead_rag.data.datasets import Dataset, load_dataset, sample_queries
from routehead_rag.data.first_stage import first_stage_candidates
from routehead_rag.documents import to_documents
from routehead_rag.features import QueryFeatures, extract_features
from routehead_rag.prompt import LAYOUTS
from routehead_rag.recipe import RECIPE_FIELDS
from routehead_rag.reweighting import attach
from routehead_rag.training.adapt import synthetic_dataset
from routehead_rag.training.config import TrainConfig
from routehead_rag.training.domains import Domain, HeldOut, leave_one_domain_out, memoized, table, train_on_every_domain
from routehead_rag.training.pipeline import train_routers
from routehead_rag.training.selection import icr_ndcg

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DL19 = DATA / "trec-dl" / "dl19"
# domain -> (evaluation source, training source or None: the evaluation queries); a source is
# (dataset, split, qrels file, seeded sample size or None for all)
SOURCES = {
    "scifact": ((DATA / "beir" / "scifact", "test", None, 100), (DATA / "beir" / "scifact", "train", None, 150)),
    "dl19": ((DL19 / "bm25_top100_with_passages.rank_llm.json", "test", DL19 / "qrels.dl19-passage.txt", None), None),
    "cranfield": ((DATA / "classic" / "cranfield", "test", None, 100), None),
}
DEPTH = 20
SYNTHETIC = 40  # questions written over each domain's corpus, for training only


@functools.cache
def dataset_of(dataset_path: Path, split: str, qrels: Path | None) -> Dataset:
    """A source's whole dataset, loaded once for its sample and for the corpus its synthetic questions are written over."""
    return load_dataset(str(dataset_path), split=split, qrels_path=None if qrels is None else str(qrels))


@functools.cache
def sampled(source: tuple) -> tuple[Dataset, dict[str, list[str]]]:
    """A source's queries (its seeded sample, the bench's and `routehead features --max-queries`'s) and their BM25
    candidates, found once."""
    dataset_path, split, qrels, n = source
    dataset = dataset_of(dataset_path, split, qrels)
    if n is not None:
        dataset = sample_queries(dataset, n)
    return dataset, first_stage_candidates(dataset, DEPTH).candidates


def cached(source: tuple, reranker: RouteHeadReranker, partial: bool) -> list[QueryFeatures]:
    dataset, candidates = sampled(source)
    return extract_features(dataset, candidates, reranker, DEPTH, missing="skip" if partial else "error")


def reattn(source: tuple, reranker: RouteHeadReranker, queries: list[QueryFeatures]) -> list[QueryFeatures]:
    """``queries`` (of ``source``) with ReAttn's token weights attached (``routehead_rag.reweighting``): ICR over them
    is ICR re-weighted as ReAttn, training-free."""
    dataset, candidates = sampled(source)
    tokenizer = reranker.backbone.engine_tokenizer
    return [dataclasses.replace(q, diffs=attach(q.diffs, tokenizer, dataset.queries[q.qid], [
        reranker.prompts.doc_ids(doc) for doc in to_documents([dataset.corpus[d] for d in candidates[q.qid][:DEPTH]])]))
            for q in queries]


def time_methods(result: HeldOut, n_queries: int, model: str | None, layout: str,
                 ape: tuple[float, float] | None) -> None:
    """Each method's median seconds per live ``rerank`` (its BM25 top-``DEPTH`` at 150 words) on the held-out
    domain's first ``n_queries`` evaluation queries, every method on the same queries, into ``result.latency``."""
    dataset, candidates = sampled(SOURCES[result.domain][0])
    calls = [(dataset.queries[q], [dataset.corpus[d] for d in candidates[q][:DEPTH]])
             for q in sorted(q for q in dataset.queries if candidates.get(q))[:n_queries]]
    for method, options in result.engine.items():
        with warnings.catch_warnings():  # a calibration fitted across settings: said once per reranker, not here
            warnings.simplefilter("ignore")
            fields = {k: v for k, v in options.items() if k in RECIPE_FIELDS}  # the rest: the router
            reranker = RouteHeadReranker(model, Recipe(layout=layout, ape=ape, **fields),
                                         **{k: v for k, v in options.items() if k not in RECIPE_FIELDS})
        seconds = []
        for query, docs in calls:
            started = time.perf_counter()
            reranker.rerank(query, docs)
            seconds.append(time.perf_counter() - started)
        result.latency[method] = statistics.median(seconds)
        print(f"{result.domain} {method}: {result.latency[method]:.2f} s per query (median of {len(seconds)})",
              flush=True)


def synthetic(source: tuple, reranker: RouteHeadReranker, partial: bool) -> list[QueryFeatures]:
    """The features of the ``SYNTHETIC`` questions written over ``source``'s corpus (none yet: an empty list with
    ``--partial``)."""
    dataset_path, split, qrels, _ = source
    written = synthetic_dataset(dataset_of(dataset_path, split, qrels), SYNTHETIC, reranker, write=not partial)
    if written is None:
        return []
    candidates = first_stage_candidates(written, DEPTH).candidates
    return extract_features(written, candidates, reranker, DEPTH, missing="skip" if partial else "error")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partial", action="store_true", help="use the queries cached so far")
    parser.add_argument("--no-router", action="store_true", help="leave out the router (trained once per domain)")
    parser.add_argument("--model", default=None,
                        help="hub id, folder or .gguf of the backbone (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--layout", choices=LAYOUTS, default="sequential",
                        help="prompt layout: sequential (ICR's) or block (each document alone after the chat head)")
    parser.add_argument("--ape", type=ape_argument, default=None, metavar="T,S",
                        help="with --layout block: APE's attention temperature T and scale S for the query")
    parser.add_argument("--latency", type=int, default=0, metavar="N",
                        help="also time each method live on N evaluation queries per held-out domain (median)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--routers", type=int, default=1, help="routers averaged per trained router (default 1)")
    parser.add_argument("--save-router", default=None, metavar="DIR",
                        help="also train the router on every domain (trust learned off domain) and save it to DIR")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found: this benchmark reads SciFact, DL19 and Cranfield from ../shared/data.")

    started = time.time()
    reranker = RouteHeadReranker(args.model, Recipe(mode="all", layout=args.layout, ape=args.ape))
    domains, reweighted = [], {}
    for name, (evaluation, training) in SOURCES.items():
        evaluation_queries = cached(evaluation, reranker, args.partial)
        training_queries = cached(training, reranker, args.partial) if training else evaluation_queries
        written = synthetic(evaluation, reranker, args.partial)
        domains.append(Domain(name, evaluation_queries, training_queries + written))
        reweighted[name] = reattn(evaluation, reranker, evaluation_queries)
        print(f"{name}: {len(evaluation_queries)} evaluation, {len(training_queries)} training queries and "
              f"{len(written)} synthetic ones", flush=True)
    empty = [d.name for d in domains if not d.evaluation]
    if empty:  # only with --partial: a domain with nothing cached yet to measure on
        print(f"left out, nothing cached yet to measure on: {', '.join(empty)}")
        domains = [d for d in domains if d.name not in empty]
    if len(domains) < 2 or sum(1 for d in domains if d.training) < 2:
        raise SystemExit("fewer than two domains have cached queries to measure on and train with; cache more (see "
                         "the commands above).")
    # the router's fixed weight: cross-validated on the other domains
    config = TrainConfig(fusion_weight=None, routers=args.routers)

    def fitter(config: TrainConfig):
        # the same training queries recur (a domain pair is a held-out domain's pool and, with --save-router, an
        # inner pool of the router to ship; one domain is an inner pool twice): each trained once
        return memoized(lambda queries: train_routers(queries, reranker, config))

    signed = {"routehead_signed": fitter(dataclasses.replace(config, shared_signs="signed"))}
    results = leave_one_domain_out(domains, None if args.no_router else fitter(config),
                                   None if args.no_router else signed)
    for result in results:  # training-free: nothing chosen on the other domains
        result.ndcg["icr_reattn"] = icr_ndcg(reweighted[result.domain], 0.0)
        result.engine["icr_reattn"] = {"mode": "all", "reweighting": "reattn"}
    if args.latency:
        for result in results:
            time_methods(result, args.latency, args.model, args.layout, args.ape)
    print(table(results))
    print(f"({time.time() - started:.0f} s)")
    if args.save_router:
        router = train_on_every_domain(domains, fitter(config))
        router.training["data"] = [f"{d.name}: {len(d.training)} training queries, real and synthetic" for d in domains]
        router.training["made_by"] = f"python benchmarks/out_of_domain.py --routers {args.routers} --save-router DIR"
        router.save(args.save_router)
        print(f"router trained on every domain ({'; '.join(router.training['data'])}) -> {args.save_router}")
    if args.json:
        Path(args.json).write_text(json.dumps([{"domain": r.domain, "ndcg": r.ndcg, "chosen": r.chosen,
                                                "latency_s": r.latency}
                                               for r in results], indent=1) + "\n")


if __name__ == "__main__":
    main()
