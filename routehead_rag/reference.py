"""The slow, obviously-correct path: eager attention with ``output_attentions=True``.

Two full forwards of the whole model (query prompt, then N/A prompt), each layer's full
``[heads, seq, seq]`` attention computed by the eager kernel. Only the query rows of each layer's
attention are kept as it is recorded (a hook runs before the recorder), so that memory holds one
layer's matrix at a time rather than all of them. Used by the tests and the speed benchmark as the
oracle that the fast capture must match.

It runs on its own eager copy of the model (made once, for the last backbone asked; it doubles the weights'
memory), so that the shared backbone is never switched to another attention kernel while another caller may be
using it; calls take turns on the copy.
"""

from __future__ import annotations

import copy
import functools
import statistics
import threading
from collections.abc import Sequence

import torch

from .adapter import AdapterConfig, document_scores
from .backbone import Backbone, attention_of, decoder_of
from .prompt import Prompt
from .scoring import calibrated_scores, token_diffs


_TURN = threading.Lock()


@functools.lru_cache(maxsize=1)
def _eager_model(backbone: Backbone) -> torch.nn.Module:
    """A copy of ``backbone``'s model on the eager attention kernel."""
    model = copy.deepcopy(backbone.model)
    model.set_attn_implementation("eager")
    return model


def _layout(prompt: Prompt, suffix: list[int], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Position ids ``[1, T]`` and the additive mask ``[1, 1, T, T]`` of ``prompt``'s prefix followed by ``suffix`` in
    the block layout, written out token by token (``None`` in the sequential layout: plain causal attention). A prefix
    token sees the earlier tokens of the head (block 0) and of its own block; a suffix token sees every prefix token
    and the suffix up to itself."""
    if prompt.blocks is None:
        return None
    n_prefix, total = len(prompt.prefix_ids), len(prompt.prefix_ids) + len(suffix)
    positions = prompt.positions + [prompt.suffix_start + i for i in range(len(suffix))]
    mask = torch.full((1, 1, total, total), torch.finfo(dtype).min, dtype=dtype)
    for q in range(total):
        for k in range(q + 1):
            if q >= n_prefix or prompt.blocks[k] == 0 or prompt.blocks[k] == prompt.blocks[q]:
                mask[0, 0, q, k] = 0
    return torch.tensor([positions]), mask


def _query_rows(model: torch.nn.Module, prompt: Prompt, suffix: list[int]) -> torch.Tensor:
    """Mean attention of the suffix rows to the prefix keys, all layers: ``[n_layers * n_heads, len(prefix)]``."""
    prefix = prompt.prefix_ids

    def keep_query_rows(module, args, output):
        attn_output, weights = output  # weights: [1, heads, seq, seq]
        return attn_output, weights[:, :, -len(suffix):, :].clone()  # a copy: a view would keep the whole matrix alive

    hooks = [attention_of(layer).register_forward_hook(keep_query_rows, prepend=True)
             for layer in decoder_of(model).layers]
    try:
        device = model.get_input_embeddings().weight.device
        ids = torch.tensor([prefix + suffix], device=device)
        layout = _layout(prompt, suffix, model.dtype)
        if layout is None:
            out = model(input_ids=ids, output_attentions=True)
        else:
            positions, mask = layout
            out = model(input_ids=ids, position_ids=positions.to(device), attention_mask=mask.to(device),
                        output_attentions=True)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat([att[0, :, :, : len(prefix)].float().mean(dim=1).cpu() for att in out.attentions])


def _both_rows(backbone: Backbone, prompt: Prompt) -> tuple[torch.Tensor, torch.Tensor]:
    """The query's and the N/A query's :func:`_query_rows`."""
    with _TURN:  # the hooks go on the copy's layers
        model = _eager_model(backbone)
        return _query_rows(model, prompt, prompt.query_ids), _query_rows(model, prompt, prompt.na_ids)


@torch.inference_mode()
def reference_head_scores(backbone: Backbone, prompt: Prompt) -> torch.Tensor:
    """Calibrated per-head scores ``[n_layers * n_heads, n_docs]`` from eager attention."""
    att_query, att_na = _both_rows(backbone, prompt)
    return calibrated_scores(token_diffs(att_query, att_na), prompt.doc_spans)


@torch.inference_mode()
def reference_summed_scores(backbone: Backbone, prompt: Prompt, heads: Sequence[int] | None = None) -> list[float]:
    """ICR's document scores (``heads`` ``None``: every head), or QRHead's over ``heads``, from eager attention and
    written out from the published definition with Python's ``statistics``: per prompt token, the query rows'
    attention summed over the heads, minus the same for the "N/A" query; per document, over its ``[i] `` marker and
    text, the tokens above ``mean - 2 * stdev`` (sample standard deviation, strictly above) summed; times the
    window's number of documents, as the engine scales every window."""
    att_query, att_na = _both_rows(backbone, prompt)
    rows = range(att_query.shape[0]) if heads is None else heads
    s_query = [sum(float(att_query[h, t]) for h in rows) for t in range(att_query.shape[1])]
    s_na = [sum(float(att_na[h, t]) for h in rows) for t in range(att_na.shape[1])]
    scores = []
    for start, end in prompt.marked_spans:
        c = [s_query[t] - s_na[t] for t in range(start, end)]
        kept = c if len(c) < 2 else [x for x in c if x > statistics.fmean(c) - 2 * statistics.stdev(c)]
        scores.append(sum(kept) * len(prompt.marked_spans))
    return scores


def reference_adapter_scores(backbone: Backbone, prompt: Prompt, config: AdapterConfig) -> torch.Tensor:
    """An adapter's document scores ``[n_docs]`` (:func:`routehead_rag.adapter.document_scores`) from eager attention
    of ``backbone`` (the adapter merged into it), the whole model run."""
    query, na = _both_rows(backbone, prompt)
    rows = slice(config.layer * backbone.n_heads, (config.layer + 1) * backbone.n_heads)
    return document_scores(query[rows], na[rows], prompt.marked_spans, config)
