"""The training-free detectors (routehead_rag.training.selection) on features made by hand: what each rewards."""

from __future__ import annotations

import pytest
import torch

from routehead_rag.features import QueryFeatures
from routehead_rag.scoring import TokenDiffs
from routehead_rag.training.selection import core_heads, core_scores, headrank_heads, headrank_scores


def features(qid: str, head_scores: list[list[float]], gains: list[float]) -> QueryFeatures:
    """A query whose every document is one token, the head's calibrated score on it (so summed = per head)."""
    scores = torch.tensor(head_scores, dtype=torch.float32)  # [H, n_docs]
    n = scores.shape[1]
    diffs = TokenDiffs(values=scores / n, starts=torch.arange(n + 1), markers=torch.zeros(n, dtype=torch.long),
                       scale=torch.full((n,), float(n), dtype=torch.float64))
    return QueryFeatures(qid=qid, head_scores=scores, gains=torch.tensor(gains), ideal_dcg=1.0,
                         embedding=torch.zeros(3, 2, 4), diffs=diffs)


# head 0: all its attention on the relevant document; head 1: spread, slightly favouring it; head 2: against it
QUERIES = [features(f"q{i}", [[4.0, 0.0, 0.0, 0.0], [1.2, 1.0, 1.0, 0.8], [0.0, 2.0, 1.0, 1.0]], [1, 0, 0, 0])
           for i in range(6)]


def test_core_rewards_attention_on_the_relevant_document():
    scores = core_scores(QUERIES, temperature=0.1)
    assert scores[0] > scores[1] > scores[2]
    assert scores[0] == pytest.approx(1 / (1 + 3 * torch.exp(torch.tensor(-10.0)).item()))  # exp(1/0.1) vs 3 exp(0)
    assert 0 < scores.min() and scores.max() <= 1


def test_headrank_rewards_discriminative_low_entropy_heads():
    plain = headrank_scores(QUERIES, entropy_weight=0.0)
    assert plain.tolist() == pytest.approx([1.0, 1.0, 0.0])  # pairwise accuracy on (relevant, non-relevant) pairs
    with_entropy = headrank_scores(QUERIES, entropy_weight=1.0)
    assert with_entropy[0] == pytest.approx(1.0) and with_entropy[1] < 0.1  # head 1 is spread: entropy near 1


def test_detectors_keep_heads_chosen_on_validation():
    for detector in (core_heads, headrank_heads):
        heads, setting, ndcg = detector(QUERIES[:4], QUERIES[4:])
        assert 0 in heads and ndcg == pytest.approx(1.0) and setting


def test_detectors_need_judged_queries():
    with pytest.raises(ValueError, match="both relevant and non-relevant"):
        core_scores([features("x", [[1.0, 2.0]], [0, 0])], 0.1)
