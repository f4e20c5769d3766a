"""Capture the query rows' attention inside the model's own attention function.

The model keeps running its fast kernel (SDPA, flash); alongside it, for the layers that are
asked for, we recompute softmax(q·kᵀ) for the *current forward's* query rows only, so nothing
of size ``[heads, seq, seq]`` is ever made. Once the deepest needed layer has run, the forward
is stopped by an exception: the layers above it, the final norm and the LM head never run.

A capture with :class:`Parallel` (APE, for the block layout's suffix) changes the attention itself: the wrapper then
computes those rows' attention and output in every layer, and captures that.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .backbone import check_architecture, decoder_of


class StopForward(Exception):
    """Raised after the deepest layer that the capture needs."""


@dataclass(frozen=True)
class Parallel:
    """APE's attention for the query rows over documents encoded in parallel (Yang et al., ICLR 2025, "Adaptive
    Parallel Encoding"). ``context``: ``[batch, n_cached]`` bool, the cached keys of the parallel documents (the
    shared head and the query rows' own keys are not context); ``temperature`` divides the logits to context keys;
    ``scale`` multiplies the context's log-sum-exp before the context and the rest share the query row's attention.
    """

    context: torch.Tensor
    temperature: float
    scale: float


@dataclass
class Capture:
    """What one forward should capture, and what it captured.

    ``layers``: layer indices whose attention rows are kept; ``stop_after``: the layer after which
    the forward stops (``None`` runs all layers); ``real_rows``: ``[batch, q]`` bool, the query rows that are
    not padding (``None``: all are). ``rows[layer]``: ``[batch, heads, n_keys]``, the attention of the
    forward's query rows to every key position, averaged over the real rows. ``inputs``: decoder layers whose
    input hidden states are kept, ``hidden[layer]``: ``[batch, q, hidden]``; the forward stops at the input of
    the deepest of them when no attention layer is asked for. ``head_weights``: ``[batch, n_layers, n_heads]``
    (float64) to sum the heads where they are captured: then ``rows`` stays empty and ``summed: [batch, n_keys]``
    (float64) adds up each layer's rows weighted by head, so that no more than one layer's ``[heads, n_keys]`` is
    held at a time. ``parallel``: the forward's rows attend as APE has them (:class:`Parallel`), in every layer; the
    captured rows are that attention.
    """

    layers: frozenset[int]
    stop_after: int | None
    real_rows: torch.Tensor | None = None
    rows: dict[int, torch.Tensor] = field(default_factory=dict)
    inputs: frozenset[int] = frozenset()
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)
    head_weights: torch.Tensor | None = None
    summed: torch.Tensor | None = None
    parallel: Parallel | None = None

    def keep(self, layer: int, rows: torch.Tensor) -> None:
        """Keep one layer's ``rows: [batch, heads, n_keys]``, or add them to :attr:`summed`."""
        if self.head_weights is None:
            self.rows[layer] = rows
            return
        weights = self.head_weights[:, layer].to(rows.device)  # [batch, heads]
        layer_sum = torch.einsum("bhk,bh->bk", rows.double(), weights)
        self.summed = layer_sum if self.summed is None else self.summed + layer_sum


_ACTIVE: contextvars.ContextVar[Capture | None] = contextvars.ContextVar("routehead_capture", default=None)


def _logits(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None,
            scaling: float | None, softcap: float | None) -> torch.Tensor:
    """The query rows' masked attention logits, ``[batch, heads, q, k]`` float32 (-inf where masked).

    query: ``[batch, heads, q, d]``; key: ``[batch, kv_heads, k, d]``, the key of the whole sequence
    (cache included), so the query rows sit at positions ``k - q .. k - 1``; attention_mask: ``None``
    (causal) or ``[batch, 1, q, k]`` as the model's mask function made it.
    """
    q_len, k_len = query.shape[2], key.shape[2]
    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1).float()  # [batch, heads, k, d]
    logits = torch.matmul(query.float(), key.transpose(2, 3))  # [batch, heads, q, k]
    logits = logits * (scaling if scaling is not None else query.shape[-1] ** -0.5)
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    if attention_mask is None:
        positions = torch.arange(k_len, device=query.device)
        allowed = positions[None, :] <= (positions[k_len - q_len:, None])  # [q, k] causal
        return logits.masked_fill(~allowed, float("-inf"))
    if attention_mask.dtype == torch.bool:
        return logits.masked_fill(~attention_mask[:, :, -q_len:, :k_len], float("-inf"))
    return logits + attention_mask[:, :, -q_len:, :k_len].float()


def _sink(module: torch.nn.Module, logits: torch.Tensor) -> torch.Tensor | None:
    """``[batch, heads, q, 1]``: the learned logit per head that takes a share of the softmax, where the family has
    one (``module.sinks``), else ``None``."""
    sinks = getattr(module, "sinks", None)
    return None if sinks is None else sinks.float().reshape(1, -1, 1, 1).expand(*logits.shape[:3], 1)


