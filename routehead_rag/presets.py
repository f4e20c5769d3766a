"""Head lists for known models (QRHead's published query-focused retrieval heads for GPU-sized models, and heads
this project detected), matched to a loaded backbone.

The lists are facts with their source (``head_presets.json``: model id, shape, ``[layer, head]`` pairs, 0-based,
and where they were published or how they were found: the top-level ``source``, or a preset's own). A backbone takes a preset when its name (hub id, folder or ``.gguf`` file name)
is the preset's model, optionally followed by a quantization or format tag, *and* its layer and head counts
are the preset's; a name that matches with another shape is refused rather than scored with the wrong heads.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .backbone import Backbone

PRESETS_FILE = Path(__file__).with_name("head_presets.json")


@dataclass(frozen=True)
class HeadPreset:
    """One published list: ``heads`` as indices ``layer * n_heads + head``, in the publication's order."""

    model: str  # the hub id it was published for
    n_layers: int
    n_heads: int
    n_kv_heads: int
    heads: tuple[int, ...]
    source: str  # the publication and the file the list came from


@functools.cache
def presets() -> dict[str, HeadPreset]:
    """Every shipped preset, by model id."""
    data = json.loads(PRESETS_FILE.read_text())
    return {model: HeadPreset(model=model, n_layers=p["n_layers"], n_heads=p["n_heads"], n_kv_heads=p["n_kv_heads"],
                              heads=tuple(layer * p["n_heads"] + head for layer, head in p["heads"]),
                              source=p.get("source", f"{data['source']} File: {p.get('file', '')}"))
            for model, p in data["presets"].items()}


# What may follow a preset's model name in a file or folder name and still be that model: a quantization or format
# tag (``-Q4_K_M.gguf``, ``.bf16``, ``-AWQ``), not a fine-tune's name (``-it``, ``-uncensored``).
_FORMAT_TAG = re.compile(r"[-._](i?q\d|f16|f32|bf16|fp\d|int\d|awq|gptq|gguf|mlx|safetensors)", re.IGNORECASE)


def _names_match(name: str, model: str) -> bool:
    """``name``'s last path part is ``model``'s (case aside), or that followed by a quantization or format tag."""
    given, wanted = Path(name).name.lower(), model.split("/")[-1].lower()
    return given == wanted or (given.startswith(wanted) and _FORMAT_TAG.match(given, len(wanted)) is not None)


def find_preset(backbone: Backbone) -> HeadPreset | None:
    """The preset published for ``backbone``'s model, or ``None``. Raises ``ValueError`` when the name matches a
    preset's model but the shape does not (a different model under that name)."""
    config = backbone.model.config
    names = {backbone.name, str(getattr(config, "_name_or_path", "") or "")} - {""}
    for preset in presets().values():
        if not any(_names_match(name, preset.model) for name in names):
            continue
        shape = (backbone.n_layers, backbone.n_heads, getattr(config, "num_key_value_heads", backbone.n_heads))
        if shape != (preset.n_layers, preset.n_heads, preset.n_kv_heads):
            raise ValueError(
                f"{backbone.name} is named like {preset.model}, whose QRHead heads are for {preset.n_layers} layers x "
                f"{preset.n_heads} heads ({preset.n_kv_heads} KV heads), but it has {shape[0]} layers x {shape[1]} "
                f"heads ({shape[2]} KV heads): pass heads=[...] for this model, or mode='all'.")
        return preset
    return None
