"""The ranking adapter's go / no-go (issue 53, step 3): train an adapter on SciFact train alone, then rank SciFact
test (the bench's seeded 100 queries, BM25 top 20, 150-word documents) with it.

    python benchmarks/adapter_gate.py --name NAME [--model gemma-3-270m] [--layer 12] [--rank 16] [--layout sequential|block]
        [--calibrated] [--heads 0,3] [--temperature 1] [--loss share|mass] [--steps 600] [--lr 2e-4] [--n-docs 8] [--eval-only]
    python benchmarks/adapter_gate.py --frozen     # ICR and the shipped default on the same queries, then the table

Training is resumable (a killed run starts again from its last checkpoint: run the same command); the adapter is
written to ``<cache>/adapters/NAME.safetensors``. Each finished run appends its row (trainable parameters, steps,
minutes, final loss, nDCG@10 and the difference to BM25 ± its standard error) to ``<cache>/adapters/gate.jsonl`` and
prints the table of every run so far; per-query nDCG@10 is kept beside it (``NAME.eval.json``) so that the table
can be compared with the frozen modes on the same queries (``benchmarks/out_of_domain.py``'s SciFact rows).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from routehead_rag.adapter import AdapterConfig, load_adapter, merged
from routehead_rag.backbone import load_backbone
from routehead_rag.capture import install
from routehead_rag.data.datasets import load_dataset, sample_queries
from routehead_rag.data.first_stage import first_stage_candidates
from routehead_rag.data.metrics import ndcg_at_k
from routehead_rag.documents import Document
from routehead_rag.paths import cache_dir
from routehead_rag.prompt import MAX_DOC_WORDS, PromptBuilder
from routehead_rag.scoring import rank_prior, rank_summed
from routehead_rag.training.adapter import (LOSSES, AdapterTraining, checkpoint_path, list_scores, lists_from_dataset,
                                           train_adapter)

PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 1.0)
SCIFACT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "beir" / "scifact"


def _document(row: dict[str, str]) -> Document:
    return Document(text=row.get("text", ""), title=row.get("title") or None)


def evaluate(backbone, adapter_path: Path, n_queries: int, depth: int) -> dict[str, dict[str, float]]:
    """Per query of SciFact test's seeded sample: BM25's nDCG@10 and the adapter's, ranking BM25's top ``depth``."""
    adapter = load_adapter(adapter_path, backbone)
    ranker = merged(backbone, adapter)
    install(ranker.model)
    builder = PromptBuilder(ranker.engine_tokenizer, max_doc_words=MAX_DOC_WORDS, layout=adapter.config.layout)
    test = sample_queries(load_dataset(str(SCIFACT), split="test"), n_queries, seed=0)
    candidates = first_stage_candidates(test, depth).candidates
    out = {}
    with torch.inference_mode():
        for qid in tqdm(sorted(test.queries), desc="SciFact test", unit="query"):
            docs = candidates[qid]
            scores = list_scores(ranker, builder, test.queries[qid], [_document(test.corpus[d]) for d in docs],
                                 adapter.config)
            out[qid] = {"bm25": ndcg_at_k(docs, test.qrels[qid])}
            for weight in PRIOR_WEIGHTS:  # the adapter alone (0), and beside BM25's order (exploration only)
                order = rank_summed(scores, rank_prior(len(docs)), weight).order
                out[qid]["adapter" if weight == 0 else f"adapter+prior{weight}"] = ndcg_at_k(
                    [docs[i] for i in order], test.qrels[qid])
    return out


def paired(a: list[float], b: list[float]) -> tuple[float, float]:
    diffs = [x - y for x, y in zip(a, b)]
    return statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))


def frozen_baselines(n_queries: int, depth: int) -> dict[str, dict[str, float]]:
    """Per query of the same sample: nDCG@10 of the frozen modes the gate compares with, ICR and the shipped default
    (``routehead bench``'s ``icr`` and ``routehead_default``, replayed from the feature cache; the features are
    computed where missing, about 11 s a query on 2 cores)."""
    from routehead_rag.bench.runner import run_bench

    test = sample_queries(load_dataset(str(SCIFACT), split="test"), n_queries, seed=0)
    _, runs = run_bench(test, ["icr", "routehead_default"], depth, latency_queries=0)
    return {q: {name: ndcg_at_k(runs[name][0][q], test.qrels[q]) for name in runs} for q in runs["icr"][0]}


def print_table(folder: Path) -> None:
    """Every run of ``gate.jsonl``; beside the shipped default and ICR where ``frozen.json`` holds them."""
    log = folder / "gate.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    frozen_path = folder / "frozen.json"
    frozen = json.loads(frozen_path.read_text()) if frozen_path.is_file() else None
    print(f"{'name':26} {'layout':10} {'layer':>5} {'rank':>4} {'cal':>3} {'params':>9} {'steps':>5} {'min':>6} "
          f"{'loss':>6} {'ndcg@10':>8} {'vs bm25':>17}" + (f" {'vs default':>17} {'vs icr':>17}" if frozen else ""))
    for r in rows:
        line = (f"{r['name']:26} {r['layout']:10} {r['layer']:>5} {r['rank']:>4} {'yes' if r['calibrated'] else 'no':>3} "
                f"{r['params']:>9,} {r['steps']:>5} {r['minutes']:>6.1f} {r['loss']:>6.3f} {r['ndcg']:>8.4f} "
                f"{r['vs_bm25']:+.4f} ± {r['se']:.4f}")
        per_query_path = folder / f"{r['name']}.eval.json"
        if frozen and per_query_path.is_file():
            ours = json.loads(per_query_path.read_text())
            qids = sorted(set(ours) & set(frozen))
            for name in ("routehead_default", "icr"):
                diff, se = paired([ours[q]["adapter"] for q in qids], [frozen[q][name] for q in qids])
                line += f" {diff:+.4f} ± {se:.4f}"
        print(line)
    if frozen:
        print(f"frozen modes on the same {len(frozen)} queries: "
              + ", ".join(f"{name} {statistics.fmean(v[name] for v in frozen.values()):.4f}"
                          for name in ("routehead_default", "icr")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", help="the adapter's name (its file in the cache); needed but with --frozen")
    parser.add_argument("--model", default=None,
                        help="the base model (default: the embedded SmolLM2-135M; gemma-3-270m: Gemma 3 270M from PyPI)")
    parser.add_argument("--layer", type=int, default=12)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--modules", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
    parser.add_argument("--layout", choices=["sequential", "block"], default="sequential")
    parser.add_argument("--calibrated", action="store_true")
    parser.add_argument("--heads", default=None, help="heads of the scoring layer, e.g. 0,3,5 (default: all)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--loss", choices=LOSSES, default="share",
                        help="share: InfoNCE among the documents (BlockRank's); mass: the positive's log share of all "
                             "the query rows' attention")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--n-docs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="the order of the training lists (and LoRA's start)")
    parser.add_argument("--n-random", type=int, default=2, help="random negatives in each list (the rest: BM25's)")
    parser.add_argument("--max-doc-words", type=int, default=100)
    parser.add_argument("--start", default=None,
                        help="the name of a trained adapter (same config) to train further, instead of LoRA's zero start")
    parser.add_argument("--eval-queries", type=int, default=100)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--eval-only", action="store_true", help="evaluate the adapter already trained")
    parser.add_argument("--frozen", action="store_true",
                        help="only score the frozen modes (ICR, the shipped default) on the same queries, for the table")
    args = parser.parse_args()
    folder = cache_dir() / "adapters"
    if args.frozen:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "frozen.json").write_text(json.dumps(frozen_baselines(args.eval_queries, args.depth), indent=1))
        print_table(folder)
        return

    if not args.name:
        parser.error("--name is required (the adapter's file name in the cache)")
    config = AdapterConfig(layer=args.layer, rank=args.rank, alpha=2.0 * args.rank,
                           modules=tuple(args.modules.split(",")),
                           heads=None if args.heads is None else tuple(int(h) for h in args.heads.split(",")),
                           calibrated=args.calibrated, temperature=args.temperature, layout=args.layout)
    training = AdapterTraining(steps=args.steps, lr=args.lr, max_doc_words=args.max_doc_words, seed=args.seed,
                               loss=args.loss)
    out = folder / f"{args.name}.safetensors"
    if not args.eval_only and out.is_file() and (folder / f"{args.name}.eval.json").is_file():
        print(f"{args.name}: trained and evaluated already ({out}); --eval-only ranks with it again")
        print_table(folder)
        return
    backbone = load_backbone(args.model)
    started = time.perf_counter()
    if not args.eval_only:
        train = load_dataset(str(SCIFACT), split="train")
        lists = lists_from_dataset(train, depth=30, n_docs=args.n_docs, n_random=args.n_random)
        print(f"{len(lists)} training lists from {len(train.queries)} SciFact train queries", flush=True)
        start = None
        if args.start:
            first = load_adapter(folder / f"{args.start}.safetensors", backbone)
            if first.config != config:
                parser.error(f"--start {args.start} was trained with {first.config}, not {config}")
            start = first.tensors
        train_adapter(backbone, lists, config, training, out, start=start)
    minutes = (time.perf_counter() - started) / 60
    per_query = evaluate(backbone, out, args.eval_queries, args.depth)
    (folder / f"{args.name}.eval.json").write_text(json.dumps(per_query, indent=1))
    bm25 = [v["bm25"] for v in per_query.values()]
    ours = [v["adapter"] for v in per_query.values()]
    diff, se = paired(ours, bm25)
    ckpt = checkpoint_path(out)
    state = torch.load(ckpt, weights_only=False) if ckpt.is_file() else {}
    losses = state.get("losses", [math.nan])
    minutes = state.get("seconds", minutes * 60) / 60  # training time over every run that led here
    params = sum(t.numel() for t in load_adapter(out).tensors.values())
    row = {"name": args.name, "model": args.model or "smollm2-135m", "layout": config.layout, "layer": config.layer,
           "rank": config.rank, "calibrated": config.calibrated, "heads": config.heads,
           "temperature": config.temperature, "lr": training.lr, "loss_kind": training.loss, "start": args.start,
           "n_docs": args.n_docs, "n_random": args.n_random, "params": params, "steps": training.steps,
           "minutes": minutes,
           "loss": statistics.fmean(losses[-25:]), "first_loss": statistics.fmean(losses[:25]),
           "ndcg": statistics.fmean(ours), "bm25": statistics.fmean(bm25), "vs_bm25": diff, "se": se}
    with (folder / "gate.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
    print_table(folder)


if __name__ == "__main__":
    main()
