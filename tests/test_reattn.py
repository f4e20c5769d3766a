"""ReAttn's re-weighting (``Recipe(reweighting="reattn")``): the IDF and entropy terms, and the engine
against a replay of the cached attention, on the real default model."""

from __future__ import annotations

import math

import pytest
import torch

from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.features import QueryFeatures, replay
from routehead_rag.reweighting import idf_weights, prefix_weights, span_weights, word_keys
from routehead_rag.scoring import normalized_entropy, summed_scores

QUERY = "What causes scurvy in sailors?"
DOCS = ["Scurvy struck sailors on long voyages; sailors ate no fruit.", "Sailors sailed from Portsmouth to Lisbon.",
        "Sailors of the navy rowed boats.", "Vitamin C deficiency causes scurvy."]


def test_a_query_word_in_every_document_weighs_least(default_reranker):
    tokenizer = default_reranker.backbone.engine_tokenizer
    docs_ids = [tokenizer(d, add_special_tokens=False)["input_ids"] for d in DOCS]
    weights = idf_weights(tokenizer, QUERY, docs_ids)
    by_key = {}
    for ids, w in zip(docs_ids, weights):
        assert len(w) == len(ids)
        for key, value in zip(word_keys(tokenizer, ids), w.tolist()):
            by_key.setdefault(key, set()).add(round(value, 9))
    n = len(DOCS)
    assert by_key["sailors"] == {round(math.log(1 + n / 3) / math.log(1 + n), 9)}  # in 3 of the 4, "S|ail|ors" too
    assert by_key["scurvy"] == {round(math.log(1 + n / 2) / math.log(1 + n), 9)}  # in 2
    assert by_key["causes"] == {1.0}  # in 1: as distinctive as a word can be
    assert by_key["portsmouth"] == {1.0}  # not a query word: kept
    assert word_keys(tokenizer, tokenizer("Sailors, ok", add_special_tokens=False)["input_ids"])[-3:] == [
        "sailors", None, "ok"]


def test_entropy_is_one_for_even_mass_and_zero_for_one_token():
    assert normalized_entropy(torch.ones(5)) == pytest.approx(1.0)
    assert normalized_entropy(torch.tensor([0.0, 3.0, 0.0, 0.0])) == pytest.approx(0.0)
    assert normalized_entropy(torch.zeros(3)) == 0.0
    spiky, even = torch.tensor([0.0, 0.0, 0.0, 0.9]), torch.tensor([0.3, 0.3, 0.3, 0.0])
    plain = summed_scores(torch.cat([spiky, even]), [(0, 4), (4, 8)])
    reweighted = summed_scores(torch.cat([spiky, even]), [(0, 4), (4, 8)], torch.ones(8), entropy=True)
    assert plain[0] == pytest.approx(plain[1])  # the same mass
    assert reweighted[0] < reweighted[1]  # but one token carries the first's


def test_span_and_prefix_weights_keep_markers_and_the_rest_at_one():
    per_doc = [torch.tensor([0.5, 1.0]), torch.tensor([0.25])]
    assert span_weights(per_doc, [2, 1]).tolist() == [1.0, 1.0, 0.5, 1.0, 1.0, 0.25]
    assert prefix_weights(8, [(2, 4), (6, 7)], per_doc).tolist() == [1, 1, 0.5, 1.0, 1, 1, 0.25, 1]


def test_the_engine_equals_its_replay_and_differs_from_plain_icr(default_reranker):
    reattn = RouteHeadReranker(recipe=Recipe(mode="all", reweighting="reattn"))
    live = reattn.rerank(QUERY, DOCS)
    diffs = default_reranker.token_diffs(QUERY, DOCS)  # what the feature cache keeps
    features = QueryFeatures(qid="q", head_scores=diffs.per_head().float(), gains=torch.zeros(len(DOCS)),
                             ideal_dcg=0.0, embedding=torch.zeros(1), diffs=diffs)
    replayed = replay(reattn, features, QUERY, DOCS)[0]
    assert replayed.order == [r.index for r in live]
    assert replayed.scores.tolist() == pytest.approx([r.score for r in sorted(live, key=lambda r: r.index)], rel=1e-6)
    plain = [r.score for r in sorted(RouteHeadReranker(recipe=Recipe(mode="all")).rerank(QUERY, DOCS),
                                     key=lambda r: r.index)]
    assert replayed.scores.tolist() != pytest.approx(plain, rel=1e-3)
    # a calibration of plain ICR is not its
    assert reattn.setup() != RouteHeadReranker(recipe=Recipe(mode="all")).setup()
    assert all(0.0 <= r.relevance_score <= 1.0 for r in live)
    with pytest.raises(ValueError, match="pass the candidates' texts"):
        replay(reattn, features, QUERY)


def test_reattn_refuses_the_per_head_aggregation(default_reranker):
    with pytest.raises(ValueError, match="aggregation='summed'"):
        RouteHeadReranker(recipe=Recipe(reweighting="reattn"))  # the default mode is routed, per head
    with pytest.raises(ValueError, match="reweighting must be one of"):
        RouteHeadReranker(recipe=Recipe(mode="all", reweighting="idf"))


def test_document_frequencies_count_the_whole_list_across_windows(default_reranker):
    """A list split into windows (``window_size``) re-weights by the document frequencies of the whole list, live as
    in the replay of its cached attention."""
    small = RouteHeadReranker(recipe=Recipe(mode="all", reweighting="reattn"), window_size=2)
    live = small.rerank(QUERY, DOCS)
    diffs = small.token_diffs(QUERY, DOCS)
    assert diffs.scale.tolist() == [2.0] * len(DOCS)  # two windows of two
    features = QueryFeatures(qid="q", head_scores=diffs.per_head().float(), gains=torch.zeros(len(DOCS)),
                             ideal_dcg=0.0, embedding=torch.zeros(1), diffs=diffs)
    replayed = replay(small, features, QUERY, DOCS)[0]
    assert replayed.scores.tolist() == pytest.approx([r.score for r in sorted(live, key=lambda r: r.index)], rel=1e-6)
