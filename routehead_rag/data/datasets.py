"""Evaluation data: queries, graded qrels, a corpus and optional first-stage candidates, from four formats.

``load_dataset(spec)`` reads an ``ir_datasets`` id, a BEIR folder, a rank_llm JSON file or the Cranfield
folder. Every loader keeps only the queries that have qrels (any label, 0 included), as trec_eval
evaluates only judged queries. Ids are strings everywhere.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from ..paths import atomic_write, cache_dir, shared_data_dir

Qrels = dict[str, dict[str, int]]

# Cranfield relevance codes (cranqrel.readme, Cleverdon): 1 complete answer, 2 high, 3 useful, 4 minimum
# interest, 5 no interest; -1 also occurs in the file. Gains follow TREC's "higher is better".
CRANFIELD_GAINS = {1: 4, 2: 3, 3: 2, 4: 1}

INSTALL_HINT = "install the benchmark extra: pip install 'routehead-rag[bench]'"
_FILE_SUFFIXES = {".json", ".jsonl", ".tsv", ".txt", ".trec", ".qrels"}
_CLASSIC_FIELDS = {".T", ".A", ".B", ".W"}


@dataclass
class Dataset:
    """One evaluation set. ``candidates`` is None when a first stage (e.g. BM25) must produce them."""

    name: str
    queries: dict[str, str]
    qrels: Qrels
    corpus: dict[str, dict[str, str]] | None  # docid -> {"title": str, "text": str}
    candidates: dict[str, list[str]] | None = None  # qid -> docids, best first


def load_dataset(spec: str, split: str = "test", qrels_path: str | Path | None = None) -> Dataset:
    """Load ``spec``: a BEIR folder, a rank_llm ``.json`` file or the Cranfield folder, else an ir_datasets id.

    ``split`` picks ``qrels/<split>.tsv`` in a BEIR folder. ``qrels_path`` (a TREC qrels file, ``qid 0 docid rel``)
    replaces the format's own qrels; a rank_llm file has none, so it needs one. Cranfield's relevance codes become
    gains 1→4, 2→3, 3→2, 4→1 and 5 or -1→0 (``CRANFIELD_GAINS``).
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file():
            dataset = _load_beir_folder(path, split, skip_qrels=qrels_path is not None)
        elif (path / "cran.all.1400").is_file():
            dataset = _load_cranfield(path)
        else:
            raise ValueError(f"{path} is a folder but neither a BEIR folder (corpus.jsonl, queries.jsonl, qrels/) nor "
                             "the Cranfield folder (cran.all.1400, cran.qry, cranqrel); point at one of those.")
    elif path.is_file():
        if path.suffix != ".json":
            raise ValueError(f"{path}: unrecognised file format; give a rank_llm .json file, a BEIR or Cranfield "
                             "folder, or an ir_datasets id such as beir/scifact/test.")
        if qrels_path is None:
            raise ValueError(f"{path} is a rank_llm file, which has no relevance labels; pass qrels_path "
                             "with a TREC qrels file, e.g. ../shared/data/trec-dl/dl19/qrels.dl19-passage.txt.")
        dataset = _load_rank_llm(path)
    elif path.is_absolute() or spec.startswith((".", "~")) or path.suffix in _FILE_SUFFIXES:
        raise ValueError(f"{spec} does not exist; check the path (data usually lives in ../shared/data).")
    else:
        dataset = _load_ir_datasets(spec)
    if qrels_path is not None:
        dataset.qrels = load_qrels(qrels_path)
    return _judged_only(dataset)


def load_qrels(path: str | Path) -> Qrels:
    """Read qrels into ``{qid: {docid: rel}}``: TREC (``qid 0 docid rel``) or BEIR TSV (``query-id corpus-id score``,
    header optional)."""
    qrels: Qrels = {}
    for lineno, line in enumerate(read_lines(path), 1):
        parts = line.split()
        if len(parts) not in (3, 4):
            raise ValueError(f"{path}:{lineno}: expected 'qid 0 docid rel' (TREC) or 'query-id corpus-id score' "
                             f"(BEIR), got {line!r}.")
        qid, docid, rel = parts[0], parts[-2], parts[-1]
        if not rel.lstrip("-").isdigit():
            if lineno == 1:
                continue  # a header line
            raise ValueError(f"{path}:{lineno}: the relevance {rel!r} is not an integer.")
        qrels.setdefault(qid, {})[docid] = int(rel)
    return qrels


