"""The RouteHead router: picks heads per query from a frozen-LLM query embedding.

``logit_h = <proj(standardized query embedding), head_embedding_h> + bias_h`` over the ``K``
candidate heads; at inference the ``top_k`` heads by logit share ``1 - shared_fraction`` of the score
and the shared heads (signed weights, the same for every query) ``shared_fraction``; the result is fused
with the first-stage order by ``fusion_weight``. A router is saved as a folder: ``router.safetensors``
(weights) + ``config.json`` (backbone it was trained for, head space, choices, training summary); an
ensemble of routers, their configs under ``"members"`` and their weights under ``"<member>."`` prefixes.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .backbone import Backbone
from .embedding import query_embedding
from .heads import blend
from .trust import MAX_WEIGHT, STATISTICS, Trust, trust_statistics

DEFAULT_ROUTER = Path(__file__).parent / "default_router"
_FIX = "retrain the router (`routehead train-router`, `routehead adapt`) or fix its config.json"
_WEIGHTS = ("mean", "std", "proj.weight", "proj.bias", "heads", "bias")


class RouterConfigError(ValueError):
    """A router whose config or weights cannot route: names the router, the field and what to do."""


@dataclass
class RouterConfig:
    """What a router needs besides its weights."""

    backbone: dict  # {"name", "n_layers", "n_heads", "fingerprint"}
    candidate_heads: list[int]  # the K heads routed over (layer * n_heads + head)
    embed_layer: int  # hidden-state layer of the query embedding (0 = embeddings)
    pooling: str  # "mean" or "last"
    top_k: int  # heads picked per query
    fusion_weight: float  # weight of the z-scored first-stage score
    qrhead_heads: list[int] = field(default_factory=list)  # the QRHead-style list found on the same data
    shared_fraction: float = 0.0  # share of the shared heads in a routed score (the routed heads share the rest)
    shared_heads: dict[int, float] = field(default_factory=dict)  # {head: signed weight}, the same for every query
    dim: int = 64
    training: dict = field(default_factory=dict)  # data, training config and validation summary
    trust: dict = field(default_factory=dict)  # a :class:`Trust` (per-query fusion weight), or {} for fusion_weight

    def __post_init__(self) -> None:
        self.shared_heads = {int(h): float(w) for h, w in self.shared_heads.items()}  # JSON keys are strings


# Config names of routers saved before the shared part was named so (and before it was learned, when it was the
# QRHead-style heads at equal weights).
_RENAMED = {"static_heads": "qrhead_heads", "static_weight": "shared_fraction", "static_weights": "shared_heads"}


def _config(saved: dict) -> RouterConfig:
    config = RouterConfig(**{_RENAMED.get(k, k): v for k, v in saved.items()})
    if not config.shared_heads:
        config.shared_heads = dict.fromkeys(config.qrhead_heads, 1.0)
    return config


class RouterNet(torch.nn.Module):
    """Query embedding ``[B, hidden]`` → routing logits ``[B, K]``."""

    def __init__(self, hidden: int, n_candidates: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(hidden))
        self.register_buffer("std", torch.ones(hidden))
        self.proj = torch.nn.Linear(hidden, dim)
        self.heads = torch.nn.Parameter(torch.randn(n_candidates, dim) * 0.02)
        self.bias = torch.nn.Parameter(torch.zeros(n_candidates))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        x = (embedding - self.mean) / self.std
        return self.proj(x) @ self.heads.T + self.bias


class Router:
    """A trained router bound to its config; implements :class:`routehead_rag.heads.HeadRouter`."""

    def __init__(self, config: RouterConfig, model: RouterNet) -> None:
        self.config, self.model = config, model.eval()

    def save(self, path: str | Path) -> None:
        _write_folder(Path(path), self.model.state_dict(), asdict(self.config))

    @property
    def fusion_weight(self) -> float:
        """The first stage's weight (for every query where the router has no :class:`Trust`)."""
        return self.config.fusion_weight

    def fusion_weight_for(self, head_scores: torch.Tensor, weights: Mapping[int, float], first_stage: torch.Tensor,
                          embedding: torch.Tensor) -> float:
        """The first stage's weight for one query (``head_scores: [n_heads_total, n_docs]``, the query's routed
        ``{head: weight}``, ``first_stage: [n_docs]``, its embedding ``[n_layers + 1, 2, hidden]``): its
        :class:`Trust`'s prediction, else :attr:`fusion_weight`."""
        if not self.config.trust:
            return self.fusion_weight
        return self.weight_for_statistics(trust_statistics(head_scores, weights, first_stage, self.novelty(embedding)))

    def weight_for_statistics(self, statistics: torch.Tensor) -> float:
        """The first stage's weight for a query with these :func:`trust_statistics` (:attr:`fusion_weight` where the
        router has no :class:`Trust`)."""
        return Trust(**self.config.trust).weight(statistics) if self.config.trust else self.fusion_weight

    @torch.inference_mode()
    def novelty(self, embedding: torch.Tensor) -> float:
        """How far a query embedding ``[n_layers + 1, 2, hidden]`` lies from the queries this router was trained on:
        the log of the mean squared z-score of the embedding it reads, under their mean and standard deviation
        (about 0 for a query like them, more the further off their domain)."""
        x = embedding[self.config.embed_layer, 0 if self.config.pooling == "mean" else 1].float()
        return math.log(((x - self.model.mean) / self.model.std).square().mean().item() + 1e-12)

    @property
    def training(self) -> dict:
        """How it was trained: data, config and validation summary (``config.json``'s ``training``)."""
        return self.config.training

    @property
    def qrhead_heads(self) -> list[int]:
        return self.config.qrhead_heads

    @property
    def embed_layers(self) -> set[int]:
        """The hidden-state layers its query embedding reads."""
        return {self.config.embed_layer}

    def check_backbone(self, backbone: Backbone) -> None:
        """Raise if this router was trained for another backbone, or names layers, heads or a hidden size that
        ``backbone`` lacks."""
        want = self.config.backbone
        have = {"name": backbone.name, "n_layers": backbone.n_layers, "n_heads": backbone.n_heads,
                "fingerprint": backbone.fingerprint}
        if (want["n_layers"], want["n_heads"], want["fingerprint"]) != (have["n_layers"], have["n_heads"], have["fingerprint"]):
            raise ValueError(f"this router was trained for {want['name']} ({want['n_layers']} layers x {want['n_heads']} "
                             f"heads, weights {want['fingerprint'][:12]}), not for {have['name']} ({have['n_layers']} x "
                             f"{have['n_heads']}, weights {have['fingerprint'][:12]}); train a router for this model "
                             "with `routehead train-router`, or use mode='all'.")
        _check_ranges(self.config, backbone.n_layers, backbone.n_heads, "this router", backbone.name)
        if not 1 <= self.config.top_k <= len(self.config.candidate_heads):
            raise RouterConfigError(f"this router: top_k is {self.config.top_k}, but it must be from 1 to its "
                                    f"{len(self.config.candidate_heads)} candidate_heads; {_FIX}.")
        hidden = getattr(backbone.model.config, "hidden_size", None)
        if isinstance(hidden, int) and self.model.mean.shape[0] != hidden:
            raise RouterConfigError(f"this router: its weights read {self.model.mean.shape[0]}-wide query embeddings, "
                                    f"but {backbone.name}'s hidden size is {hidden}; {_FIX}.")

    @torch.inference_mode()
    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """Routing logits ``[K]`` for one query embedding ``[n_layers + 1, 2, hidden]``."""
        x = embedding[self.config.embed_layer, 0 if self.config.pooling == "mean" else 1]
        return self.model(x[None].float())[0]

    def heads_for(self, embedding: torch.Tensor) -> list[int]:
        """The ``top_k`` candidate heads with the highest logits for a query embedding ``[n_layers + 1, 2, hidden]``."""
        top = torch.topk(self.logits(embedding), self.config.top_k).indices
        return sorted(self.config.candidate_heads[i] for i in top.tolist())

    def weights_for(self, embedding: torch.Tensor) -> dict[int, float]:
        """``{head: weight}`` for a query embedding: the routed heads blended with the shared ones (:func:`blend`)."""
        return blend(self.heads_for(embedding), self.config.shared_heads, self.config.shared_fraction)

    def select(self, query: str, backbone: Backbone) -> dict[int, float]:
        """The weighted heads for ``query`` (a short forward of the query alone, up to its embedding's layer)."""
        return self.weights_for(query_embedding(backbone, query, self.embed_layers))


