"""The slow, obviously-correct path: eager attention with ``output_attentions=True``.

Two full forwards of the whole model (query prompt, then N/A prompt), each layer's full
``[heads, seq, seq]`` attention computed by the eager kernel. Only the query rows of each layer's
attention are kept as it is recorded (a hook runs before the recorder), so that memory holds one
layer's matrix at a time rather than all of them. Used by the tests and the speed benchmark as the
oracle that the fast capture must match.
"""

from __future__ import annotations

import torch

from .backbone import Backbone
from .prompt import Prompt
from .scoring import calibrated_scores


def _query_rows(backbone: Backbone, prefix: list[int], suffix: list[int]) -> torch.Tensor:
    """Mean attention of the suffix rows to the prefix keys, all layers: ``[n_layers * n_heads, len(prefix)]``."""

    def keep_query_rows(module, args, output):
        attn_output, weights = output  # weights: [1, heads, seq, seq]
        return attn_output, weights[:, :, -len(suffix):, :].clone()  # a copy: a view would keep the whole matrix alive

    layers = backbone.model.get_decoder().layers
    hooks = [layer.self_attn.register_forward_hook(keep_query_rows, prepend=True) for layer in layers]
    try:
        ids = torch.tensor([prefix + suffix], device=backbone.device)
        out = backbone.model(input_ids=ids, output_attentions=True)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat([att[0, :, :, : len(prefix)].float().mean(dim=1).cpu() for att in out.attentions])


@torch.inference_mode()
def reference_head_scores(backbone: Backbone, prompt: Prompt) -> torch.Tensor:
    """Calibrated scores ``[n_layers * n_heads, n_docs]`` from eager attention."""
    model = backbone.model
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        att_query = _query_rows(backbone, prompt.prefix_ids, prompt.query_ids)
        att_na = _query_rows(backbone, prompt.prefix_ids, prompt.na_ids)
    finally:
        model.set_attn_implementation(previous)
    return calibrated_scores(att_query, att_na, prompt.doc_spans)
