"""Documents as users pass them: strings or ``{"title", "text"}`` dicts; validation and reading from files."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

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


def to_document(doc: DocumentInput, position: int) -> Document:
    """Normalise one user document, or say which one is wrong and how."""
    if isinstance(doc, str):
        return Document(text=doc)
    if isinstance(doc, Mapping):
        text, title = doc.get("text"), doc.get("title") or ""
        if not isinstance(text, str):
            raise TypeError(f"documents[{position}] is a dict without a string 'text' field; give {{'text': str, 'title': str (optional)}}.")
        if not isinstance(title, str):
            raise TypeError(f"documents[{position}]['title'] must be a string, not {type(title).__name__}.")
        return Document(text=text, title=title)
    raise TypeError(f"documents[{position}] is a {type(doc).__name__}; each document must be a str or a dict with a 'text' field.")


def to_documents(docs: Sequence[DocumentInput]) -> list[Document]:
    if isinstance(docs, (str, bytes)) or not isinstance(docs, Sequence):
        raise TypeError("documents must be a list of strings or {'text', 'title'} dicts, not a single "
                        f"{type(docs).__name__}.")
    return [to_document(doc, i) for i, doc in enumerate(docs)]


def check_query(query: object) -> str:
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, not {type(query).__name__}.")
    if not query.strip():
        raise ValueError("query is empty or whitespace; pass the question the documents should be ranked for.")
    return query


_WORD = re.compile(r"\S+")


def cut_words(text: str, max_words: int | None) -> str:
    """The first ``max_words`` words of ``text``, with its own whitespace kept."""
    if max_words is None:
        return text
    for i, match in enumerate(_WORD.finditer(text)):
        if i == max_words - 1:
            return text[: match.end()]
    return text


def read_documents(path: str | Path) -> list[Document]:
    """Documents from a ``.jsonl`` file (``{"text", "title"?}`` per line) or plain text (one per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a .jsonl file of {{'text','title'}} or a text file with one document per line.")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix != ".jsonl":
        return [Document(text=line) for line in lines]
    docs = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number} is not valid JSON ({err.msg}).") from None
        docs.append(to_document(record, number - 1))
    return docs
