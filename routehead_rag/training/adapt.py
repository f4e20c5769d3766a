"""``routehead adapt``: train a router on a user's own documents, with their queries and judgements or with
synthetic queries.

Steps:
1. chunk the documents into passages (``chunk_words``);
2. queries: the user's (``queries`` + ``qrels``), or one question per sampled passage written by the backbone,
   filtered (:mod:`routehead_rag.training.synthetic`), the passages of that passage's document being the relevant
   ones;
3. BM25 candidates over the passages, the per-head features of each query (the LLM's part, cached and resumable);
4. a held-out split never trained on; on the rest, the same head search and router training as
   ``routehead train-router``, starting from the shipped router's weights when the backbone matches, with the
   weight of BM25's order chosen by cross-validation on the training queries; ``routers`` of them, each on its
   own train/validation split, averaged;
5. nDCG@10 on the held-out queries of BM25, the shipped router and the adapted one, printed and saved in the
   router's config.json. An interrupted run continues where it stopped when run again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from pathlib import Path

from ..data.corpus import chunk_corpus, read_corpus
from ..data.datasets import Dataset, Qrels, load_qrels, read_jsonl
from ..data.first_stage import bm25_candidates
from ..features import extract_features
from ..paths import cache_dir
from ..recipe import Recipe
from ..reranker import RouteHeadReranker
from ..router import DEFAULT_ROUTER, Router, RouterEnsemble, load_router
from .config import AdaptConfig
from .pipeline import train_routers
from .synthetic import PROMPT_VERSION, filter_queries, generate_queries
from .train import held_out_ndcg, split

MIN_QUERIES = 20  # usable queries: enough to train, validate (early stopping) and hold some out


def adapt(corpus: str | Path, out: str | Path, config: AdaptConfig | None = None, *, queries: str | Path | None = None,
          qrels: str | Path | None = None, model: str | None = None, dtype: str = "auto",
          work_dir: str | Path | None = None, overwrite: bool = False) -> Router | RouterEnsemble:
    """Train a router for the documents in ``corpus`` and save it in the folder ``out``; returns it.

    ``corpus``: a folder of .txt/.md files, a .jsonl of ``{"id", "text", "title"?}``, a BEIR folder or the Cranfield
    folder (:func:`routehead_rag.data.read_corpus`). ``queries`` (.jsonl of ``{"id", "text"}``) and ``qrels`` (TREC or
    BEIR, over document or passage ids) go together; without them the backbone writes synthetic queries, kept in
    ``work_dir`` (default: the user cache).
    """
    config = config or AdaptConfig()
    started = time.time()
    out = Path(out)
    if (queries is None) != (qrels is None):
        raise ValueError("--queries and --qrels go together: a query teaches the router only with its relevant "
                         "documents. Give both, or neither for synthetic queries.")
    if (out / "config.json").is_file() and not overwrite:
        raise ValueError(f"{out} already holds a router; pass --overwrite to replace it, or choose another --out.")
    documents = read_corpus(corpus)
    passages, parent = chunk_corpus(documents, config.chunk_words)
    print(f"{len(documents)} documents -> {len(passages)} passages of at most {config.chunk_words} words")
    needed = max(2 * config.depth, MIN_QUERIES)
    if len(passages) < needed:
        raise ValueError(f"{len(passages)} passages are too few to train on: at least {needed} are needed "
                         f"(2 x --depth {config.depth}, so that BM25's candidates are a real choice, and {MIN_QUERIES} "
                         "queries). Add documents, or lower --chunk-words or --depth.")

    reranker = RouteHeadReranker(model, Recipe(mode="all"), dtype=dtype, max_doc_words=config.max_doc_words)
    if queries is not None:
        chosen, judged = user_queries(queries, qrels, parent)
        report = {"source": "user", "queries": len(chosen)}
    else:
        work = Path(work_dir) if work_dir else _work_dir(reranker, corpus, config)
        chosen, judged, report = synthetic_queries(reranker, passages, parent, config, work)
    dataset = Dataset(name=Path(corpus).name, queries=chosen, qrels=judged, corpus=passages)
    candidates, _ = bm25_candidates(dataset, config.depth)
    features = extract_features(dataset, candidates, reranker, config.depth, seed=config.seed,
                                max_queries=config.max_queries)
    usable = [f for f in features if f.gains.sum() > 0]
    if len(usable) < MIN_QUERIES:
        raise ValueError(f"only {len(usable)} queries have a relevant passage among BM25's top {config.depth}; "
                         f"training needs at least {MIN_QUERIES}. Raise --max-chunks/--max-queries, add documents "
                         "or, with your own queries, judge more of them.")
    train_part, held_out = split(features, val_fraction=config.held_out, seed=config.seed + 1)

    default = load_router(DEFAULT_ROUTER)
    try:
        default.check_backbone(reranker.backbone)
    except ValueError:
        default = None
        print("no shipped router for this backbone: training from scratch.")
    print(f"training {config.routers} router(s) on {len(train_part)} queries, each on its own train/validation split:")
    router = train_routers(train_part, reranker, config, warm_start=default)

    scores = {"bm25": held_out_ndcg(held_out, None)}
    if default is not None:
        scores["default_router"] = held_out_ndcg(held_out, default)
    scores["adapted_router"] = held_out_ndcg(held_out, router)
    members = router.members if isinstance(router, RouterEnsemble) else [router]
    alone = [round(held_out_ndcg(held_out, member), 4) for member in members]
    print(f"\nnDCG@10 on {len(held_out)} held-out queries (never trained on), BM25 top-{config.depth} re-ranked:")
    for name, value in scores.items():
        print(f"  {name:<16}{value:.4f}")
    if len(alone) > 1:
        print(f"  (its {len(alone)} routers alone: {', '.join(f'{v:.4f}' for v in alone)})")

    router.training.update(data=[f"{corpus} (own corpus)"], adaptation={
        "corpus": str(corpus), "documents": len(documents), "passages": len(passages), "queries": report,
        "held_out": {"queries": len(held_out), "ndcg@10": {k: round(v, 4) for k, v in scores.items()},
                     "ndcg@10_of_each_router": alone},
        "seconds": round(time.time() - started, 1)})
    router.save(out)
    print(f"\nrouter -> {out} ({time.time() - started:.0f} s). Use it with RouteHeadReranker(router={str(out)!r}) "
          f"or `routehead bench ... --router {out}`.")
    return router


def passages_of(parent: dict[str, str]) -> dict[str, list[str]]:
    """Each document's passages: ``{doc_id: [chunk_id, ...]}`` from ``{chunk_id: doc_id}``."""
    children: dict[str, list[str]] = {}
    for chunk_id, doc_id in parent.items():
        children.setdefault(doc_id, []).append(chunk_id)
    return children