class RouterEnsemble:
    """Routers for one backbone, trained on different splits of the same queries, used as their mean.

    A query's head weights and the fusion weight are the members' means, so its scores are the mean of the
    members' scores (:func:`routehead_rag.scoring.fuse` is linear in both).
    """

    def __init__(self, members: Sequence[Router], training: dict | None = None) -> None:
        if not members:
            raise ValueError("a router ensemble needs at least one router.")
        if len({m.config.backbone["fingerprint"] for m in members}) > 1:
            raise ValueError("the routers of an ensemble must be trained for one backbone.")
        self.members = list(members)
        self.training = training or {}

    @property
    def fusion_weight(self) -> float:
        return sum(m.fusion_weight for m in self.members) / len(self.members)

    def fusion_weight_for(self, head_scores: torch.Tensor, weights: Mapping[int, float], first_stage: torch.Tensor,
                          embedding: torch.Tensor) -> float:
        """The members' mean :meth:`Router.weight_for_statistics`, on the statistics of the ensemble's ``weights``
        and :meth:`novelty` (as ``fit_trust`` learns them)."""
        if not any(m.config.trust for m in self.members):
            return self.fusion_weight
        statistics = trust_statistics(head_scores, weights, first_stage, self.novelty(embedding))
        return sum(m.weight_for_statistics(statistics) for m in self.members) / len(self.members)

    def novelty(self, embedding: torch.Tensor) -> float:
        """The members' mean :meth:`Router.novelty`."""
        return sum(m.novelty(embedding) for m in self.members) / len(self.members)

    @property
    def qrhead_heads(self) -> list[int]:
        """The first member's QRHead-style heads (for ``mode="static"``)."""
        return self.members[0].qrhead_heads

    @property
    def embed_layers(self) -> set[int]:
        return set().union(*(m.embed_layers for m in self.members))

    def check_backbone(self, backbone: Backbone) -> None:
        """Raise if the routers were trained for another backbone."""
        for member in self.members:
            member.check_backbone(backbone)

    def weights_for(self, embedding: torch.Tensor) -> dict[int, float]:
        """The members' mean ``{head: weight}`` for a query embedding ``[n_layers + 1, 2, hidden]``."""
        mean: dict[int, float] = {}
        for member in self.members:
            for head, weight in member.weights_for(embedding).items():
                mean[head] = mean.get(head, 0.0) + weight / len(self.members)
        return {h: mean[h] for h in sorted(mean) if mean[h] != 0}

    def select(self, query: str, backbone: Backbone) -> dict[int, float]:
        """The weighted heads for ``query`` (one short forward of the query alone, shared by the members)."""
        return self.weights_for(query_embedding(backbone, query, self.embed_layers))

    def save(self, path: str | Path) -> None:
        weights = {f"{i}.{k}": v for i, m in enumerate(self.members) for k, v in m.model.state_dict().items()}
        _write_folder(Path(path), weights, {"members": [asdict(m.config) for m in self.members], "training": self.training})