def load_trec_run(path: str | Path) -> dict[str, list[str]]:
    """Read a TREC run (``qid Q0 docid rank score tag``) into ``{qid: [docid, ...]}``, by score desc, then rank."""
    rows: dict[str, list[tuple[float, int, str]]] = {}
    for lineno, line in enumerate(read_lines(path), 1):
        parts = line.split()
        if len(parts) < 5:
            raise ValueError(f"{path}:{lineno}: expected 'qid Q0 docid rank score [tag]', got {line!r}.")
        rows.setdefault(parts[0], []).append((-float(parts[4]), int(parts[3]), parts[2]))
    return {qid: [docid for *_, docid in sorted(hits)] for qid, hits in rows.items()}


def sample_queries(dataset: Dataset, n: int, seed: int = 0) -> Dataset:
    """Keep ``n`` queries: sort the qids as strings, ``random.Random(seed).sample`` n of them, keep them sorted.

    The same dataset, ``n`` and ``seed`` always give the same queries; ``n >= len(queries)`` keeps all of them.
    """
    if n < 1:
        raise ValueError(f"n (--max-queries) must be at least 1, got {n}.")
    qids = sorted(dataset.queries)
    if n < len(qids):
        qids = sorted(random.Random(seed).sample(qids, n))
    return _restrict(dataset, qids)


def ensure_ir_datasets_home() -> Path | None:
    """Point ``IR_DATASETS_HOME`` at a writable copy of the shared ``ir_datasets_home``, unless it is already set.

    The copy goes to ``cache_dir()/ir_datasets`` (files already there are kept), because ir_datasets writes derived
    files next to its downloads. Must run before ``ir_datasets`` is imported, which reads the variable once.
    """
    if os.environ.get("IR_DATASETS_HOME"):
        return Path(os.environ["IR_DATASETS_HOME"])
    shared = shared_data_dir()
    source = shared / "ir_datasets_home" if shared else None
    if source is None or not source.is_dir():
        return None
    target = cache_dir() / "ir_datasets"
    for src in source.rglob("*"):
        dest = target / src.relative_to(source)
        if src.is_file() and not dest.exists():  # copyfile, not copy2: the shared files are read-only
            atomic_write(dest, lambda tmp, src=src: shutil.copyfile(src, tmp))
    if "ir_datasets" in sys.modules:
        warnings.warn("ir_datasets was imported before IR_DATASETS_HOME was set, so it keeps its old home; "
                      f"set IR_DATASETS_HOME={target} before importing it.", stacklevel=2)
    os.environ["IR_DATASETS_HOME"] = str(target)
    return target


def _load_ir_datasets(spec: str) -> Dataset:
    ensure_ir_datasets_home()
    try:
        import ir_datasets
    except ImportError as err:
        raise ImportError(f"{spec!r} is not an existing path; reading it as an ir_datasets id needs ir_datasets "
                          f"and lz4: {INSTALL_HINT}.") from err
    try:
        source = ir_datasets.load(spec)
    except KeyError as err:
        raise ValueError(f"{spec!r} is neither an existing path nor a known ir_datasets id (e.g. beir/scifact/test); "
                         "check the spelling, or give a BEIR folder, a rank_llm .json or the Cranfield folder.") from err
    if not (source.has_queries() and source.has_qrels()):
        raise ValueError(f"ir_datasets {spec!r} has no queries with qrels; name a split with qrels, e.g. {spec}/test.")
    queries = {q.query_id: getattr(q, "text", None) or q.default_text() for q in source.queries_iter()}
    qrels: Qrels = {}
    for qrel in source.qrels_iter():
        qrels.setdefault(qrel.query_id, {})[qrel.doc_id] = int(qrel.relevance)
    corpus = None
    if source.has_docs():
        corpus = {d.doc_id: {"title": getattr(d, "title", "") or "",
                             "text": getattr(d, "text", None) or d.default_text()} for d in source.docs_iter()}
    return Dataset(name=spec, queries=queries, qrels=qrels, corpus=corpus)


def _load_beir_folder(path: Path, split: str, skip_qrels: bool = False) -> Dataset:
    qrels_file = path / "qrels" / f"{split}.tsv"
    qrels: Qrels = {}
    if not skip_qrels:
        if not qrels_file.is_file():
            found = sorted(p.stem for p in (path / "qrels").glob("*.tsv"))
            raise ValueError(f"{path} has no qrels/{split}.tsv; choose a split among {found or 'none'}, "
                             "or pass a TREC qrels file as qrels_path.")
        qrels = load_qrels(qrels_file)
    queries = {row["_id"]: row["text"] for row in read_jsonl(path / "queries.jsonl")}
    corpus = {row["_id"]: {"title": row.get("title") or "", "text": row.get("text") or ""}
              for row in read_jsonl(path / "corpus.jsonl")}
    return Dataset(name=f"{path.name}/{split}", queries=queries, qrels=qrels, corpus=corpus)


