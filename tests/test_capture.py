"""The fast capture (SDPA, early stop, KV-reused N/A pass) equals eager attention with output_attentions."""

from __future__ import annotations

import pytest
import torch

import families
from families import QUERY, reference_prompt
from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.reference import reference_head_scores
from routehead_rag.scoring import fuse, rank_prior

DOCS = [*families.DOCS, "Lemons, limes and oranges are citrus fruits grown in warm climates."]


def _reference(reranker: RouteHeadReranker) -> torch.Tensor:
    return reference_head_scores(reranker.backbone, reference_prompt(reranker, DOCS))


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_sp_dir"])
def test_capture_matches_eager_reference_on_tiny_models(fixture, request):
    reranker = RouteHeadReranker(request.getfixturevalue(fixture), Recipe(mode="all"), dtype="float32")
    fast, reference = reranker.head_scores(QUERY, DOCS), _reference(reranker)
    assert fast.shape == (4 * 4, len(DOCS))
    assert reference.abs().max() > 1e-3  # the comparison is not between zeros
    torch.testing.assert_close(fast, reference, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def fp32_reranker() -> RouteHeadReranker:
    """The default model in fp32: the exactness tests check the capture's math, not bf16 rounding."""
    return RouteHeadReranker(recipe=Recipe(mode="all"), dtype="float32")


def test_capture_matches_eager_reference_on_default_model(fp32_reranker):
    fast, reference = fp32_reranker.head_scores(QUERY, DOCS), _reference(fp32_reranker)
    assert fast.shape == (30 * 9, len(DOCS))
    torch.testing.assert_close(fast, reference, atol=1e-4, rtol=0)


def test_static_mode_stops_early_and_scores_only_its_heads(fp32_reranker):
    heads = [2 * 9 + 3, 5 * 9 + 0, 5 * 9 + 8]
    static = RouteHeadReranker(recipe=Recipe(mode="static", heads=heads, aggregation="per_head"), dtype="float32")
    assert static.backbone is fp32_reranker.backbone  # loaded once, shared
    calls = []
    hooks = [layer.register_forward_hook(lambda *_, i=i: calls.append(i))
             for i, layer in enumerate(static.backbone.model.get_decoder().layers)]
    try:
        results = static.rerank(QUERY, DOCS)
    finally:
        for hook in hooks:
            hook.remove()
    assert max(calls) == 4  # layer 5's attention raised StopForward before its layer finished
    expected = fuse(_reference(fp32_reranker), dict.fromkeys(heads, 1 / len(heads)), rank_prior(len(DOCS)), 0.0)
    got = torch.tensor([r.score for r in sorted(results, key=lambda r: r.index)], dtype=torch.float64)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