def load_router(path: str | Path) -> Router | RouterEnsemble:
    """The router, or ensemble of routers, saved in the folder ``path``."""
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "router.safetensors").is_file():
        raise FileNotFoundError(f"{path} is not a router folder (config.json + router.safetensors); "
                                "train one with `routehead train-router` or pass a folder that holds one.")
    try:
        config = json.loads((path / "config.json").read_text())
        weights = load_file(path / "router.safetensors")
        if "members" not in config:
            return _router(_config(config), weights, f"the router in {path}")
        members = [_router(_config(c), {k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith(f"{i}.")},
                           f"the router in {path} (members[{i}])")
                   for i, c in enumerate(config["members"])]
        return RouterEnsemble(members, config.get("training"))
    except RouterConfigError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, OSError, RuntimeError, SafetensorError) as err:
        raise ValueError(f"the router in {path} is corrupt ({err}); retrain it or restore the folder.") from err


def _write_folder(path: Path, weights: dict[str, torch.Tensor], config: dict) -> None:
    """A router folder as :func:`load_router` reads it: ``router.safetensors`` + ``config.json``."""
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, path / "router.safetensors")
    (path / "config.json").write_text(json.dumps(config, indent=1) + "\n")


def _index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_ranges(config: RouterConfig, n_layers: int, n_heads: int, where: str, model: str) -> None:
    """The layer and the heads a router names exist in ``model``, of ``n_layers`` x ``n_heads``."""
    total = n_layers * n_heads
    if not 0 <= config.embed_layer <= n_layers:
        raise RouterConfigError(f"{where}: embed_layer is {config.embed_layer}, but {model} has hidden-state layers "
                                f"0..{n_layers} only; {_FIX}.")
    for name, heads in (("candidate_heads", config.candidate_heads), ("qrhead_heads", config.qrhead_heads),
                        ("shared_heads", list(config.shared_heads))):
        bad = [h for h in heads if not 0 <= h < total]
        if bad:
            raise RouterConfigError(f"{where}: {name} holds {bad[:5]}, beyond {model}'s {n_layers} layers x "
                                    f"{n_heads} heads (indices 0..{total - 1}); {_FIX}.")


