"""Capture the query rows' attention inside the model's own attention function.

The model keeps running its fast kernel (SDPA, flash); alongside it, for the layers that are
asked for, we recompute softmax(q·kᵀ) for the *current forward's* query rows only, so nothing
of size ``[heads, seq, seq]`` is ever made. Once the deepest needed layer has run, the forward
is stopped by an exception: the layers above it, the final norm and the LM head never run.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS


class StopForward(Exception):
    """Raised after the deepest layer that the capture needs."""


@dataclass
class Capture:
    """What one forward should capture, and what it captured.

    ``layers``: layer indices whose attention rows are kept; ``stop_after``: the layer after which
    the forward stops (``None`` runs all layers). ``rows[layer]``: ``[heads, n_keys]``, the
    attention of the forward's query rows to every key position, averaged over the rows.
    """

    layers: frozenset[int]
    stop_after: int | None
    rows: dict[int, torch.Tensor] = field(default_factory=dict)


_ACTIVE: contextvars.ContextVar[Capture | None] = contextvars.ContextVar("routehead_capture", default=None)


def _row_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                   attention_mask: torch.Tensor | None, scaling: float | None, softcap: float | None) -> torch.Tensor:
    """Attention probabilities of all query rows, averaged over rows: ``[heads, n_keys]`` (batch 0).

    query: ``[1, heads, q, d]``; key: ``[1, kv_heads, k, d]``, the key of the whole sequence
    (cache included), so the query rows sit at positions ``k - q .. k - 1``.
    """
    q_len, k_len = query.shape[2], key.shape[2]
    groups = query.shape[1] // key.shape[1]
    key = key[0].repeat_interleave(groups, dim=0).float()  # [heads, k, d]
    logits = torch.matmul(query[0].float(), key.transpose(1, 2))  # [heads, q, k]
    logits = logits * (scaling if scaling is not None else query.shape[-1] ** -0.5)
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    if attention_mask is None:
        positions = torch.arange(k_len, device=query.device)
        allowed = positions[None, :] <= (positions[k_len - q_len:, None])  # [q, k] causal
        logits = logits.masked_fill(~allowed, float("-inf"))
    elif attention_mask.dtype == torch.bool:
        logits = logits.masked_fill(~attention_mask[0, :, -q_len:, :k_len], float("-inf"))
    else:
        logits = logits + attention_mask[0, :, -q_len:, :k_len].float()
    return torch.softmax(logits, dim=-1).mean(dim=1)  # [heads, k]


def _make_capturing(base_name: str):
    base = ALL_ATTENTION_FUNCTIONS[base_name]

    def capturing_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
        output = base(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
        capture = _ACTIVE.get()
        if capture is not None:
            layer = module.layer_idx
            if layer in capture.layers:
                capture.rows[layer] = _row_attention(module, query, key, attention_mask, scaling, kwargs.get("softcap"))
            if capture.stop_after is not None and layer >= capture.stop_after:
                raise StopForward
        return output

    return capturing_attention


def install(model: torch.nn.Module) -> None:
    """Route ``model``'s attention through the capturing wrapper of its current implementation."""
    base_name = model.config._attn_implementation
    if base_name.startswith("routehead_"):
        return
    if base_name not in ALL_ATTENTION_FUNCTIONS:
        raise ValueError(f"attention implementation {base_name!r} cannot be captured; load the model with attn_implementation='sdpa'.")
    name = f"routehead_{base_name}"
    if name not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(name, _make_capturing(base_name))
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base_name])
    model.set_attn_implementation(name)


@contextlib.contextmanager
def capturing(layers: frozenset[int], stop_after: int | None) -> Iterator[Capture]:
    """Within this block, forwards of installed models fill the yielded :class:`Capture`."""
    capture = Capture(layers=layers, stop_after=stop_after)
    token = _ACTIVE.set(capture)
    try:
        yield capture
    finally:
        _ACTIVE.reset(token)
