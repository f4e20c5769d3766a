"""Windows' forward passes: document prefixes once, then the query and the N/A suffixes on their KV cache.

Several windows run as one padded batch. Each row is right-padded: the prefix's real tokens keep positions
``0 .. P - 1`` (so the document spans need no shifting), padding is masked out of every key, and the suffix
continues at position ``P``. A batch of one window has no padding and runs with no mask at all.

A prompt in the block layout (:class:`routehead_rag.prompt.Prompt` with ``blocks``) runs its prefix with its own
position ids and a 4D mask in which each document's block sees the shared head and itself only; its suffix starts at
``Prompt.suffix_start`` and sees every prefix token, also in a model's sliding-window layers (a 4D mask replaces the
model's own: by cache index, its window would reach only the blocks laid out last, putting the input order back;
by position, every block is within a window longer than a block and the suffix). With ``ape=(temperature, scale)``
the suffix rows attend to the documents' blocks as APE has them (:class:`routehead_rag.capture.Parallel`), in every
layer.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache

from .backbone import Backbone, decoder_of
from .capture import Capture, Parallel, StopForward, capturing
from .prompt import Prompt
from .scoring import token_diffs


def _padded(rows: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``ids: [B, T]`` and ``real: [B, T]`` (bool, False on padding)."""
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    real = torch.zeros(len(rows), width, dtype=torch.bool)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        real[b, : len(row)] = True
    return ids.to(device), real.to(device)


def _cache_argument(decoder: torch.nn.Module) -> str:
    """The name a decoder takes its KV cache by: ``cache`` since transformers 5.2x, ``past_key_values`` before (a
    name it does not know would be swallowed by ``**kwargs`` and the cache silently unused)."""
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def _block_mask(blocks: list[list[int]], real: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive ``[B, 1, T, T]`` mask of prefixes in the block layout (no cache before them): a token sees the
    earlier real tokens of the shared head (block 0) and of its own block."""
    width = real.shape[1]
    block = torch.full((len(blocks), width), -1, dtype=torch.long, device=real.device)
    for b, row in enumerate(blocks):
        block[b, :len(row)] = torch.tensor(row, dtype=torch.long)
    causal = torch.ones(width, width, dtype=torch.bool, device=real.device).tril()  # [q, k]
    same = (block[:, None, :] == 0) | (block[:, None, :] == block[:, :, None])  # [B, q, k]
    allowed = causal[None] & same & real[:, None, :]
    zero = torch.zeros((), dtype=dtype, device=real.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)[:, None]


def _suffix_mask(past_real: torch.Tensor, real: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive ``[B, 1, q, n_cached + q]`` mask of suffix rows over a block layout's prefix: every real cached
    key, and the real suffix keys up to the row itself."""
    width = real.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=real.device).tril()  # [q, q]
    allowed = torch.cat([past_real.to(real.device)[:, None, :].expand(-1, width, -1),
                         causal[None] & real[:, None, :]], dim=2)  # [B, q, n_cached + q]
    zero = torch.zeros((), dtype=dtype, device=real.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)[:, None]


def _run(backbone: Backbone, rows: list[list[int]], starts: list[int], cache: DynamicCache, past_real: torch.Tensor,
         layers: frozenset[int], stop_after: int, head_weights: torch.Tensor | None,
         positions: list[list[int] | None] | None = None,
         blocks: list[list[int] | None] | None = None, parallel: Parallel | None = None,
         after_blocks: bool = False) -> tuple[Capture, torch.Tensor]:
    """Forward the ``rows`` (one per window, the ``b``-th starting at position ``starts[b]``, or at the position ids
    ``positions[b]`` where given) on top of ``cache``, up to layer ``stop_after``.

    past_real: ``[B, n_cached]`` bool, which cached keys are real tokens; head_weights: see :class:`Capture`;
    blocks: the rows' blocks in the block layout (a prefix with nothing cached before it; see :func:`_block_mask`);
    parallel: APE's attention for these rows (suffix rows over a block layout's cached prefix); after_blocks: the rows
    are suffixes over a block layout's cached prefix (see :func:`_suffix_mask`).
    Returns the capture (``rows``: ``{layer: [B, heads, n_keys]}``, each row's attention averaged over its real
    query rows, or ``summed: [B, n_keys]``) and the new ``past_real: [B, n_cached + T]``.
    """
    device = backbone.model.get_input_embeddings().weight.device
    ids, real = _padded(rows, device)
    keys_real = torch.cat([past_real.to(device), real], dim=1)
    position_ids = torch.tensor(starts, device=device)[:, None] + torch.arange(ids.shape[1], device=device)[None, :]
    for b, row in enumerate(positions or []):
        if row is not None:
            position_ids[b, :len(row)] = torch.tensor(row, dtype=torch.long, device=device)
    padded = not bool(keys_real.all())
    mask = keys_real.long() if padded else None
    if blocks is not None and any(row is not None for row in blocks):
        mask = _block_mask([row or [0] * len(ids_row) for row, ids_row in zip(blocks, rows)], real,
                           backbone.model.dtype)
    elif after_blocks:
        mask = _suffix_mask(past_real, real, backbone.model.dtype)
    with capturing(layers, stop_after, real if padded else None, head_weights=head_weights,
                   parallel=parallel) as capture:
        try:
            decoder = decoder_of(backbone.model)
            decoder(input_ids=ids, attention_mask=mask, position_ids=position_ids,
                    use_cache=True, **{_cache_argument(decoder): cache})
        except StopForward:
            pass
    return capture, keys_real


