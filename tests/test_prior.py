"""The first stage as evidence (scoring.with_prior): it reorders the list, but never overturns a clear attention
winner, wherever in the input the winner was given."""

from __future__ import annotations

import pytest
import torch

from routehead_rag.scoring import CLEAR_LEAD, rank, rank_prior, rank_summed, standardize, with_prior


def test_a_clear_winner_stays_first_wherever_it_was_given():
    attention = torch.tensor([0.0, 0.1, -0.1, 0.05, 3.0], dtype=torch.float64)  # the last document stands out
    fused = with_prior(attention, rank_prior(5), 4.0)  # a first-stage weight that would bury it
    assert int(fused.argmax()) == 4
    unguarded = attention + 4.0 * standardize(rank_prior(5))
    assert int(unguarded.argmax()) == 0
    assert torch.equal(fused[:4], unguarded[:4])  # the rest is fused as before
    assert float(fused[4] - fused[:4].max()) == pytest.approx(float(attention[4] - attention[1]))  # by its lead


def test_without_a_clear_winner_the_prior_decides_near_ties():
    attention = torch.tensor([0.0, 0.1, -0.1, 0.05, 0.12], dtype=torch.float64)
    lead = float(attention.max() - 0.1)
    assert lead < CLEAR_LEAD * float(attention.std(correction=0))
    fused = with_prior(attention, rank_prior(5), 1.0)
    assert torch.equal(fused, attention + standardize(rank_prior(5)))
    assert int(fused.argmax()) == 0
    assert torch.equal(with_prior(attention, rank_prior(5), 0.0), attention)


def test_both_rankings_keep_a_clear_winner_first():
    scores = torch.zeros(3, 5, dtype=torch.float64)
    scores[:, 4] = 5.0
    assert rank(scores, {0: 0.5, 1: 0.5}, rank_prior(5), 4.0).order[0] == 4
    assert rank_summed(scores[0], rank_prior(5), 4.0).order[0] == 4
    assert len(with_prior(torch.tensor([1.0]), rank_prior(1), 2.0)) == 1  # one document: nothing to guard
