"""Selective-ICR's layer window (``Recipe(mode="all", layers=...)``) on the real default model."""

from __future__ import annotations

import pytest
import torch

from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.features import QueryFeatures, replay

DOCS = ["The Eiffel Tower is in Paris.", "Scurvy is a disease caused by a lack of vitamin C.",
        "Rickets comes from a lack of vitamin D."]


def test_window_is_its_layers_heads_summed(default_reranker):
    window = RouteHeadReranker(recipe=Recipe(mode="all", layers=range(6, 16)))
    n_heads = window.backbone.n_heads
    static = RouteHeadReranker(recipe=Recipe(mode="static", heads=[layer * n_heads + h for layer in range(6, 16)
                                                                   for h in range(n_heads)]))
    live = window.rerank("What causes scurvy?", DOCS)
    assert [(r.index, r.score) for r in live] == [(r.index, r.score) for r in static.rerank("What causes scurvy?", DOCS)]
    diffs = default_reranker.token_diffs("What causes scurvy?", DOCS)  # what the feature cache keeps
    features = QueryFeatures(qid="q", head_scores=diffs.per_head().float(), gains=torch.zeros(3), ideal_dcg=0.0,
                             embedding=torch.zeros(1), diffs=diffs)
    replayed = replay(window, features, "What causes scurvy?")[0]
    assert replayed.order == [r.index for r in live]
    assert replayed.scores.tolist() == pytest.approx([r.score for r in sorted(live, key=lambda r: r.index)], rel=1e-6)
    # a calibration of all layers is not its
    assert window.setup() != RouteHeadReranker(recipe=Recipe(mode="all")).setup()


def test_window_refuses_bad_layers(default_reranker):
    with pytest.raises(ValueError, match="layer indices 0..29"):
        RouteHeadReranker(recipe=Recipe(mode="all", layers=[3, 30]))
    with pytest.raises(ValueError, match="layer indices"):
        RouteHeadReranker(recipe=Recipe(mode="all", layers=[]))
    with pytest.raises(ValueError, match="for mode='all'"):
        RouteHeadReranker(recipe=Recipe(mode="routed", layers=[3]))


def test_window_scores_are_icr_over_the_window(default_reranker):
    from routehead_rag.training.selection import best_layer_window, window_scores, windows

    diffs = default_reranker.token_diffs("What causes scurvy?", DOCS)
    n_layers, n_heads = default_reranker.backbone.n_layers, default_reranker.backbone.n_heads
    query = QueryFeatures(qid="q", head_scores=diffs.per_head().float(), gains=torch.tensor([0.0, 1.0, 0.0]),
                          ideal_dcg=1.0, embedding=torch.zeros(1), diffs=diffs)
    spans = [range(0, 30), range(4, 9), range(12, 13)]
    got = window_scores(query, n_layers, spans)
    for row, span in zip(got, spans):
        heads = {layer * n_heads + h: 1.0 for layer in span for h in range(n_heads)}
        assert row.tolist() == pytest.approx(diffs.summed(heads).tolist(), rel=1e-9, abs=1e-12)
    assert len(windows(30, 2)) == 30 * 29 // 2
    window, ndcg = best_layer_window([query], n_layers)
    assert len(window) >= 2 and 0 <= ndcg <= 1
