"""ReAttn's re-weighting of ICR's summed attention (Tian, Mo, Zhang, Qi and Nie, "ReAttn: Improving Attention-based
Re-ranking via Attention Re-weighting", arXiv 2602.19969, Findings of EACL 2026), as this project reads it.

The paper's abstract names two steps; its method section and code could not be read offline, so the forms below are
this project's choices (docs/history.md, "The methods of 2025–26", ReAttn):

1. **Cross-document IDF.** Attention on a document token that repeats a query word and recurs across the candidate
   list is lexical matching, not evidence that tells the documents apart; it is scaled by
   ``w(t) = log(1 + N / df(t)) / log(1 + N)`` (``N``: documents in the list, ``df``: how many contain the word),
   1 for a word found in one document, ``log 2 / log(1 + N)`` for one found in all. Every other token keeps 1.
   Words are the query's content words (:func:`routehead_rag.evidence.content_words`: lower-cased runs of letters
   and digits, no stopwords), found in the documents' tokens joined back into words (:func:`word_keys`).
2. **Entropy.** A document whose positive calibrated attention sits on a few tokens is over-concentrated: its
   (positive) score is multiplied by the normalized entropy ``H(p) / log(T)`` of ``p = relu(c) / sum(relu(c))``
   over its ``T`` kept tokens (:func:`routehead_rag.scoring.summed_scores` with ``entropy=True``).

Both apply to the summed aggregation (ICR and QRHead, the methods the paper re-weights).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import torch

from .evidence import WORD, content_words
from .scoring import TokenDiffs

Reweighting = Literal["none", "reattn"]
REWEIGHTINGS: tuple[str, ...] = ("none", "reattn")


def word_keys(tokenizer, ids: Sequence[int]) -> list[str | None]:
    """Each token's word, lower-cased (``None``: in no word): the tokens' pieces are joined back into text (the
    leading-space marks of byte-level and SentencePiece vocabularies read as spaces), split into runs of letters
    and digits, and every token gets the first word its characters fall in. So "Sailors" read as ``S|ail|ors``
    matches "sailors" read as one piece."""
    owner: list[int] = []
    text = []
    for t, piece in enumerate(tokenizer.convert_ids_to_tokens(list(ids))):
        chunk = (piece or "").replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\n").lower()
        text.append(chunk)
        owner.extend([t] * len(chunk))
    keys: list[str | None] = [None] * len(ids)
    for match in WORD.finditer("".join(text)):
        for t in sorted({owner[i] for i in range(match.start(), match.end())}):
            if keys[t] is None:
                keys[t] = match.group()
    return keys


def idf_weights(tokenizer, query: str, docs_ids: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Step 1: per document, ``[len(ids)]`` float64 weights of its tokens (see the module docstring); ``docs_ids``:
    every candidate's tokens as the model reads them, the list the document frequencies are counted over."""
    wanted = content_words(query)
    keys = [word_keys(tokenizer, ids) for ids in docs_ids]
    df: dict[str, int] = {}
    for doc_keys in keys:
        for key in set(doc_keys) & wanted:
            df[key] = df.get(key, 0) + 1
    n = len(docs_ids)
    scale = math.log(1 + n) if n else 1.0
    return [torch.tensor([math.log(1 + n / df[k]) / scale if k in df else 1.0 for k in doc_keys],
                         dtype=torch.float64) for doc_keys in keys]


def span_weights(per_doc: Sequence[torch.Tensor], markers: Sequence[int]) -> torch.Tensor:
    """The weights of marked spans laid one after another, as :class:`routehead_rag.scoring.TokenDiffs` keeps them:
    ``markers[d]`` marker tokens at weight 1, then document ``d``'s weights. Returns ``[n_tokens]`` float64."""
    parts = [torch.cat([torch.ones(int(m), dtype=torch.float64), w]) for w, m in zip(per_doc, markers)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def prefix_weights(n_prefix: int, doc_spans: Sequence[tuple[int, int]], per_doc: Sequence[torch.Tensor]) -> torch.Tensor:
    """The weights of one window's prefix, ``[n_prefix]`` float64: each document's over its span, 1 elsewhere."""
    weights = torch.ones(n_prefix, dtype=torch.float64)
    for (start, end), w in zip(doc_spans, per_doc):
        weights[start:end] = w[: end - start]
    return weights


def attach(diffs: TokenDiffs, tokenizer, query: str, docs_ids: Sequence[Sequence[int]]) -> TokenDiffs:
    """``diffs`` with ReAttn's token weights attached, so that :meth:`TokenDiffs.summed` replays ICR or QRHead
    re-weighted (``docs_ids``: the cached candidates' tokens, in the cached order, as the model read them)."""
    if len(docs_ids) != len(diffs):
        raise ValueError(f"{len(docs_ids)} documents for attention over {len(diffs)}; give the cached candidates.")
    weights = span_weights(idf_weights(tokenizer, query, docs_ids), diffs.markers.tolist())
    if len(weights) != diffs.values.shape[1]:
        raise ValueError("the documents' tokens do not match the cached attention; give them as the model read them "
                         "(the reranker's max_doc_words / max_doc_tokens).")
    return dataclasses.replace(diffs, token_weights=weights)
