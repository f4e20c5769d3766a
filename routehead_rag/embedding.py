"""The query embedding a router reads: the frozen LLM's hidden states of the query alone.

Hidden state ``0`` is the token embeddings, ``l`` (``1 .. n_layers - 1``) the output of layer ``l - 1``, and
``n_layers`` the last layer's output after the final norm, as ``output_hidden_states`` numbers them. Each is
pooled over the query's tokens two ways: the mean and the last token.
"""

from __future__ import annotations

from collections.abc import Collection

import torch

from .backbone import Backbone, decoder_of
from .capture import StopForward, capturing
from .tokens import encode


@torch.inference_mode()
def query_embedding(backbone: Backbone, query: str, layers: Collection[int] | None = None) -> torch.Tensor:
    """Hidden states of ``"Query: {query}"``, (mean, last token) pooled: ``[n_layers + 1, 2, hidden]`` float32.

    ``layers``: the hidden states wanted (default: all); the others are NaN, and the forward stops once the
    deepest wanted one is known (the last one, after the final norm, needs the whole forward). The model must
    have the capture installed (:func:`routehead_rag.capture.install`).
    """
    n_layers = backbone.n_layers
    wanted = set(range(n_layers + 1)) if layers is None else set(layers)
    if not wanted or not wanted <= set(range(n_layers + 1)):
        raise ValueError(f"hidden-state layers must be within 0..{n_layers} for {backbone.name}, not {sorted(wanted)}.")
    ids = encode(backbone.engine_tokenizer, f"Query: {query}", user=True)
    input_ids = torch.tensor([ids], device=backbone.model.get_input_embeddings().weight.device)
    decoder = decoder_of(backbone.model)
    if n_layers in wanted:
        hidden = decoder(input_ids=input_ids, output_hidden_states=True).hidden_states  # n_layers + 1 of [1, T, hidden]
        states = {layer: hidden[layer] for layer in wanted}
    else:
        states = _states_before(decoder, input_ids, sorted(wanted))
    pooled = {layer: torch.stack([h[0].mean(0), h[0, -1]]).float().cpu() for layer, h in states.items()}  # [2, hidden]
    out = torch.full((n_layers + 1, *next(iter(pooled.values())).shape), float("nan"))
    for layer, value in pooled.items():
        out[layer] = value
    return out


def _states_before(decoder: torch.nn.Module, input_ids: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
    """The input of decoder layer ``l`` (= hidden state ``l``) for each of ``layers`` (all below ``n_layers``),
    ``{l: [1, T, hidden]}``; the forward stops at the deepest."""
    with capturing(frozenset(), None, inputs=frozenset(layers)) as capture:
        try:
            decoder(input_ids=input_ids)
        except StopForward:
            pass
    return capture.hidden
