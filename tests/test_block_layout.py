"""The block layout (BlockRank's, zero-shot): the engine's capture equals eager attention under the same mask and
positions, and the input order cannot change a document's score."""

from __future__ import annotations

import pytest
import torch

from families import DOCS, QUERY, reference_prompt
from routehead_rag import RouteHeadReranker
from routehead_rag.reference import reference_head_scores, reference_summed_scores

def test_block_prompt_layout(default_reranker):
    block = RouteHeadReranker(mode="all", layout="block")
    prompt = reference_prompt(block)
    head = prompt.blocks.count(0)
    assert prompt.positions[:head] == list(range(head))
    for i, (start, end) in enumerate(prompt.marked_spans):
        assert set(prompt.blocks[start:end]) == {i + 1}
        assert prompt.positions[start] == head  # every block starts right after the head
    assert prompt.suffix_start == max(prompt.positions) + 1
    assert block.cache_key() != default_reranker.cache_key()
    assert "layout" not in default_reranker.cache_key()  # the sequential layout's keys are those made before it


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_sp_dir"])
def test_block_capture_matches_eager_reference_on_tiny_models(fixture, request):
    reranker = RouteHeadReranker(request.getfixturevalue(fixture), mode="all", dtype="float32", layout="block")
    fast = reranker.head_scores(QUERY, DOCS)
    reference = reference_head_scores(reranker.backbone, reference_prompt(reranker))
    assert reference.abs().max() > 1e-3
    torch.testing.assert_close(fast, reference, atol=1e-4, rtol=0)


def test_block_capture_matches_eager_reference_on_default_model():
    reranker = RouteHeadReranker(mode="all", dtype="float32", layout="block")
    fast = reranker.head_scores(QUERY, DOCS)
    reference = reference_head_scores(reranker.backbone, reference_prompt(reranker))
    torch.testing.assert_close(fast, reference, atol=1e-4, rtol=0)
    summed = [r.score for r in sorted(reranker.rerank(QUERY, DOCS), key=lambda r: r.index)]
    assert summed == pytest.approx(reference_summed_scores(reranker.backbone, reference_prompt(reranker)), abs=1e-4)


def test_block_scores_do_not_depend_on_the_input_order():
    reranker = RouteHeadReranker(mode="all", dtype="float32", layout="block")
    forward = {r.index: r.score for r in reranker.rerank(QUERY, DOCS)}
    backward = {len(DOCS) - 1 - r.index: r.score for r in reranker.rerank(QUERY, DOCS[::-1])}
    assert backward == pytest.approx(forward, abs=1e-5)
