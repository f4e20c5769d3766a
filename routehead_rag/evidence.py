"""Evidence of relevance for the relevance model (:mod:`routehead_rag.calibration`): per document, three numbers.

- ``lexical``: the fraction of the query's content words (lower-cased letters and digits, an English stopword list
  and one-letter words left out) that occur in the words the model reads of the document. A plain fraction, not
  weighted by IDF: an IDF needs document frequencies, and the candidate list's own (the only ones a reranker has)
  would make the number relative to the list again, which is what this evidence is meant to avoid. Absolute: it
  does not change when the other documents change.
- ``attention``: the document's own query-minus-N/A attention, summed over its tokens (``[i] `` marker included) with
  no mask and without the window's document count that the mode's scores are multiplied by, averaged over the heads
  the mode reads (at their weights). Attention is a distribution over the prompt, so this is a share of what the
  query attends to; it still falls where a list grows, but not where the list's other documents change.
- ``standing``: the mode's own score z-scored within the list (0 for a list of one): the relative evidence, which
  ranks well and carries no base rate.

The first stage's score is not used: its scale belongs to each retriever (BM25's grows with the query's length and
the corpus' statistics), so a weight fitted on one does not carry to another.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from .documents import Document, cut_words
from .scoring import standardize

FEATURES: tuple[str, ...] = ("lexical", "attention", "standing")
STOPWORDS = frozenset("""a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have having he
her here hers him his how i if in into is it its itself just me more most my no nor not now of off on once only or
other our ours out over own same she should so some such than that the their theirs them then there these they this
those through to too under until up very was we were what when where which while who whom why will with would you
your yours""".split())
WORD = re.compile(r"[a-z0-9]+")


def content_words(text: str) -> set[str]:
    """The words of ``text`` that count for :func:`lexical_overlap`: lower-cased runs of letters and digits, without
    stopwords and one-letter words."""
    return {w for w in WORD.findall(text.lower()) if len(w) > 1 and w not in STOPWORDS}


def lexical_overlap(query: str, document: Document, max_doc_words: int | None) -> float:
    """The fraction of the query's content words found in the title and the first ``max_doc_words`` words of the
    document (0 for a query without content words)."""
    wanted = content_words(query)
    if not wanted:
        return 0.0
    read = Document(text=cut_words(document.text, max_doc_words), title=document.title).content
    return len(wanted & content_words(read)) / len(wanted)


def document_evidence(query: str, documents: Sequence[Document], attention: torch.Tensor, scores: torch.Tensor,
                      max_doc_words: int | None) -> torch.Tensor:
    """The evidence of one list, ``[n_docs, len(FEATURES)]`` float64, in the order of :data:`FEATURES`.

    attention: ``[n_docs]`` each document's unmasked, unscaled query-minus-N/A attention per head
    (:meth:`routehead_rag.scoring.TokenDiffs.mass`); scores: ``[n_docs]`` the mode's scores.
    """
    lexical = torch.tensor([lexical_overlap(query, d, max_doc_words) for d in documents], dtype=torch.float64)
    return torch.stack([lexical, attention.double(), standardize(scores)], dim=1).reshape(len(documents), len(FEATURES))
