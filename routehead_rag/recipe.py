"""The scoring recipe: how a reranker turns attention into document scores, as one typed object.

:class:`Recipe` holds every choice a paper or method makes (mode and heads, aggregation, layer window, the first
stage's weight, layout, APE, re-weighting, a trained adapter); the reranker, the benchmark, the feature cache's key
and the server all take one, so a new method adds a field here and a module of its own, not constructor branches.
:func:`resolve` fills in what depends on the model and the router (the mode, the heads, the aggregation, the first
stage's weight) and checks what only the model can check. :class:`ScoringSettings` is the part that decides the
per-head features the cache keeps (the prompt and the windows).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Literal

from .backbone import Backbone
from .heads import MODES, check_heads
from .presets import HeadPreset, find_preset
from .prompt import LAYOUTS, Layout
from .reweighting import REWEIGHTINGS, Reweighting
from .router import Router, RouterEnsemble
from .scoring import AGGREGATIONS, Aggregation

RecipeMode = Literal["all", "static", "routed", "adapter"]
RECIPE_MODES: tuple[str, ...] = (*MODES, "adapter")


def check_ape(ape: object, layout: str) -> tuple[float, float] | None:
    """A validated APE ``(temperature, scale)`` (both positive numbers) for the block layout, or ``None``."""
    if ape is None:
        return None
    if layout != "block":
        raise ValueError(f"ape=(temperature, scale) re-weights the attention to documents encoded in parallel; pass "
                         f"layout='block' (not {layout!r}).")
    if (not isinstance(ape, Sequence) or len(ape) != 2
            or not all(isinstance(x, numbers.Real) and not isinstance(x, bool) and x > 0 for x in ape)):
        raise ValueError(f"ape must be (temperature, scale), two positive numbers such as (0.8, 0.8); got {ape!r}.")
    return None if tuple(ape) == (1, 1) else (float(ape[0]), float(ape[1]))  # (1, 1): plain attention


def _int_tuple(name: str, value: object) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list of indices, not {value!r}.")
    bad = [x for x in value if not isinstance(x, numbers.Integral) or isinstance(x, bool) or x < 0]
    if not value or bad:
        what = "layer indices, e.g. range(8, 20)" if name == "layers" else "head indices (layer * n_heads + head)"
        raise ValueError(f"{name} must be a non-empty list of {what}; got {bad[:5] or value!r}.")
    return tuple(sorted({int(x) for x in value}))


@dataclass(frozen=True)
class Recipe:
    """How attention becomes document scores (``RouteHeadReranker(recipe=Recipe(...))``).

    mode: ``"routed"`` (a router picks each query's heads: RouteHead), ``"static"`` (the same ``heads`` for every
        query: QRHead), ``"all"`` (every head: ICR), ``"adapter"`` (the trained adapter's own layer and heads);
        ``None``: ``"adapter"`` with an adapter, else ``"routed"`` where there is a router (given, or shipped for the
        default model), else ``"static"`` for a model with published heads, else ``"all"``.
    aggregation: ``"summed"`` (the heads' attention summed per token, one mask per document, as ICR and QRHead
        publish it) or ``"per_head"`` (each head calibrated alone, z-scored, weighted: what the router is trained
        on); ``None``: ``"per_head"`` when routed, else ``"summed"``.
    heads: head indices ``layer * n_heads + head`` for ``mode="static"`` (giving them implies it); ``None``: the
        router's QRHead-style heads, or the model's published ones (``routehead presets``).
    layers: for ``mode="all"``, only the heads of these layers (Selective-ICR's layer window, e.g. ``range(8, 20)``).
    fusion_weight: the weight of the first stage (the input order, or its scores) beside the attention; ``None``:
        the router's learned weight when routed (per query where it predicts one), else 0.
    layout: ``"sequential"`` (ICR's prompt) or ``"block"`` (BlockRank's: each document sees only the chat head and
        itself, so the input order cannot change the attention; :mod:`routehead_rag.prompt`).
    ape: ``(temperature, scale)`` for ``layout="block"``: APE's attention to the parallel documents
        (:class:`routehead_rag.capture.Parallel`); ``None`` or ``(1, 1)``: plain attention.
    reweighting: ``"reattn"``: ReAttn's re-weighting of the summed attention (:mod:`routehead_rag.reweighting`);
        ``"none"`` by default.
    adapter: a ranking adapter file (:mod:`routehead_rag.adapter`): its LoRA weights merged into a copy of the model;
        every mode then reads the adapted attention.
    """

    mode: RecipeMode | None = None
    aggregation: Aggregation | None = None
    heads: tuple[int, ...] | None = None
    layers: tuple[int, ...] | None = None
    fusion_weight: float | None = None
    layout: Layout = "sequential"
    ape: tuple[float, float] | None = None
    reweighting: Reweighting = "none"
    adapter: str | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (a frozen dataclass)
        if self.mode is not None and self.mode not in RECIPE_MODES:
            raise ValueError(f"mode must be one of {RECIPE_MODES}, not {self.mode!r}.")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {self.layout!r}.")
        if self.reweighting not in REWEIGHTINGS:
            raise ValueError(f"reweighting must be one of {REWEIGHTINGS}, not {self.reweighting!r}.")
        if self.aggregation is not None and self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {self.aggregation!r}.")
        set_("ape", check_ape(self.ape, self.layout))
        set_("heads", _int_tuple("heads", self.heads))
        set_("layers", _int_tuple("layers", self.layers))
        if self.heads is not None and self.mode not in (None, "static"):
            raise ValueError(f"heads=[...] is for mode='static' (or no mode), not mode={self.mode!r}.")
        if self.heads is not None:
            set_("mode", "static")
        if self.layers is not None and self.mode != "all":
            raise ValueError(f"layers=[...] (a layer window) is for mode='all', not mode={self.mode!r}; pass "
                             "mode='all'.")
        if self.fusion_weight is not None:
            if not isinstance(self.fusion_weight, numbers.Real) or isinstance(self.fusion_weight, bool):
                raise ValueError(f"fusion_weight must be a number or None, not {self.fusion_weight!r}.")
            set_("fusion_weight", float(self.fusion_weight))
        if self.adapter is not None:
            set_("adapter", str(Path(self.adapter).expanduser()))
        elif self.mode == "adapter":
            raise ValueError("mode='adapter' scores with a trained adapter: pass adapter='PATH.safetensors'.")
        if self.adapter is not None and self.ape is not None:
            raise ValueError("ape=(temperature, scale) is not applied to a trained adapter's attention; drop ape or "
                             "adapter from the recipe.")
        if self.reweighting != "none" and self.aggregation == "per_head":
            raise ValueError(f"reweighting={self.reweighting!r} re-weights the summed attention (ICR, QRHead); pass "
                             "aggregation='summed'.")

    def key(self) -> dict:
        """The recipe as a dict of the fields set (JSON-ready), for logs and the server's info."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
                if v is not None and not (k == "layout" and v == "sequential") and not (k == "reweighting" and v == "none")}


RECIPE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Recipe))


