"""A user's own documents for domain adaptation: reading them from four formats, and chunking them into passages."""

from __future__ import annotations

import math
import re
from pathlib import Path

from .datasets import cranfield_documents, read_jsonl

Corpus = dict[str, dict[str, str]]  # id -> {"title": str, "text": str}

TEXT_SUFFIXES = (".txt", ".md")


def read_corpus(path: str | Path) -> Corpus:
    """Documents from a folder of ``.txt``/``.md`` files (searched recursively; id = relative path), a ``.jsonl``
    of ``{"id" (or "_id"), "text", "title"?}``, a BEIR folder (its ``corpus.jsonl`` only) or the Cranfield folder
    (``cran.all.1400`` only). Documents with no text are left out."""
    path = Path(path).expanduser()
    if path.is_dir() and (path / "corpus.jsonl").is_file():
        corpus = _from_rows(read_jsonl(path / "corpus.jsonl"), path / "corpus.jsonl")
    elif path.is_dir() and (path / "cran.all.1400").is_file():
        corpus = cranfield_documents(path)
    elif path.is_dir():
        corpus = {}
        for file in sorted(p for p in path.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES and p.is_file()):
            try:
                text = file.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError) as err:
                raise ValueError(f"{file} cannot be read as UTF-8 text ({err}); convert it or move it out of "
                                 f"{path}.") from None
            corpus[file.relative_to(path).as_posix()] = {"title": file.stem, "text": text}
    elif path.is_file() and path.suffix == ".jsonl":
        corpus = _from_rows(read_jsonl(path), path)
    elif path.exists():
        raise ValueError(f"{path}: give a folder of .txt/.md files, a .jsonl of {{'id', 'text', 'title'?}}, a BEIR "
                         "folder or the Cranfield folder.")
    else:
        raise FileNotFoundError(f"{path} does not exist; point --corpus at your documents.")
    corpus = {doc_id: doc for doc_id, doc in corpus.items() if doc["text"].strip()}
    if not corpus:
        raise ValueError(f"{path} holds no document with text (looked for {', '.join(TEXT_SUFFIXES)} files, "
                         "corpus.jsonl, cran.all.1400 or .jsonl rows with a 'text' field).")
    return corpus


def _from_rows(rows: list[dict], source: Path) -> Corpus:
    corpus: Corpus = {}
    for number, row in enumerate(rows, 1):
        doc_id, text = row.get("id", row.get("_id")), row.get("text")
        if doc_id is None or not isinstance(text, str):
            raise ValueError(f"{source}: row {number} needs an 'id' (or '_id') and a string 'text'.")
        if str(doc_id) in corpus:
            raise ValueError(f"{source}: row {number} repeats the id {doc_id!r}; ids must be unique.")
        corpus[str(doc_id)] = {"title": str(row.get("title") or ""), "text": text}
    return corpus


_WORDS = re.compile(r"\S+")


def chunk_corpus(corpus: Corpus, chunk_words: int = 150) -> tuple[Corpus, dict[str, str]]:
    """Split each document into passages of at most ``chunk_words`` words, of even length within a document.

    Ids are stable: the document id alone when it fits in one passage, else ``{id}#{k}`` from ``k = 0``.
    Every passage keeps its document's title. Returns (passages, passage id -> document id).
    """
    if chunk_words < 10:
        raise ValueError(f"chunk_words must be at least 10, got {chunk_words}.")
    chunks: Corpus = {}
    parent: dict[str, str] = {}
    for doc_id, doc in corpus.items():
        words = _WORDS.findall(doc["text"])
        n = max(1, math.ceil(len(words) / chunk_words))
        size = math.ceil(len(words) / n)
        for k in range(n):
            chunk_id = doc_id if n == 1 else f"{doc_id}#{k}"
            chunks[chunk_id] = {"title": doc["title"], "text": " ".join(words[k * size:(k + 1) * size])}
            parent[chunk_id] = doc_id
    return chunks, parent
