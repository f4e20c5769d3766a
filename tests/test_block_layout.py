"""The block layout (BlockRank's, zero-shot): the engine's capture equals eager attention under the same mask and
positions, and the input order cannot change a document's score."""

from __future__ import annotations

import pytest
import torch

from families import DOCS, QUERY, reference_prompt
from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.reference import reference_head_scores, reference_summed_scores

def test_block_prompt_layout(default_reranker):
    block = RouteHeadReranker(recipe=Recipe(mode="all", layout="block"))
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
    reranker = RouteHeadReranker(request.getfixturevalue(fixture), Recipe(mode="all", layout="block"), dtype="float32")
    fast = reranker.head_scores(QUERY, DOCS)
    reference = reference_head_scores(reranker.backbone, reference_prompt(reranker))
    assert reference.abs().max() > 1e-3
    torch.testing.assert_close(fast, reference, atol=1e-4, rtol=0)


def test_block_layout_sees_every_block_in_sliding_window_layers(tmp_path, default_reranker):
    """A model whose sliding layers would reach only the blocks laid out last (by cache index) sees every block, as
    the reference's mask has it, so the input order cannot matter there either."""
    from families import load, save_tiny

    folder = save_tiny("gemma3_text", tmp_path, default_reranker.backbone.tokenizer, sliding_window=24,
                       layer_types=["sliding_attention"] * 3 + ["full_attention"])
    reranker = RouteHeadReranker(load(folder), Recipe(mode="all", layout="block"))
    fast = reranker.head_scores(QUERY, DOCS)
    torch.testing.assert_close(fast, reference_head_scores(reranker.backbone, reference_prompt(reranker)),
                               atol=1e-4, rtol=0)
    n_heads = reranker.backbone.n_heads
    assert (fast[: 3 * n_heads].abs() > 0).all()  # sliding heads score every document, the first laid out too
    backward = reranker.head_scores(QUERY, DOCS[::-1]).flip(-1)
    torch.testing.assert_close(backward, fast, atol=1e-5, rtol=0)


def test_block_capture_matches_eager_reference_on_default_model():
    reranker = RouteHeadReranker(recipe=Recipe(mode="all", layout="block"), dtype="float32")
    fast = reranker.head_scores(QUERY, DOCS)
    reference = reference_head_scores(reranker.backbone, reference_prompt(reranker))
    torch.testing.assert_close(fast, reference, atol=1e-4, rtol=0)
    summed = [r.score for r in sorted(reranker.rerank(QUERY, DOCS), key=lambda r: r.index)]
    assert summed == pytest.approx(reference_summed_scores(reranker.backbone, reference_prompt(reranker)), abs=1e-4)


def test_block_scores_do_not_depend_on_the_input_order():
    reranker = RouteHeadReranker(recipe=Recipe(mode="all", layout="block"), dtype="float32")
    forward = {r.index: r.score for r in reranker.rerank(QUERY, DOCS)}
    backward = {len(DOCS) - 1 - r.index: r.score for r in reranker.rerank(QUERY, DOCS[::-1])}
    assert backward == pytest.approx(forward, abs=1e-5)


def _ape_closed_form(logits: torch.Tensor, context: torch.Tensor, temperature: float, scale: float) -> torch.Tensor:
    """APE's attention written out: exp(z / T + (S - 1) * lse_context) on context keys, exp(z) elsewhere, normalized
    by exp(S * lse_context) + exp(lse_other)."""
    lse_context = (logits[..., context] / temperature).logsumexp(dim=-1, keepdim=True)
    lse_other = logits[..., ~context].logsumexp(dim=-1, keepdim=True)
    total = (scale * lse_context).exp() + lse_other.exp()
    numerator = torch.where(context, (logits / temperature + (scale - 1) * lse_context).exp(), logits.exp())
    return numerator / total


def test_ape_probabilities_follow_the_paper():
    from routehead_rag.capture import Parallel, _parallel_probs

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 10)  # [batch, heads, q, k]: 6 cached keys (4 of them documents), 4 query rows
    context = torch.tensor([False, True, True, False, True, True, False, False, False, False])
    parallel = Parallel(context=context[:6].expand(2, 6), temperature=0.5, scale=0.7)
    module = torch.nn.Module()
    probs = _parallel_probs(module, logits, parallel)
    torch.testing.assert_close(probs, _ape_closed_form(logits, context, 0.5, 0.7))
    torch.testing.assert_close(probs.sum(dim=-1), torch.ones(2, 3, 4))
    plain = _parallel_probs(module, logits, Parallel(context=parallel.context, temperature=1.0, scale=1.0))
    torch.testing.assert_close(plain, torch.softmax(logits, dim=-1))
    masked = logits.clone()
    masked[..., 2] = float("-inf")  # a masked context key gets nothing, and nothing turns NaN
    assert torch.all(_parallel_probs(module, masked, parallel)[..., 2] == 0)


def test_ape_options_are_checked():
    with pytest.raises(ValueError, match="layout='block'"):
        RouteHeadReranker(recipe=Recipe(mode="all", ape=(0.5, 0.5)))
    with pytest.raises(ValueError, match="two positive numbers"):
        RouteHeadReranker(recipe=Recipe(mode="all", layout="block", ape=(0.5, 0)))
    plain = RouteHeadReranker(recipe=Recipe(mode="all", layout="block", ape=(1, 1)))
    assert plain.settings.ape is None  # plain attention: the same cache as no APE
    sharp = RouteHeadReranker(recipe=Recipe(mode="all", layout="block", ape=(0.5, 0.5)))
    assert sharp.cache_key() != plain.cache_key()


def test_ape_changes_the_scores_and_keeps_them_free_of_the_order():
    block = RouteHeadReranker(recipe=Recipe(mode="all", layout="block"), dtype="float32")
    sharp = RouteHeadReranker(recipe=Recipe(mode="all", layout="block", ape=(0.5, 0.5)), dtype="float32")
    plain = {r.index: r.score for r in block.rerank(QUERY, DOCS)}
    forward = {r.index: r.score for r in sharp.rerank(QUERY, DOCS)}
    backward = {len(DOCS) - 1 - r.index: r.score for r in sharp.rerank(QUERY, DOCS[::-1])}
    assert backward == pytest.approx(forward, abs=1e-5)
    assert max(abs(forward[i] - plain[i]) for i in plain) > 1e-2
    cached = sharp.token_diffs(QUERY, DOCS).summed()  # what the feature cache keeps, summed over every head
    assert cached.tolist() == pytest.approx([forward[i] for i in range(len(DOCS))], abs=1e-4)