def user_queries(queries: str | Path, qrels: str | Path, parent: dict[str, str]) -> tuple[dict[str, str], Qrels]:
    """The user's queries and their judgements mapped onto passages (a judged document's passages share its grade)."""
    rows = read_jsonl(Path(queries))
    texts = {str(r.get("id", r.get("_id"))): r.get("text", "") for r in rows}
    children = passages_of(parent)
    judged: Qrels = {}
    for qid, grades in load_qrels(qrels).items():
        for doc_id, grade in grades.items():
            for chunk_id in children.get(doc_id, [doc_id] if doc_id in parent else []):
                judged.setdefault(qid, {})[chunk_id] = grade
    unjudged = [q for q in texts if q not in judged]
    if unjudged:
        print(f"{len(unjudged)} of {len(texts)} queries have no judgement on a corpus document; left out.")
    return {q: t for q, t in texts.items() if q in judged and t.strip()}, judged


def _work_dir(reranker: RouteHeadReranker, corpus: str | Path, config: AdaptConfig) -> Path:
    """Where the synthetic queries for this backbone, question prompt, corpus and chunking are kept."""
    key = json.dumps([reranker.backbone.fingerprint, PROMPT_VERSION, str(Path(corpus).resolve()), config.chunk_words,
                      config.max_doc_words])
    return cache_dir() / "adapt" / hashlib.sha256(key.encode()).hexdigest()[:16]