def _parallel(prompts: list[Prompt], prefix_real: torch.Tensor, ape: tuple[float, float] | None) -> Parallel | None:
    """APE over the prompts' document blocks (``prefix_real: [B, n_prefix]``), or ``None`` without ``ape``."""
    if ape is None:
        return None
    if any(p.blocks is None for p in prompts):
        raise ValueError("ape=(temperature, scale) is for documents encoded in parallel: pass layout='block'.")
    context = torch.zeros_like(prefix_real, dtype=torch.bool, device="cpu")
    for b, prompt in enumerate(prompts):
        context[b, :len(prompt.blocks)] = torch.tensor(prompt.blocks) > 0
    return Parallel(context=context, temperature=ape[0], scale=ape[1])


def _passes(backbone: Backbone, prompts: list[Prompt], wanted: frozenset[int],
            head_weights: torch.Tensor | None, ape: tuple[float, float] | None = None,
            with_na: bool = True) -> tuple[Capture, Capture | None]:
    """The prefix once, then the query and (``with_na``) the N/A suffix on its cache: their captures (see
    :func:`_run`; the N/A capture is ``None`` without ``with_na``)."""
    deepest = max(wanted)
    cache = DynamicCache()  # plain full-length layers, also for sliding-window models: keys stay aligned with positions
    no_keys = torch.zeros(len(prompts), 0, dtype=torch.bool)
    _, prefix_real = _run(backbone, [p.prefix_ids for p in prompts], [0] * len(prompts), cache, no_keys,
                          frozenset(), deepest, None, [p.positions for p in prompts], [p.blocks for p in prompts])
    parallel = _parallel(prompts, prefix_real, ape)
    blocked = any(p.blocks is not None for p in prompts)
    starts = [p.suffix_start for p in prompts]
    query, with_query = _run(backbone, [p.query_ids for p in prompts], starts, cache, prefix_real, wanted, deepest,
                             head_weights, parallel=parallel, after_blocks=blocked)
    if not with_na:
        return query, None
    cache.crop(prefix_real.shape[1] - with_query.shape[1])  # back to the prefix
    na, _ = _run(backbone, [p.na_ids for p in prompts], starts, cache, prefix_real, wanted, deepest, head_weights,
                 parallel=parallel, after_blocks=blocked)
    return query, na


@torch.inference_mode()
def batch_token_diffs(backbone: Backbone, prompts: list[Prompt], layers: list[list[int]],
                      ape: tuple[float, float] | None = None) -> list[torch.Tensor]:
    """Each prompt's query-minus-N/A attention of every head of its ``layers`` to each prefix token (the prompts
    forwarded as one padded batch): ``[n_layers * n_heads, len(prefix)]`` float32 (:func:`token_diffs`), the rows of
    other layers' heads NaN. ``ape``: APE's (temperature, scale) for the suffix rows (block layout only; see the
    module docstring).

    The model must have the capturing attention installed (:func:`routehead_rag.capture.install`).
    """
    query, na = _passes(backbone, prompts, frozenset().union(*map(frozenset, layers)), None, ape)
    n_heads = backbone.n_heads
    out = []
    for b, (prompt, own) in enumerate(zip(prompts, layers)):
        n_prefix = len(prompt.prefix_ids)
        diff = torch.full((backbone.n_layers * n_heads, n_prefix), float("nan"))
        for layer in set(own):
            diff[layer * n_heads:(layer + 1) * n_heads] = token_diffs(query.rows[layer][b, :, :n_prefix].cpu(),
                                                                      na.rows[layer][b, :, :n_prefix].cpu())
        out.append(diff)
    return out


@torch.inference_mode()
def batch_summed_diffs(backbone: Backbone, prompts: list[Prompt], head_weights: list[torch.Tensor],
                       ape: tuple[float, float] | None = None) -> list[torch.Tensor]:
    """Each prompt's query-minus-N/A attention summed over heads with ``head_weights`` (per prompt ``[n_layers,
    n_heads]``, float64, 0 for a head not used) where the attention is captured: ``[len(prefix)]`` float64, for
    :func:`routehead_rag.scoring.summed_scores`. The forward stops after the deepest layer with a weight. ``ape``: as in
    :func:`batch_token_diffs`."""
    weights = torch.stack(head_weights).double()  # [B, n_layers, n_heads]
    wanted = frozenset(torch.nonzero(weights.abs().sum(dim=(0, 2))).flatten().tolist())
    query, na = _passes(backbone, prompts, wanted, weights, ape)
    return [(query.summed[b, :len(p.prefix_ids)] - na.summed[b, :len(p.prefix_ids)]).cpu()
            for b, p in enumerate(prompts)]


def layer_rows(backbone: Backbone, prompts: list[Prompt], layer: int,
               with_na: bool = True) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Each prompt's query rows' and (``with_na``) N/A rows' attention at ``layer`` to its prefix, ``([heads,
    len(prefix)], [heads, len(prefix)] | None)``, the forward stopping after ``layer``. Differentiable: under
    ``torch.enable_grad`` the trained adapter's loss backpropagates through it (:mod:`routehead_rag.adapter`)."""
    query, na = _passes(backbone, prompts, frozenset({layer}), None, with_na=with_na)
    return [(query.rows[layer][b, :, :len(p.prefix_ids)],
             None if na is None else na.rows[layer][b, :, :len(p.prefix_ids)]) for b, p in enumerate(prompts)]
