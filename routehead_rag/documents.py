"""Documents as users pass them: strings or ``{"title", "text"}`` dicts; validation and reading from files."""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch

DocumentInput = Union[str, Mapping[str, object]]


@dataclass(frozen=True)
class Document:
    """One candidate: its text and an optional title."""

    text: str
    title: str = ""

    @property
    def content(self) -> str:
        """What the model reads: ``title\\ntext``, or the text alone."""
        return f"{self.title}\n{self.text}" if self.title else self.text


def check_text(text: str, name: str) -> str:
    """``text`` if it is valid Unicode (encodable as UTF-8), else a ``ValueError`` naming ``name`` and the first bad
    character: a lone surrogate such as ``"\\ud800"``, which a JSON body can carry as an escape."""
    if not text.isascii():  # O(1) for a str: pure-ASCII text cannot hold a surrogate
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"{name} holds a lone surrogate ({ascii(text[err.start])} at character {err.start}), which "
                             "is not valid Unicode text; send valid UTF-8 (in JSON, a \\ud800-\\udbff escape must be "
                             "followed by a \\udc00-\\udfff one).") from None
    return text


def to_document(doc: DocumentInput, position: int) -> Document:
    """Normalise one user document, or say which one is wrong and how."""
    if isinstance(doc, str):
        return Document(text=check_text(doc, f"documents[{position}]"))
    if isinstance(doc, Mapping):
        text, title = doc.get("text"), doc.get("title") or ""
        if text is None:
            raise TypeError(f"documents[{position}] is a dict without a string 'text' field; give {{'text': str, 'title': str (optional)}}.")
        if not isinstance(text, str):
            raise TypeError(f"documents[{position}]['text'] must be a string, not {type(text).__name__}; give "
                            "{'text': str, 'title': str (optional)}.")
        if not isinstance(title, str):
            raise TypeError(f"documents[{position}]['title'] must be a string, not {type(title).__name__}.")
        return Document(text=check_text(text, f"documents[{position}]['text']"),
                        title=check_text(title, f"documents[{position}]['title']"))
    if doc is None:
        raise TypeError(f"documents[{position}] is None; each document must be a str or a dict with a 'text' field "
                        "(drop the missing ones, or pass '' for an empty document).")
    if isinstance(doc, (bytes, bytearray, memoryview)):
        raise TypeError(f"documents[{position}] is {type(doc).__name__}, not text; decode it first "
                        "(e.g. doc.decode('utf-8')).")
    raise TypeError(f"documents[{position}] is a {type(doc).__name__}; each document must be a str or a dict with a 'text' field.")


def to_documents(docs: Sequence[DocumentInput]) -> list[Document]:
    if docs is None:
        raise TypeError("documents must be a list of strings or {'text', 'title'} dicts, not None.")
    if isinstance(docs, (str, bytes, Mapping)):
        raise TypeError("documents must be a list of strings or {'text', 'title'} dicts, not a single "
                        f"{type(docs).__name__}.")
    if not isinstance(docs, Sequence):
        hint = "; pass list(documents)" if isinstance(docs, Iterable) else ""
        raise TypeError(f"documents must be a list (or other sequence) of strings or {{'text', 'title'}} dicts, not a "
                        f"{type(docs).__name__}{hint}.")
    return [to_document(doc, i) for i, doc in enumerate(docs)]


def check_scores(scores: object, n_docs: int) -> torch.Tensor:
    """First-stage scores as given by a retriever, one finite real number per document: ``[n_docs]`` float64.

    A list (or other sequence) of numbers, numpy's included, or a 1-D numpy array or torch tensor.
    """
    if not isinstance(scores, (Sequence, str, bytes)) and callable(getattr(scores, "tolist", None)):
        scores = scores.tolist()  # a numpy array or torch tensor: a list for 1-D, a bare number for 0-D
    if isinstance(scores, (str, bytes)) or not isinstance(scores, Sequence):
        raise TypeError(f"first_stage_scores must be a list of one number per document ({n_docs}), "
                        f"not {'None' if scores is None else 'a ' + type(scores).__name__}.")
    if len(scores) != n_docs:
        raise ValueError(f"first_stage_scores has {len(scores)} numbers for {n_docs} documents; give one per document.")
    values = []
    for i, score in enumerate(scores):
        if isinstance(score, bool) or not isinstance(score, numbers.Real):
            raise TypeError(f"first_stage_scores[{i}] is {score!r}; each score must be a real number.")
        try:
            value = float(score)
        except OverflowError:  # an int beyond float's range
            value = math.inf
        if not math.isfinite(value):
            raise ValueError(f"first_stage_scores[{i}] is {score!r}; each score must be finite (no NaN or infinity).")
        values.append(value)
    return torch.tensor(values, dtype=torch.float64)


def check_query(query: object) -> str:
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, not {type(query).__name__}.")
    if not query.strip():
        raise ValueError("query is empty or whitespace; pass the question the documents should be ranked for.")
    return check_text(query, "query")


_WORD = re.compile(r"\S+")


def cut_words(text: str, max_words: int | None) -> str:
    """The first ``max_words`` words of ``text``, with its own whitespace kept."""
    if max_words is None:
        return text
    for i, match in enumerate(_WORD.finditer(text)):
        if i == max_words - 1:
            return text[: match.end()]
    return text


_FORMATS = "a .jsonl file of {'text','title'} or a text file with one document per line, saved as UTF-8"


def read_documents(path: str | Path) -> list[Document]:
    """Documents from a ``.jsonl`` file (``{"text", "title"?}`` per line) or plain text (one per line).

    Raises ``FileNotFoundError``/``IsADirectoryError``/``ValueError`` naming the file (and line) at fault: missing, a
    folder, not UTF-8 text, no documents, or a line that is not a document.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; pass a file in it: {_FORMATS}.")
    if not path.exists():  # a pipe (--docs <(...)) exists and is read like a file
        raise FileNotFoundError(f"{path} does not exist; pass {_FORMATS}.")
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start}); "
                         f"pass {_FORMATS}.") from None
    if "\0" in content:
        raise ValueError(f"{path} holds NUL bytes, so it is a binary file, not text; pass {_FORMATS}.")
    content = content.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")  # BOM; universal newlines
    # only "\n" ends a line: str.splitlines would also split at "\x0c", "\x85", "\u2028", ... inside a document
    # or inside a JSON string
    lines = [(number, line) for number, line in enumerate(content.split("\n"), 1) if line.strip()]
    if not lines:
        raise ValueError(f"{path} has no documents (it is empty or blank); pass {_FORMATS}.")
    if path.suffix.lower() != ".jsonl":
        return [Document(text=line) for _, line in lines]
    docs = []
    for number, line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number} is not valid JSON ({err.msg}).") from None
        try:
            docs.append(to_document(record, len(docs)))
        except (TypeError, ValueError) as err:
            raise type(err)(f"{path}:{number}: {err}") from None
    return docs
