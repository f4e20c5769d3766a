"""One window's forward passes: document prefix once, then the query and the N/A suffix on its KV cache."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from .backbone import Backbone
from .capture import StopForward, capturing
from .prompt import Prompt
from .scoring import calibrated_scores


def _run(backbone: Backbone, ids: list[int], cache: DynamicCache, layers: frozenset[int], stop_after: int) -> dict[int, torch.Tensor]:
    """Forward ``ids`` on top of ``cache`` up to layer ``stop_after``; the captured ``{layer: [heads, n_keys]}``."""
    decoder = backbone.model.get_decoder()
    input_ids = torch.tensor([ids], device=backbone.model.get_input_embeddings().weight.device)
    with capturing(layers, stop_after) as capture:
        try:
            decoder(input_ids=input_ids, past_key_values=cache, use_cache=True)
        except StopForward:
            pass
    return capture.rows


@torch.inference_mode()
def window_head_scores(backbone: Backbone, prompt: Prompt, layers: list[int]) -> torch.Tensor:
    """Calibrated scores ``[n_layers * n_heads, n_docs]`` for the heads of ``layers``; other rows are NaN.

    The model must have the capturing attention installed (:func:`routehead_rag.capture.install`).
    """
    wanted, deepest = frozenset(layers), max(layers)
    cache = DynamicCache()  # plain full-length layers, also for sliding-window models: keys stay aligned with positions
    _run(backbone, prompt.prefix_ids, cache, frozenset(), deepest)
    n_prefix = len(prompt.prefix_ids)
    att_query = _run(backbone, prompt.query_ids, cache, wanted, deepest)
    cache.crop(-len(prompt.query_ids))
    att_na = _run(backbone, prompt.na_ids, cache, wanted, deepest)

    n_heads = backbone.n_heads
    scores = torch.full((backbone.n_layers * n_heads, len(prompt.doc_spans)), float("nan"), dtype=torch.float64)
    ordered = sorted(wanted)
    q = torch.cat([att_query[layer][:, :n_prefix].cpu() for layer in ordered])  # [len(ordered) * heads, n_prefix]
    na = torch.cat([att_na[layer][:, :n_prefix].cpu() for layer in ordered])
    rows = torch.cat([torch.arange(layer * n_heads, (layer + 1) * n_heads) for layer in ordered])
    scores[rows] = calibrated_scores(q, na, prompt.doc_spans)
    return scores
