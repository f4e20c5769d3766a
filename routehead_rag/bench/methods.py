"""The methods ``routehead bench`` compares, by name (no torch here, so that ``routehead --help`` stays fast)."""

from __future__ import annotations

import argparse

# name -> (mode, aggregation, router: None, "given" (--router, else the shipped one) or "default" (the shipped one)):
# icr and qrhead as published (heads summed, one mask per document), their per-head variants (each head masked
# alone, then z-scored), the router over its per-head scores, the router's heads summed as ICR does, and the router
# shipped with the package, ICR and QRHead re-weighted as ReAttn; bm25 is the first stage's own order.
METHODS: dict[str, tuple[str, str, str | None]] = {
    "bm25": ("", "", None),
    "icr": ("all", "summed", None),
    "icr_per_head": ("all", "per_head", None),
    "qrhead": ("static", "summed", "given"),
    "qrhead_per_head": ("static", "per_head", "given"),
    "routehead": ("routed", "per_head", "given"),
    "routehead_summed": ("routed", "summed", "given"),
    "routehead_default": ("routed", "per_head", "default"),
    "icr_reattn": ("all", "summed", None),
    "qrhead_reattn": ("static", "summed", "given"),
}
# the engine options a method sets beyond its mode (ReAttn's re-weighting of ICR and QRHead)
OPTIONS: dict[str, dict[str, str]] = {"icr_reattn": {"reweighting": "reattn"},
                                      "qrhead_reattn": {"reweighting": "reattn"}}


def ape_argument(text: str) -> tuple[float, float]:
    """``--ape T,S`` as ``(temperature, scale)`` (argparse ``type``)."""
    try:
        temperature, scale = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ape takes TEMPERATURE,SCALE such as 0.8,0.8; got {text!r}") from None
    return temperature, scale