def _probs(module: torch.nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """softmax over the keys (and the sink, whose share is dropped): ``[batch, heads, q, k]``."""
    sink = _sink(module, logits)
    if sink is None:
        return torch.softmax(logits, dim=-1)
    return torch.softmax(torch.cat([logits, sink], dim=-1), dim=-1)[..., :-1]


def _parallel_probs(module: torch.nn.Module, logits: torch.Tensor, parallel: Parallel) -> torch.Tensor:
    """APE's attention probabilities, ``[batch, heads, q, k]``: within the context keys softmax(logits / T), within
    the others (and the sink) the plain softmax, the two parts sharing each row as softmax([S * lse_context,
    lse_other]) of their log-sum-exps. T = S = 1 is the plain softmax."""
    context = torch.zeros(logits.shape[0], logits.shape[-1], dtype=torch.bool, device=logits.device)
    context[:, :parallel.context.shape[1]] = parallel.context.to(logits.device)
    context = context[:, None, None, :]  # [batch, 1, 1, k]
    inside = logits.masked_fill(~context, float("-inf")) / parallel.temperature
    outside = logits.masked_fill(context, float("-inf"))
    sink = _sink(module, logits)
    if sink is not None:
        outside = torch.cat([outside, sink], dim=-1)
    lse_inside, lse_outside = inside.logsumexp(dim=-1, keepdim=True), outside.logsumexp(dim=-1, keepdim=True)
    share = torch.softmax(torch.cat([parallel.scale * lse_inside, lse_outside], dim=-1), dim=-1)  # [b, h, q, 2]
    within_inside = (inside - lse_inside).exp().nan_to_num(0.0)
    within_outside = (outside - lse_outside).exp().nan_to_num(0.0)[..., :logits.shape[-1]]
    return within_inside * share[..., :1] + within_outside * share[..., 1:]


def _row_mean(probs: torch.Tensor, real_rows: torch.Tensor | None) -> torch.Tensor:
    """``probs: [batch, heads, q, k]`` averaged over the real query rows (``real_rows: [batch, q]`` or ``None``: all
    are): ``[batch, heads, k]``."""
    if real_rows is None:
        return probs.mean(dim=2)
    weights = real_rows.to(probs.dtype) / real_rows.sum(dim=1, keepdim=True)  # [batch, q], each row summing to 1
    return torch.einsum("bhqk,bq->bhk", probs.nan_to_num(0.0), weights)


def _eager(module, *args, **kwargs):
    """The eager attention function of ``module``'s own modeling file (each family writes its own)."""
    return sys.modules[type(module).__module__].eager_attention_forward(module, *args, **kwargs)


def _make_capturing(base_name: str):
    base = _eager if base_name == "eager" else ALL_ATTENTION_FUNCTIONS[base_name]

    def capturing_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
        capture = _ACTIVE.get()
        if capture is not None and capture.parallel is not None:
            logits = _logits(module, query, key, attention_mask, scaling, kwargs.get("softcap"))
            probs = _parallel_probs(module, logits, capture.parallel)  # [batch, heads, q, k]
            values = value.repeat_interleave(query.shape[1] // value.shape[1], dim=1).float()  # [batch, heads, k, d]
            output = (torch.matmul(probs, values).transpose(1, 2).contiguous().to(query.dtype), None)
        else:
            output = base(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
            probs = None
        if capture is not None:
            layer = module.layer_idx
            if layer in capture.layers:
                if probs is None:
                    probs = _probs(module, _logits(module, query, key, attention_mask, scaling, kwargs.get("softcap")))
                capture.keep(layer, _row_mean(probs, capture.real_rows))
            if capture.stop_after is not None and layer >= capture.stop_after:
                raise StopForward
        return output

    return capturing_attention


def _keep_input(layer: int):
    def hook(module, args, kwargs):
        capture = _ACTIVE.get()
        if capture is not None and layer in capture.inputs:
            capture.hidden[layer] = args[0] if args else kwargs["hidden_states"]
            if not capture.layers and layer == max(capture.inputs):
                raise StopForward
    return hook


def install(model: torch.nn.Module) -> None:
    """Route ``model``'s attention through the capturing wrapper of its current implementation, and let
    captures keep decoder layers' inputs; a model whose attention cannot be captured exactly is refused
    (``ValueError`` saying why). The model is changed once, here: a capture is per call (a context
    variable), so that threads sharing the model never see each other's."""
    base_name = model.config._attn_implementation
    if base_name.startswith("routehead_"):
        return
    check_architecture(model)
    if base_name != "eager" and base_name not in ALL_ATTENTION_FUNCTIONS:
        raise ValueError(f"attention implementation {base_name!r} cannot be captured; load the model with attn_implementation='sdpa'.")
    name = f"routehead_{base_name}"
    if name not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(name, _make_capturing(base_name))
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base_name])
    for i, layer in enumerate(decoder_of(model).layers):
        layer.register_forward_pre_hook(_keep_input(i), with_kwargs=True)
    model.set_attn_implementation(name)
    _check_captured(model)


def _check_captured(model: torch.nn.Module) -> None:
    """Run four tokens through the first layer and refuse a model whose attention bypassed the capture (a family
    that computes attention in its own code rather than through transformers' attention interface)."""
    ids = torch.zeros(1, 4, dtype=torch.long, device=model.get_input_embeddings().weight.device)
    with torch.inference_mode(), capturing(frozenset({0}), stop_after=0) as capture:
        try:
            decoder_of(model)(input_ids=ids)
        except StopForward:
            pass
    if 0 not in capture.rows:
        raise ValueError(f"{type(model).__name__} computes attention in its own code rather than through "
                         "transformers' attention interface, so its heads cannot be captured; pick a model of a "
                         "current family (Llama, Qwen, Mistral, Gemma, Phi, OLMo, ...).")


@contextlib.contextmanager
def capturing(layers: frozenset[int], stop_after: int | None, real_rows: torch.Tensor | None = None,
              inputs: frozenset[int] = frozenset(), head_weights: torch.Tensor | None = None,
              parallel: Parallel | None = None) -> Iterator[Capture]:
    """Within this block, forwards of installed models fill the yielded :class:`Capture` (fields: see there)."""
    capture = Capture(layers=layers, stop_after=stop_after, real_rows=real_rows, inputs=inputs,
                      head_weights=head_weights, parallel=parallel)
    token = _ACTIVE.set(capture)
    try:
        yield capture
    finally:
        _ACTIVE.reset(token)
