"""Which heads score a query: all of them (ICR, ``mode="all"``), the same list for every query (QRHead-style,
``mode="static"``), or a router's pick (``mode="routed"``).

A head is numbered ``layer * n_heads + head``, the row of the ``[n_layers * n_heads, n_docs]``
score matrix. A selection is a list of heads (equal weights) or ``{head: weight}``, where a negative
weight counts a head's attention against a document.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

from .backbone import Backbone

Mode = Literal["all", "static", "routed"]
MODES: tuple[str, ...] = ("all", "static", "routed")


@runtime_checkable
class HeadRouter(Protocol):
    """Picks the heads for one query before the prompt's forward pass (so it can stop early)."""

    def select(self, query: str, backbone: Backbone) -> Sequence[int] | Mapping[int, float]:
        """Head indices (``layer * n_heads + head``) to aggregate for ``query``, or ``{index: weight}``."""
        ...


def check_heads(heads: Sequence[int], backbone: Backbone) -> list[int]:
    """Validate head indices against the backbone; sorted and de-duplicated."""
    total = backbone.n_layers * backbone.n_heads
    if len(heads) == 0:
        raise ValueError("the head list is empty; give at least one head index (layer * n_heads + head).")
    bad = [h for h in heads if not isinstance(h, int) or isinstance(h, bool) or not 0 <= h < total]
    if bad:
        raise ValueError(f"head indices {bad[:5]} are out of range for {backbone.name}: "
                         f"{backbone.n_layers} layers x {backbone.n_heads} heads = indices 0..{total - 1}.")
    return sorted(set(heads))


def head_weights(selection: Sequence[int] | Mapping[int, float], backbone: Backbone,
                 normalize: bool = True) -> dict[int, float]:
    """Validated ``{head: weight}``, ascending heads: a list gets equal weights; weights are scaled so that their
    absolute values sum to 1 unless ``normalize`` is false (a trained router's weights, already on the scale its
    fusion weight was fitted for)."""
    heads = check_heads(list(selection), backbone)
    if not isinstance(selection, Mapping):
        return {h: 1.0 / len(heads) for h in heads}
    weights = [float(selection[h]) for h in heads]
    if not all(math.isfinite(w) for w in weights) or not any(weights):
        raise ValueError(f"head weights must be finite numbers, not all zero, not {dict(selection)}.")
    total = sum(map(abs, weights)) if normalize else 1.0
    return {h: w / total for h, w in zip(heads, weights)}


def blend(routed: Sequence[int], shared: Mapping[int, float], shared_fraction: float) -> dict[int, float]:
    """``routed`` heads sharing ``1 - shared_fraction`` equally, ``shared`` ones ``shared_fraction`` in proportion to
    their weights (which may be negative; a head in both gets both, so its absolute weight, and the sum of them
    all, may come out below the shares; no shared heads: the routed ones get everything)."""
    shared_fraction = shared_fraction if shared else 0.0
    total = sum(map(abs, shared.values())) or 1.0
    weights = {h: (1.0 - shared_fraction) / len(routed) for h in routed} if routed and shared_fraction < 1 else {}
    for h, w in shared.items():
        weights[h] = weights.get(h, 0.0) + shared_fraction * w / total
    return {h: weights[h] for h in sorted(weights) if weights[h] != 0}


def layers_of(heads: Sequence[int], n_heads: int) -> list[int]:
    """The layers that hold ``heads``, ascending."""
    return sorted({h // n_heads for h in heads})


def heads_of(layers: Sequence[int], n_heads: int) -> list[int]:
    """Every head of ``layers`` (:func:`layers_of`'s inverse), in layer order."""
    return [layer * n_heads + h for layer in layers for h in range(n_heads)]


def describe(weights: Mapping[int, float], n_heads: int, most: int = 8) -> str:
    """``L<layer>.H<head>`` names, each with its weight where the weights differ, the ``most`` heaviest only:
    ``"L8.H7 0.19, L15.H4 -0.06 (+60 more)"``."""
    equal = len(set(weights.values())) == 1
    shown = sorted(sorted(weights, key=lambda h: -abs(weights[h]))[:most])
    rest = f" (+{len(weights) - len(shown)} more)" if len(weights) > len(shown) else ""
    return ", ".join(f"L{h // n_heads}.H{h % n_heads}" + ("" if equal else f" {weights[h]:.2f}") for h in shown) + rest