def with_keywords(recipe: Recipe | None, keywords: Mapping[str, object], stacklevel: int = 3) -> Recipe:
    """``recipe`` (default: ``Recipe()``) with the recipe's fields given as keywords the old way
    (``RouteHeadReranker(mode="all")``), each named in one ``DeprecationWarning``; giving a field both ways is
    refused."""
    recipe = recipe if recipe is not None else Recipe()
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a routehead_rag.Recipe, not {type(recipe).__name__}.")
    given = {k: v for k, v in keywords.items() if v is not None and not (k == "layout" and v == "sequential")
             and not (k == "reweighting" and v == "none")}
    if not given:
        return recipe
    clash = [k for k in given if getattr(recipe, k) != getattr(Recipe(), k)]
    if clash:
        raise ValueError(f"{clash} given both in recipe=Recipe(...) and as keywords; give them in the recipe only.")
    warnings.warn(f"RouteHeadReranker({', '.join(f'{k}=...' for k in given)}) is deprecated: pass "
                  f"recipe=Recipe({', '.join(f'{k}=...' for k in given)}) (from routehead_rag import Recipe).",
                  DeprecationWarning, stacklevel=stacklevel)
    return replace(recipe, **given)


def resolve(recipe: Recipe, backbone: Backbone, router: object | None) -> tuple[Recipe, HeadPreset | None]:
    """``recipe`` with its defaults filled in for ``backbone`` and ``router`` (mode, heads, aggregation, the first
    stage's weight; see :class:`Recipe`), its heads and layers checked against the model; and the published head
    list it took, where it took one. Raises ``ValueError`` saying what to pass where the recipe cannot run."""
    trained = isinstance(router, Router | RouterEnsemble)
    mode, heads = recipe.mode, recipe.heads
    preset = find_preset(backbone) if router is None and heads is None and mode in (None, "static") \
        and recipe.adapter is None else None
    mode = mode or ("adapter" if recipe.adapter else "routed" if router is not None else "static" if preset else "all")
    if mode == "static" and heads is None:
        if preset is not None:
            heads = tuple(preset.heads)
        elif not trained or not router.qrhead_heads:
            raise ValueError("mode='static' needs heads=[...] (head indices layer * n_heads + head); "
                             "`routehead presets` lists the models that have published heads.")
        else:
            heads = tuple(router.qrhead_heads)
    if mode == "routed" and router is None:
        raise ValueError("mode='routed' needs router=... (a router folder, or an object with "
                         "select(query, backbone) -> head indices); none is shipped for this model.")
    aggregation = recipe.aggregation or ("per_head" if mode == "routed" else "summed")
    if recipe.reweighting != "none" and aggregation != "summed":
        raise ValueError(f"reweighting={recipe.reweighting!r} re-weights the summed attention (ICR, QRHead); pass "
                         f"aggregation='summed' (mode {mode!r} defaults to {aggregation!r}).")
    if heads is not None:
        heads = tuple(check_heads(list(heads), backbone))
    bad = [x for x in recipe.layers or () if x >= backbone.n_layers]
    if bad:
        raise ValueError(f"layers must be layer indices 0..{backbone.n_layers - 1} of {backbone.name}, e.g. "
                         f"range(8, 20); got {bad[:5]}.")
    fusion = recipe.fusion_weight
    if fusion is None:
        fusion = router.fusion_weight if trained and mode == "routed" else 0.0
    return replace(recipe, mode=mode, heads=heads, aggregation=aggregation, fusion_weight=float(fusion)), preset


@dataclass(frozen=True)
class ScoringSettings:
    """What decides a query's per-head scores besides the backbone: the prompt and the windows (and the recipe's
    layout and APE, which change the attention itself).

    A new setting added here enters the feature cache's key (:func:`routehead_rag.features.features_dir`) by itself.
    """

    instruction: str
    max_doc_words: int | None
    max_doc_tokens: int | None
    reverse: bool
    max_tokens: int
    window_size: int | None
    layout: Layout = "sequential"
    ape: tuple[float, float] | None = None

    def key(self) -> dict:
        """The settings as a dict, for cache and calibration keys; the layout and APE only where they are not the
        defaults, so that the keys made before there was a choice stay valid."""
        key = asdict(self)
        if self.layout == "sequential":
            del key["layout"]
        if self.ape is None:
            del key["ape"]
        else:
            key["ape"] = list(self.ape)
        return key