def check_config(config: RouterConfig, weights: dict[str, torch.Tensor], where: str) -> None:
    """Raise :class:`RouterConfigError` naming ``where`` and the field, unless ``config`` and ``weights`` make a router
    that can route for the backbone its config names (its ``n_layers`` x ``n_heads``)."""
    def fail(problem: str) -> None:
        raise RouterConfigError(f"{where}: {problem}; {_FIX}.")

    backbone = config.backbone
    if not isinstance(backbone, dict) or not all(k in backbone for k in ("name", "n_layers", "n_heads", "fingerprint")):
        fail(f"backbone is {backbone!r}, not {{'name', 'n_layers', 'n_heads', 'fingerprint'}}")
    if not all(_index(backbone[k]) and backbone[k] >= 1 for k in ("n_layers", "n_heads")) \
            or not isinstance(backbone["fingerprint"], str):
        fail(f"backbone holds n_layers={backbone['n_layers']!r}, n_heads={backbone['n_heads']!r}, fingerprint="
             f"{backbone['fingerprint']!r}; they must be positive integers and a string")
    for name in ("candidate_heads", "qrhead_heads"):
        heads = getattr(config, name)
        if not isinstance(heads, list) or not all(_index(h) for h in heads):
            fail(f"{name} is {heads!r}, not a list of head indices (layer * n_heads + head)")
    heads = config.candidate_heads
    if not heads:
        fail("candidate_heads is empty: there is nothing to route over")
    if len(set(heads)) != len(heads):
        fail(f"candidate_heads holds {sorted(h for h in set(heads) if heads.count(h) > 1)[:5]} more than once")
    if not _index(config.top_k) or not 1 <= config.top_k <= len(heads):
        fail(f"top_k is {config.top_k!r}, but it must be a whole number from 1 to the {len(heads)} candidate_heads")
    if not _index(config.embed_layer):
        fail(f"embed_layer is {config.embed_layer!r}, not a hidden-state layer number")
    if config.pooling not in ("mean", "last"):
        fail(f"pooling is {config.pooling!r}, not 'mean' or 'last'")
    if not _finite(config.fusion_weight):
        fail(f"fusion_weight is {config.fusion_weight!r}, not a finite number")
    if not _finite(config.shared_fraction) or not 0 <= config.shared_fraction <= 1:
        fail(f"shared_fraction is {config.shared_fraction!r}, not a number from 0 to 1")
    if not all(_finite(w) for w in config.shared_heads.values()):
        fail("shared_heads holds a weight that is not a finite number")
    if not _index(config.dim) or config.dim < 1:
        fail(f"dim is {config.dim!r}, not a positive integer")
    if config.trust:
        trust = config.trust
        sizes = {len(trust.get(k, [])) if isinstance(trust.get(k), list) else -1 for k in ("mean", "std", "coef")}
        numbers = [*trust.get("mean", []), *trust.get("std", []), *trust.get("coef", []), trust.get("bias"),
                   trust.get("max_weight", MAX_WEIGHT)] if sizes == {len(STATISTICS)} else []
        if sizes != {len(STATISTICS)} or not all(_finite(x) for x in numbers) or min(trust["std"]) <= 0:
            fail(f"trust is {trust!r}, not mean, std (positive) and coef of {len(STATISTICS)} numbers each and a bias")
    _check_ranges(config, backbone["n_layers"], backbone["n_heads"], where, str(backbone["name"]))
    missing = [k for k in _WEIGHTS if k not in weights]
    if missing or len(weights) != len(_WEIGHTS):
        fail(f"router.safetensors holds {sorted(weights)}, not the router weights {list(_WEIGHTS)}")
    hidden = weights["mean"].shape[0] if weights["mean"].dim() == 1 else -1
    shapes = {"mean": (hidden,), "std": (hidden,), "proj.weight": (config.dim, hidden), "proj.bias": (config.dim,),
              "heads": (len(heads), config.dim), "bias": (len(heads),)}
    for name, shape in shapes.items():
        if tuple(weights[name].shape) != shape:
            fail(f"the weight {name} is {list(weights[name].shape)}, not {list(shape)} as dim={config.dim} and the "
                 f"{len(heads)} candidate_heads need")
        if not torch.isfinite(weights[name]).all():
            fail(f"the weight {name} holds NaN or infinite values")
    if not (weights["std"] > 0).all():
        fail("the weight std holds values that are not positive")


def _router(config: RouterConfig, weights: dict[str, torch.Tensor], where: str = "the router") -> Router:
    check_config(config, weights, where)
    model = RouterNet(weights["mean"].shape[0], len(config.candidate_heads), config.dim)
    model.load_state_dict(weights)
    return Router(config, model)
