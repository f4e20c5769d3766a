"""Train a RouteHead router on your own documents, with your queries and judgements or with synthetic queries.

    python examples/train_on_my_corpus.py --corpus PATH --out my_router/
    # then: RouteHeadReranker(router="my_router/")

PATH is a folder of .txt/.md files, a .jsonl of {"id", "text", "title"?}, a BEIR folder (corpus.jsonl) or the
Cranfield folder (cran.all.1400); only the documents are read. Steps:
1. chunk the documents into passages (``--chunk-words``);
2. queries: yours (``--queries`` + ``--qrels``), or one question per sampled passage written by the backbone,
   filtered (``routehead_rag.training.synthetic``), the passages of that passage's document being the relevant ones;
3. BM25 candidates over the passages, the per-head features of each query (the LLM's part, cached and resumable);
4. a held-out split never trained on; on the rest, the same head search and router training as the shipped
   router (``routehead train-router``), starting from the shipped router's weights when the backbone matches,
   with the weight of BM25's order chosen by cross-validation on the training queries (``--fusion-weight auto``);
   ``--routers`` of them, each on its own train/validation split, averaged;
5. nDCG@10 on the held-out queries of BM25, the shipped router and the adapted one, printed and saved in the
   router's config.json. An interrupted run continues where it stopped when run again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

from routehead_rag import RouteHeadReranker
from routehead_rag.bench.datasets import Dataset, load_qrels, read_jsonl
from routehead_rag.bench.first_stage import bm25_candidates
from routehead_rag.cli import fusion_weight
from routehead_rag.paths import cache_dir
from routehead_rag.router import DEFAULT_ROUTER, load_router
from routehead_rag.training.corpus import chunk_corpus, read_corpus
from routehead_rag.training.features import extract_features
from routehead_rag.training.pipeline import train_ensemble
from routehead_rag.training.synthetic import PROMPT_VERSION, filter_queries, generate_queries
from routehead_rag.training.train import held_out_ndcg, split

MIN_QUERIES = 20  # usable queries: enough to train, validate (early stopping) and hold some out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="folder of .txt/.md, .jsonl, BEIR folder or Cranfield folder")
    parser.add_argument("--out", required=True, help="router folder to write")
    parser.add_argument("--queries", help='your queries: .jsonl of {"id" (or "_id"), "text"} (needs --qrels)')
    parser.add_argument("--qrels", help="your judgements: TREC qrels or BEIR .tsv, over document or passage ids")
    parser.add_argument("--model", default=None, help="backbone (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--chunk-words", type=int, default=150, help="passage size in words (default 150)")
    parser.add_argument("--max-chunks", type=int, default=320,
                        help="passages sampled to write synthetic queries for (default 320)")
    parser.add_argument("--max-queries", type=int, default=240,
                        help="queries scored by the LLM, held-out ones included (default 240; ~5 s each on 2 cores)")
    parser.add_argument("--depth", type=int, default=20, help="BM25 candidates per query (default 20)")
    parser.add_argument("--max-doc-words", type=int, default=150, help="words of each passage the LLM reads")
    parser.add_argument("--held-out", type=float, default=0.2, help="fraction of queries held out for evaluation")
    parser.add_argument("--fusion-weight", type=fusion_weight, default=None,
                        help="weight of BM25's order in the adapted router's scores (default auto: chosen by "
                             "cross-validation on the training queries, since how far BM25 is to be trusted depends on "
                             "the corpus)")
    parser.add_argument("--routers", type=int, default=5,
                        help="routers trained, each on its own split of the training queries, and averaged (default 5: "
                             "steadier and better than one off the shipped router's domain, docs/method.md; 1: one)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default=None, help="where generated queries are kept (default: the user cache)")
    parser.add_argument("--overwrite", action="store_true", help="replace a router already in --out")
    args = parser.parse_args(argv)
    if (args.queries is None) != (args.qrels is None):
        parser.error("--queries and --qrels go together: a query teaches the router only with its relevant "
                     "documents. Give both, or neither for synthetic queries.")
    if not 0 < args.held_out < 1:
        parser.error(f"--held-out must be a fraction between 0 and 1, not {args.held_out}.")
    for name in ("chunk_words", "max_chunks", "max_queries", "depth", "max_doc_words", "routers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer.")
    return args


def passages_of(parent: dict[str, str]) -> dict[str, list[str]]:
    """Each document's passages: ``{doc_id: [chunk_id, ...]}`` from ``{chunk_id: doc_id}``."""
    children: dict[str, list[str]] = {}
    for chunk_id, doc_id in parent.items():
        children.setdefault(doc_id, []).append(chunk_id)
    return children


