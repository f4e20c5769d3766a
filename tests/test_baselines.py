"""ICR and QRHead as published: the heads' attention summed per token, then one mask per document (sample std,
strictly above), over the span with its ``[i] `` marker; held to an eager implementation of that definition."""

from __future__ import annotations

import statistics

import pytest
import torch

from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.documents import to_documents
from routehead_rag.reference import reference_summed_scores
from routehead_rag.scoring import calibrated_scores, summed_scores
from test_capture import DOCS, QUERY

def _prompt(reranker: RouteHeadReranker):
    return reranker.prompts.build(QUERY, [reranker.prompts.doc_ids(d) for d in to_documents(DOCS)])


def _scores(reranker: RouteHeadReranker) -> torch.Tensor:
    return torch.tensor([r.score for r in sorted(reranker.rerank(QUERY, DOCS), key=lambda r: r.index)], dtype=torch.float64)


def test_one_mask_with_sample_std_strictly_above():
    # population std with >= drops the -0.5 token; sample std with > keeps it: the choice decides the score
    c = [0.0, 0.1, 0.2, 0.0, 0.1, -0.5]
    mean = statistics.fmean(c)
    assert mean - 2 * statistics.pstdev(c) > -0.5 > mean - 2 * statistics.stdev(c)
    padded = torch.tensor([9.0, *c, 9.0], dtype=torch.float64)  # the span sits inside a longer prompt
    assert summed_scores(padded, [(1, 7)]).item() == pytest.approx(sum(c))
    assert calibrated_scores(padded[None], [(1, 7)]).item() == pytest.approx(sum(c) + 0.5)  # the per-head rule
    # strictly above: a span whose tokens are all equal keeps none of them (per head, >=, it keeps them all)
    flat = torch.tensor([0.25, 0.25, 0.25], dtype=torch.float64)
    assert summed_scores(flat, [(0, 3)]).item() == 0.0
    assert calibrated_scores(flat[None], [(0, 3)]).item() == pytest.approx(0.75)


def test_marked_spans_hold_the_marker_then_the_document(default_reranker):
    prompt = _prompt(default_reranker)
    for d, ((start, end), (text_start, text_end)) in enumerate(zip(prompt.marked_spans, prompt.doc_spans)):
        assert end == text_end and start < text_start
        number = len(DOCS) - d  # reversed order: the first document sits next to the query
        assert prompt.prefix_ids[start:text_start] == default_reranker.prompts.marker_ids(number)


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_sp_dir"])
def test_icr_and_qrhead_equal_the_published_definition_on_tiny_models(fixture, request):
    folder = request.getfixturevalue(fixture)
    icr = RouteHeadReranker(folder, Recipe(mode="all"), dtype="float32")
    assert icr.aggregation == "summed"
    reference = reference_summed_scores(icr.backbone, _prompt(icr))
    assert max(map(abs, reference)) > 1e-3  # not a comparison between zeros
    torch.testing.assert_close(_scores(icr), torch.tensor(reference, dtype=torch.float64),
                               atol=1e-6, rtol=1e-6)
    heads = [1, 6, 7, 9]  # layers 0, 1 and 2 of 4: the forward stops after layer 2
    qrhead = RouteHeadReranker(folder, Recipe(mode="static", heads=heads), dtype="float32")
    reference = reference_summed_scores(qrhead.backbone, _prompt(qrhead), heads)
    # QRHead's heads at equal weights 1/len(heads): its published sum, scaled, so the ranking is the same
    torch.testing.assert_close(_scores(qrhead),
                               torch.tensor(reference, dtype=torch.float64) / len(heads), atol=1e-6, rtol=1e-6)


def test_icr_on_the_default_model_equals_the_published_definition(default_reranker):
    icr = RouteHeadReranker(recipe=Recipe(mode="all"), dtype="float32")
    reference = reference_summed_scores(icr.backbone, _prompt(icr))
    torch.testing.assert_close(_scores(icr), torch.tensor(reference, dtype=torch.float64),
                               atol=1e-5, rtol=1e-5)


def test_the_cache_replays_both_aggregations(tiny_llama_dir):
    icr = RouteHeadReranker(tiny_llama_dir, Recipe(mode="all"), dtype="float32")
    per_head = RouteHeadReranker(tiny_llama_dir, Recipe(mode="all", aggregation="per_head"), dtype="float32")
    diffs = icr.token_diffs(QUERY, DOCS)
    torch.testing.assert_close(diffs.summed(), _scores(icr), atol=1e-7, rtol=1e-6)
    assert torch.equal(diffs.per_head().sum(dim=0), _scores(per_head))
    weights = {1: 0.5, 9: -0.25, 14: 0.25}
    routed = RouteHeadReranker(tiny_llama_dir, Recipe(mode="static", heads=[1, 9, 14]), dtype="float32")
    torch.testing.assert_close(diffs.summed(dict.fromkeys(weights, 1 / 3)),
                               _scores(routed), atol=1e-7, rtol=1e-6)


def test_windows_score_each_window_alone(tiny_llama_dir):
    docs = [f"Document {i} tells of lorem ipsum dolor sit amet number {i}." for i in range(10)]
    windowed = RouteHeadReranker(tiny_llama_dir, Recipe(mode="all"), window_size=5, dtype="float32")
    alone = RouteHeadReranker(tiny_llama_dir, Recipe(mode="all"), dtype="float32")
    by_index = {r.index: r.score for r in windowed.rerank("lorem?", docs)}
    second = {r.index + 5: r.score for r in alone.rerank("lorem?", docs[5:])}
    assert [by_index[i] for i in range(5, 10)] == pytest.approx([second[i] for i in range(5, 10)], rel=1e-9)
