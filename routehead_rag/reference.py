"""The slow, obviously-correct path: eager attention with ``output_attentions=True``.

Two full forwards of the whole model (query prompt, then N/A prompt), every layer's full
``[heads, seq, seq]`` attention materialised. Used by the tests and the speed benchmark as the
oracle that the fast capture must match.
"""

from __future__ import annotations

import torch

from .backbone import Backbone
from .prompt import Prompt
from .scoring import calibrated_scores


def _query_rows(backbone: Backbone, prefix: list[int], suffix: list[int]) -> torch.Tensor:
    """Mean attention of the suffix rows to the prefix keys, all layers: ``[n_layers * n_heads, len(prefix)]``."""
    ids = torch.tensor([prefix + suffix], device=backbone.device)
    out = backbone.model(input_ids=ids, output_attentions=True)
    n = len(prefix)
    return torch.cat([att[0, :, n:, :n].float().mean(dim=1).cpu() for att in out.attentions])


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
