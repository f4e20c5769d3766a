"""The methods ``routehead bench`` compares, by name (no torch here, so that ``routehead --help`` stays fast)."""

from __future__ import annotations

import argparse

# name -> (the fields of its routehead_rag.Recipe, router: None, "given" (--router, else the shipped one) or
# "default" (the shipped one)): icr and qrhead as published (heads summed, one mask per document), their per-head
# variants (each head masked alone, then z-scored), the router over its per-head scores, the router's heads summed as
# ICR does, and the router shipped with the package, ICR and QRHead re-weighted as ReAttn; bm25 is the first stage's
# own order (no recipe). Kept as plain dicts, so that no torch is imported here.
METHODS: dict[str, tuple[dict[str, str] | None, str | None]] = {
    "bm25": (None, None),
    "icr": ({"mode": "all", "aggregation": "summed"}, None),
    "icr_per_head": ({"mode": "all", "aggregation": "per_head"}, None),
    "qrhead": ({"mode": "static", "aggregation": "summed"}, "given"),
    "qrhead_per_head": ({"mode": "static", "aggregation": "per_head"}, "given"),
    "routehead": ({"mode": "routed", "aggregation": "per_head"}, "given"),
    "routehead_summed": ({"mode": "routed", "aggregation": "summed"}, "given"),
    "routehead_default": ({"mode": "routed", "aggregation": "per_head"}, "default"),
    "icr_reattn": ({"mode": "all", "aggregation": "summed", "reweighting": "reattn"}, None),
    "qrhead_reattn": ({"mode": "static", "aggregation": "summed", "reweighting": "reattn"}, "given"),
}


def ape_argument(text: str) -> tuple[float, float]:
    """``--ape T,S`` as ``(temperature, scale)`` (argparse ``type``)."""
    try:
        temperature, scale = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ape takes TEMPERATURE,SCALE such as 0.8,0.8; got {text!r}") from None
    return temperature, scale
