"""Which heads score a query: all of them (ICR), a fixed list (QRHead-style), or a router's pick.

A head is numbered ``layer * n_heads + head``, the row of the ``[n_layers * n_heads, n_docs]``
score matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from .backbone import Backbone

Mode = Literal["all", "static", "routed"]
MODES: tuple[str, ...] = ("all", "static", "routed")


@runtime_checkable
class HeadRouter(Protocol):
    """Picks the heads for one query before the prompt's forward pass (so it can stop early)."""

    def select(self, query: str, backbone: Backbone) -> Sequence[int]:
        """Head indices (``layer * n_heads + head``) to aggregate for ``query``."""
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


def layers_of(heads: Sequence[int], n_heads: int) -> list[int]:
    """The layers that hold ``heads``, ascending."""
    return sorted({h // n_heads for h in heads})