def synthetic_queries(reranker: RouteHeadReranker, passages: dict[str, dict[str, str]], parent: dict[str, str],
                      config: AdaptConfig, work: Path) -> tuple[dict[str, str], Qrels, dict]:
    """Questions written by the backbone for sampled passages, filtered; their qrels; a report.

    A question's relevant passages are all those of its source passage's document (:func:`synthetic_qrels`).
    """
    sampled = sorted(random.Random(config.seed).sample(sorted(passages), min(config.max_chunks, len(passages))))
    written = generate_queries(reranker.backbone, passages, sampled, work / "queries.jsonl", config.max_doc_words)
    probe = Dataset(name="synthetic", queries=written, qrels={}, corpus=passages)
    candidates, _ = bm25_candidates(probe, config.depth)
    kept, dropped = filter_queries(written, passages, candidates)
    print(f"kept {len(kept)} of {len(written)} synthetic queries; dropped: "
          + (", ".join(f"{n} {reason}" for reason, n in dropped.most_common()) or "none"))
    report = {"source": "synthetic", "written": len(written), "kept": len(kept), "dropped": dict(dropped),
              "work_dir": str(work)}
    return {f"syn:{c}": q for c, q in kept.items()}, synthetic_qrels(list(kept), parent), report


def synthetic_qrels(chunk_ids: list[str], parent: dict[str, str]) -> Qrels:
    """The judgements of the questions written for ``chunk_ids``: every passage of the source passage's document.

    As a user's judgements of a document reach all its passages: a document is judged whole at search time (and
    shown from its start), and a sibling passage is about the same subject, not a wrong answer to be ranked down.
    """
    children = passages_of(parent)
    return {f"syn:{c}": dict.fromkeys(children[parent[c]], 1) for c in chunk_ids}


def synthetic_dataset(dataset: Dataset, n: int, reranker: RouteHeadReranker, config: AdaptConfig | None = None,
                      work_dir: str | Path | None = None, write: bool = True) -> Dataset | None:
    """``n`` synthetic questions over ``dataset``'s corpus (chunked into passages), as ``routehead adapt`` writes
    and filters them, with their qrels (the source document's passages); written once and kept in ``work_dir``
    (default: the user cache, keyed by the backbone, prompt, corpus and chunking), so a later call reads them back.
    ``write=False``: only read them back (``None`` where they have not all been written yet).

    Twice ``n`` passages are sampled (seeded), since the filter drops some; the first ``n`` kept questions, by
    passage id, are returned. Fewer come back where the filter leaves fewer.
    """
    if dataset.corpus is None:
        raise ValueError(f"{dataset.name} has no corpus to write questions over.")
    config = config or AdaptConfig()
    passages, parent = chunk_corpus(dataset.corpus, config.chunk_words)
    key = json.dumps([reranker.backbone.fingerprint, PROMPT_VERSION, dataset.name, len(passages), config.chunk_words,
                      config.max_doc_words, n, config.seed])
    work = Path(work_dir) if work_dir else cache_dir() / "synthetic" / hashlib.sha256(key.encode()).hexdigest()[:16]
    done = work / "questions.json"
    if done.is_file():
        saved = json.loads(done.read_text(encoding="utf-8"))
        queries, qrels = saved["queries"], saved["qrels"]
    elif not write:
        return None
    else:
        sampling = dataclasses.replace(config, max_chunks=min(2 * n, len(passages)))
        written, judged, _ = synthetic_queries(reranker, passages, parent, sampling, work)
        kept = sorted(written)[:n]
        queries, qrels = {q: written[q] for q in kept}, {q: judged[q] for q in kept}
        done.write_text(json.dumps({"queries": queries, "qrels": qrels}, ensure_ascii=False), encoding="utf-8")
    return Dataset(name=f"{dataset.name}+synthetic", queries=queries, qrels=qrels, corpus=passages)