def _load_rank_llm(path: Path) -> Dataset:
    """rank_llm JSON ``[{query, hits: [{content, qid, docid, rank, score}]}]``; ``query``: a string or ``{text, qid}``."""
    with open(path, encoding="utf-8") as f:
        entries = json.load(f)
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "hits" in e for e in entries):
        raise ValueError(f"{path}: not a rank_llm file; expected a list of {{'query', 'hits'}} objects.")
    queries, corpus, candidates = {}, {}, {}
    for entry in entries:
        query, hits = entry["query"], sorted(entry["hits"], key=lambda h: h.get("rank", 0))  # stable: file order
        if isinstance(query, dict):
            qid, text = str(query["qid"]), query["text"]
        elif hits:
            qid, text = str(hits[0]["qid"]), query
        else:
            continue  # a bare query string without hits carries no qid
        queries[qid] = text
        candidates[qid] = [str(h["docid"]) for h in hits]
        for h in hits:
            corpus[str(h["docid"])] = {"title": "", "text": h["content"]}
    return Dataset(name=path.stem, queries=queries, qrels={}, corpus=corpus, candidates=candidates)


def _load_cranfield(path: Path) -> Dataset:
    """Cranfield 1400. Doc text = ``.W``, title = ``.T``; queries are numbered 1-225 in file order, as ``cranqrel``
    numbers them (the ``.I`` numbers in ``cran.qry`` differ). Gains: code 1→4, 2→3, 3→2, 4→1, others (5, -1)→0.
    """
    for name in ("cran.qry", "cranqrel"):
        if not (path / name).is_file():
            raise ValueError(f"{path} has cran.all.1400 but no {name}; the Cranfield folder needs all three files.")
    corpus = cranfield_documents(path)
    queries = {str(n): rec.get("W", "") for n, rec in enumerate(read_classic(path / "cran.qry"), 1)}
    qrels: Qrels = {}
    for line in read_lines(path / "cranqrel"):
        qid, docid, code = line.split()
        qrels.setdefault(qid, {})[docid] = CRANFIELD_GAINS.get(int(code), 0)
    return Dataset(name="cranfield", queries=queries, qrels=qrels, corpus=corpus)


def cranfield_documents(path: Path) -> dict[str, dict[str, str]]:
    """Cranfield's documents from ``path/cran.all.1400``: ``{id: {"title": .T, "text": .W}}``."""
    return {rec["I"]: {"title": rec.get("T", ""), "text": rec.get("W", "")} for rec in read_classic(path / "cran.all.1400")}


def read_classic(path: Path) -> list[dict[str, str]]:
    """Records of the SMART ``.I``/``.T``/``.A``/``.B``/``.W`` format; field lines are joined with spaces."""
    records: list[dict[str, list[str]]] = []
    field = None
    for line in read_lines(path):
        if line.startswith(".I"):
            records.append({"I": [line[2:].strip()]})
            field = None
        elif line in _CLASSIC_FIELDS and records:
            field = line[1]
            records[-1][field] = []
        elif field is not None:
            records[-1][field].append(line.strip())
    return [{key: " ".join(lines) for key, lines in rec.items()} for rec in records]


def _judged_only(dataset: Dataset) -> Dataset:
    qids = [qid for qid in dataset.queries if qid in dataset.qrels]
    if not qids:
        raise ValueError(f"no query of {dataset.name} has qrels; check the split or the qrels file.")
    return _restrict(dataset, qids)


def _restrict(dataset: Dataset, qids: list[str]) -> Dataset:
    """The dataset with only ``qids`` (corpus shared, not copied)."""
    def keep(table):
        return None if table is None else {qid: table[qid] for qid in qids if qid in table}
    return replace(dataset, queries={qid: dataset.queries[qid] for qid in qids}, qrels=keep(dataset.qrels),
                   candidates=keep(dataset.candidates))


def read_lines(path: str | Path) -> list[str]:
    """Non-blank lines without their line ends (CRLF files included)."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\r\n") for line in f if line.strip()]


def read_jsonl(path: Path) -> list[dict]:
    """One JSON object per non-blank line; a bad line is an error that names it."""
    rows = []
    for lineno, line in enumerate(read_lines(path), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{lineno} is not valid JSON ({err.msg}).") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno} is {type(row).__name__}, not a JSON object.")
        rows.append(row)
    return rows
