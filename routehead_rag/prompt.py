"""The ICR prompt layout, as token ids with exact spans.

Layout (inside the model's chat template, as one user message)::

    Here are some paragraphs:\\n\\n[1] {title}\\n{text}\\n\\n[2] ...\\n\\n{instruction}\\n\\nQuery: {query}

Layout ``"block"`` (BlockRank's, zero-shot here): the chat head and intro once, then every document as a block of
its own (``[1] `` marker, text, separator) at the same positions right after the head, seeing only the head and
itself; the suffix starts after the longest block and sees everything. No document's position or keys then depend
on the others, so the input order cannot matter (:class:`Prompt`'s ``positions`` and ``blocks``).

The prompt is assembled from separately tokenized pieces, so every document's span holds the
tokens of its own text and nothing else, and the split between the shared prefix (chat head +
documents) and the query suffix is exact. User text is tokenized with
``split_special_tokens=True``: a document containing ``<|im_start|>`` cannot forge a turn, whichever
threads tokenize at once (:mod:`routehead_rag.tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from .documents import Document, cut_words
from .tokens import chat_text, cut_to_tokens, encode

MAX_DOC_WORDS = 150  # words of each document the model reads, as the shipped router was trained and is benchmarked
INSTRUCTION = "Please find information that are relevant to the following query in the paragraphs above."
CALIBRATION_QUERY = "N/A"
_INTRO = "Here are some paragraphs:\n\n"
_SEPARATOR = "\n\n"
_SENTINEL = "\x00ROUTEHEAD_CONTENT\x00"
Layout = Literal["sequential", "block"]
LAYOUTS: tuple[str, ...] = ("sequential", "block")


@dataclass(frozen=True)
class Prompt:
    """One window's prompt.

    ``prefix_ids``: chat head + documents, shared by the query and the N/A pass.
    ``query_ids`` / ``na_ids``: the suffix (instruction … end of chat turn) with the real query and
    with ``"N/A"``; every suffix token is a query row.
    ``doc_spans``: ``[start, end)`` token positions of each document in ``prefix_ids``, in the
    order the documents were given (their place in the prompt is reversed by default).
    ``marked_spans``: the same with the document's ``[i] `` marker in front, the span as ICR counts it.
    ``positions``: each prefix token's position id (``None``: ``0 .. len(prefix) - 1``, the sequential layout);
    ``blocks``: each prefix token's block, 0 for the shared head and ``i + 1`` for the ``i``-th document's block,
    which sees the head and itself only (``None``: every token sees every earlier one).
    """

    prefix_ids: list[int]
    query_ids: list[int]
    na_ids: list[int]
    doc_spans: list[tuple[int, int]]
    marked_spans: list[tuple[int, int]]
    positions: list[int] | None = None
    blocks: list[int] | None = None

    @property
    def suffix_start(self) -> int:
        """The position id of the suffix's first token: right after the prefix, or after its longest block."""
        return len(self.prefix_ids) if self.positions is None else max(self.positions, default=-1) + 1

    def __len__(self) -> int:
        return len(self.prefix_ids) + max(len(self.query_ids), len(self.na_ids))