def user_queries(args: argparse.Namespace, parent: dict[str, str]) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Your queries and their judgements mapped onto passages (a judged document's passages share its grade)."""
    rows = read_jsonl(Path(args.queries))
    queries = {str(r.get("id", r.get("_id"))): r.get("text", "") for r in rows}
    children = passages_of(parent)
    qrels: dict[str, dict[str, int]] = {}
    for qid, judged in load_qrels(args.qrels).items():
        for doc_id, grade in judged.items():
            for chunk_id in children.get(doc_id, [doc_id] if doc_id in parent else []):
                qrels.setdefault(qid, {})[chunk_id] = grade
    unjudged = [q for q in queries if q not in qrels]
    if unjudged:
        print(f"{len(unjudged)} of {len(queries)} queries have no judgement on a corpus document; left out.")
    return {q: t for q, t in queries.items() if q in qrels and t.strip()}, qrels


def synthetic_queries(args: argparse.Namespace, reranker: RouteHeadReranker, passages: dict[str, dict[str, str]],
                      parent: dict[str, str]) -> tuple[dict[str, str], dict[str, dict[str, int]], dict]:
    """Questions written by the backbone for sampled passages, filtered; their qrels; a report.

    A question's relevant passages are all those of its source passage's document (:func:`synthetic_qrels`).
    """
    sampled = sorted(random.Random(args.seed).sample(sorted(passages), min(args.max_chunks, len(passages))))
    key = json.dumps([reranker.backbone.fingerprint, PROMPT_VERSION, str(Path(args.corpus).resolve()),
                      args.chunk_words, args.max_doc_words])
    work = Path(args.work_dir) if args.work_dir else cache_dir() / "adapt" / hashlib.sha256(key.encode()).hexdigest()[:16]
    written = generate_queries(reranker.backbone, passages, sampled, work / "queries.jsonl", args.max_doc_words)
    probe = Dataset(name="synthetic", queries=written, qrels={}, corpus=passages)
    candidates, _ = bm25_candidates(probe, args.depth)
    kept, dropped = filter_queries(written, passages, candidates)
    print(f"kept {len(kept)} of {len(written)} synthetic queries; dropped: "
          + (", ".join(f"{n} {reason}" for reason, n in dropped.most_common()) or "none"))
    report = {"source": "synthetic", "written": len(written), "kept": len(kept), "dropped": dict(dropped),
              "work_dir": str(work)}
    return {f"syn:{c}": q for c, q in kept.items()}, synthetic_qrels(list(kept), parent), report


def synthetic_qrels(chunk_ids: list[str], parent: dict[str, str]) -> dict[str, dict[str, int]]:
    """The judgements of the questions written for ``chunk_ids``: every passage of the source passage's document.

    As your own judgements of a document reach all its passages: a document is judged whole at search time (and
    shown from its start), and a sibling passage is about the same subject, not a wrong answer to be ranked down.
    """
    children = passages_of(parent)
    return {f"syn:{c}": dict.fromkeys(children[parent[c]], 1) for c in chunk_ids}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    out = Path(args.out)
    if (out / "config.json").is_file() and not args.overwrite:
        raise SystemExit(f"{out} already holds a router; pass --overwrite to replace it, or choose another --out.")
    try:
        documents = read_corpus(args.corpus)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    passages, parent = chunk_corpus(documents, args.chunk_words)
    print(f"{len(documents)} documents -> {len(passages)} passages of at most {args.chunk_words} words")
    needed = max(2 * args.depth, MIN_QUERIES)
    if len(passages) < needed:
        raise SystemExit(f"error: {len(passages)} passages are too few to train on: at least {needed} are needed "
                         f"(2 x --depth {args.depth}, so that BM25's candidates are a real choice, and {MIN_QUERIES} "
                         "queries). Add documents, or lower --chunk-words or --depth.")

    reranker = RouteHeadReranker(args.model, mode="all", dtype=args.dtype, max_doc_words=args.max_doc_words)
    if args.queries:
        queries, qrels = user_queries(args, parent)
        report = {"source": "user", "queries": len(queries)}
    else:
        queries, qrels, report = synthetic_queries(args, reranker, passages, parent)
    dataset = Dataset(name=Path(args.corpus).name, queries=queries, qrels=qrels, corpus=passages)
    candidates, _ = bm25_candidates(dataset, args.depth)
    features = extract_features(dataset, candidates, None, reranker, args.depth, seed=args.seed,
                                max_queries=args.max_queries)
    usable = [f for f in features if f.gains.sum() > 0]
    if len(usable) < MIN_QUERIES:
        raise SystemExit(f"error: only {len(usable)} queries have a relevant passage among BM25's top {args.depth}; "
                         f"training needs at least {MIN_QUERIES}. Raise --max-chunks/--max-queries, add documents "
                         "or, with your own queries, judge more of them.")
    train_part, held_out = split(features, val_fraction=args.held_out, seed=args.seed + 1)

    default = load_router(DEFAULT_ROUTER)
    try:
        default.check_backbone(reranker.backbone)
    except ValueError:
        default = None
        print("no shipped router for this backbone: training from scratch.")
    print(f"training {args.routers} router(s) on {len(train_part)} queries, each on its own train/validation split:")
    router = train_ensemble(train_part, reranker, args.routers, fusion_weight=args.fusion_weight, warm_start=default,
                            seed=args.seed)

    scores = {"bm25": held_out_ndcg(held_out, None)}
    if default is not None:
        scores["default_router"] = held_out_ndcg(held_out, default)
    scores["adapted_router"] = held_out_ndcg(held_out, router)
    alone = [round(held_out_ndcg(held_out, member), 4) for member in router.members]
    print(f"\nnDCG@10 on {len(held_out)} held-out queries (never trained on), BM25 top-{args.depth} re-ranked:")
    for name, value in scores.items():
        print(f"  {name:<16}{value:.4f}")
    if len(alone) > 1:
        print(f"  (its {len(alone)} routers alone: {', '.join(f'{v:.4f}' for v in alone)})")

    router.training.update(depth=args.depth, data=[f"{args.corpus} (own corpus)"], adaptation={
        "corpus": str(args.corpus), "documents": len(documents), "passages": len(passages),
        "chunk_words": args.chunk_words, "queries": report,
        "held_out": {"queries": len(held_out), "ndcg@10": {k: round(v, 4) for k, v in scores.items()},
                     "ndcg@10_of_each_router": alone},
        "seconds": round(time.time() - started, 1)})
    router.save(out)
    print(f"\nrouter -> {out} ({time.time() - started:.0f} s). Use it with RouteHeadReranker(router={str(out)!r}) "
          f"or `routehead bench ... --router {out}`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