class PromptBuilder:
    """Turns (query, documents) into :class:`Prompt` s for one tokenizer.

    ``max_doc_words`` / ``max_doc_tokens`` cut each document inside its own span; the query and
    the chat suffix are never cut. ``layout``: ``"sequential"`` (ICR's) or ``"block"`` (see the module docstring;
    ``reverse`` then changes nothing).
    """

    def __init__(self, tokenizer, *, instruction: str = INSTRUCTION, max_doc_words: int | None = MAX_DOC_WORDS,
                 max_doc_tokens: int | None = None, reverse: bool = True, layout: Layout = "sequential") -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}.")
        self.layout = layout
        self.tokenizer = tokenizer
        self.instruction = instruction
        self.max_doc_words = max_doc_words
        self.max_doc_tokens = max_doc_tokens
        self.reverse = reverse

    def _ids(self, text: str, user: bool = False) -> list[int]:
        return encode(self.tokenizer, text, user=user)

    @cached_property
    def _chat(self) -> tuple[list[int], list[int]]:
        """Token ids of the chat template before and after the user message's content."""
        rendered = chat_text(self.tokenizer, [{"role": "user", "content": _SENTINEL}])
        head, tail = rendered.split(_SENTINEL)
        return self._ids(head), self._ids(tail)

    @cached_property
    def _fixed(self) -> dict[str, list[int]]:
        return {"intro": self._ids(_INTRO), "sep": self._ids(_SEPARATOR)}

    def doc_ids(self, doc: Document) -> list[int]:
        """A document's tokens after the word and token budgets."""
        return self.doc_tokens(doc)[0]

    def doc_tokens(self, doc: Document) -> tuple[list[int], bool]:
        """A document's tokens after the word and token budgets, and whether the budgets cut it."""
        text = cut_words(doc.text, self.max_doc_words)
        ids = self._ids(Document(text=text, title=doc.title).content, user=True)
        cut = len(text) < len(doc.text.rstrip())
        if self.max_doc_tokens is not None and len(ids) > self.max_doc_tokens:
            ids, cut = ids[: self.max_doc_tokens], True
        return ids, cut

    def query_within(self, query: str, max_tokens: int | None) -> tuple[str, int]:
        """``query`` cut to its first ``max_tokens`` tokens (``None``: whole), and how many tokens it had uncut."""
        if max_tokens is None:
            return query, len(self._ids(query, user=True))
        return cut_to_tokens(self.tokenizer, query, max_tokens, user=True)

    def marker_ids(self, number: int) -> list[int]:
        return self._ids(f"[{number}] ")

    def suffix_ids(self, query: str) -> list[int]:
        return self._ids(f"{self.instruction}\n\nQuery: {query}", user=True) + self._chat[1]

    def overhead(self, query: str) -> int:
        """Tokens of a prompt with no documents (chat template, intro, instruction, query)."""
        return len(self._chat[0]) + len(self._fixed["intro"]) + max(len(self.suffix_ids(query)), len(self.suffix_ids(CALIBRATION_QUERY)))

    def per_doc_overhead(self, count: int) -> int:
        """Marker and separator tokens around one document, for windows of up to ``count`` documents."""
        return len(self.marker_ids(count)) + len(self._fixed["sep"])

    def build(self, query: str, docs_ids: list[list[int]]) -> Prompt:
        """The prompt for documents already tokenized with :meth:`doc_ids`, given best first."""
        if self.layout == "block":
            return self._blocks(query, docs_ids)
        order = list(range(len(docs_ids)))[::-1] if self.reverse else list(range(len(docs_ids)))
        prefix = [*self._chat[0], *self._fixed["intro"]]
        spans: list[tuple[int, int]] = [(0, 0)] * len(docs_ids)
        marked: list[tuple[int, int]] = [(0, 0)] * len(docs_ids)
        for number, i in enumerate(order, 1):
            marker_start = len(prefix)
            prefix.extend(self.marker_ids(number))
            spans[i] = (len(prefix), len(prefix) + len(docs_ids[i]))
            marked[i] = (marker_start, spans[i][1])
            prefix.extend(docs_ids[i])
            prefix.extend(self._fixed["sep"])
        return Prompt(prefix_ids=prefix, query_ids=self.suffix_ids(query),
                      na_ids=self.suffix_ids(CALIBRATION_QUERY), doc_spans=spans, marked_spans=marked)

    def _blocks(self, query: str, docs_ids: list[list[int]]) -> Prompt:
        """The block layout: every document marked as the first paragraph (it sees no other), at the positions
        right after the head."""
        prefix = [*self._chat[0], *self._fixed["intro"]]
        head = len(prefix)
        positions, blocks = list(range(head)), [0] * head
        spans, marked = [], []
        for i, ids in enumerate(docs_ids):
            block = [*self.marker_ids(1), *ids, *self._fixed["sep"]]
            start = len(prefix)
            marked.append((start, start + len(block) - len(self._fixed["sep"])))
            spans.append((start + len(self.marker_ids(1)), marked[-1][1]))
            prefix.extend(block)
            positions.extend(range(head, head + len(block)))
            blocks.extend([i + 1] * len(block))
        return Prompt(prefix_ids=prefix, query_ids=self.suffix_ids(query), na_ids=self.suffix_ids(CALIBRATION_QUERY),
                      doc_spans=spans, marked_spans=marked, positions=positions, blocks=blocks)
