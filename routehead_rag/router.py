"""The RouteHead router: picks heads per query from a frozen-LLM query embedding.

``logit_h = <proj(standardized query embedding), head_embedding_h> + bias_h`` over the ``K``
candidate heads; at inference the ``top_k`` heads by logit share ``1 - static_weight`` of the score,
a learned static combination of heads (signed weights) ``static_weight``, fused with the first-stage
order by ``fusion_weight``. A router is saved as a folder: ``router.safetensors`` (weights) +
``config.json`` (backbone it was trained for, head space, choices, training summary); an ensemble of
routers, their configs under ``"members"`` and their weights under ``"<member>."`` prefixes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .backbone import Backbone
from .heads import blend

DEFAULT_ROUTER = Path(__file__).parent / "default_router"


@dataclass
class RouterConfig:
    """What a router needs besides its weights."""

    backbone: dict  # {"name", "n_layers", "n_heads", "fingerprint"}
    candidate_heads: list[int]  # the K heads routed over (layer * n_heads + head)
    embed_layer: int  # hidden-state layer of the query embedding (0 = embeddings)
    pooling: str  # "mean" or "last"
    top_k: int  # heads picked per query
    fusion_weight: float  # weight of the z-scored first-stage score
    static_heads: list[int] = field(default_factory=list)  # the QRHead-style list found on the same data
    static_weight: float = 0.0  # share of the static part in a routed score (the routed heads share the rest)
    # The static part, {head: signed weight}; empty (routers from before it was learned): static_heads, equal weights.
    static_weights: dict[int, float] = field(default_factory=dict)
    dim: int = 64
    training: dict = field(default_factory=dict)  # data and validation summary

    def __post_init__(self) -> None:
        self.static_weights = {int(h): float(w) for h, w in self.static_weights.items()}  # JSON keys are strings

    @property
    def static_part(self) -> dict[int, float]:
        """The static part of a routed score, ``{head: weight}``."""
        return self.static_weights or {h: 1.0 for h in self.static_heads}


class HeadRouterModel(torch.nn.Module):
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

    def __init__(self, config: RouterConfig, model: HeadRouterModel) -> None:
        self.config, self.model = config, model.eval()

    def save(self, path: str | Path) -> None:
        _write_folder(Path(path), self.model.state_dict(), asdict(self.config))

    @property
    def fusion_weight(self) -> float:
        return self.config.fusion_weight

    @property
    def static_heads(self) -> list[int]:
        return self.config.static_heads

    def check_backbone(self, backbone: Backbone) -> None:
        """Raise if this router was trained for another backbone."""
        want = self.config.backbone
        have = {"name": backbone.name, "n_layers": backbone.n_layers, "n_heads": backbone.n_heads,
                "fingerprint": backbone.fingerprint}
        if (want["n_layers"], want["n_heads"], want["fingerprint"]) != (have["n_layers"], have["n_heads"], have["fingerprint"]):
            raise ValueError(f"this router was trained for {want['name']} ({want['n_layers']} layers x {want['n_heads']} "
                             f"heads, weights {want['fingerprint'][:12]}), not for {have['name']} ({have['n_layers']} x "
                             f"{have['n_heads']}, weights {have['fingerprint'][:12]}); train a router for this model "
                             "with `routehead train-router`, or use mode='all'.")

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
        """``{head: weight}`` for a query embedding: the routed heads blended with the static ones (:func:`blend`)."""
        return blend(self.heads_for(embedding), self.config.static_part, self.config.static_weight)

    def select(self, query: str, backbone: Backbone) -> dict[int, float]:
        """The weighted heads for ``query`` (one short forward of the query alone, before the prompt's)."""
        from .training.features import query_embedding

        return self.weights_for(query_embedding(backbone, query))


class RouterEnsemble:
    """Routers for one backbone, trained on different splits of the same queries, used as their mean.

    A query's head weights and the fusion weight are the members' means, so its scores are the mean of the
    members' scores (:func:`routehead_rag.scoring.fuse` is linear in both); docs/method.md has what it gains.
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

    @property
    def static_heads(self) -> list[int]:
        """The first member's QRHead-style heads (for ``mode="static"``)."""
        return self.members[0].static_heads

    def check_backbone(self, backbone: Backbone) -> None:
        """Raise if the routers were trained for another backbone."""
        self.members[0].check_backbone(backbone)

    def weights_for(self, embedding: torch.Tensor) -> dict[int, float]:
        """The members' mean ``{head: weight}`` for a query embedding ``[n_layers + 1, 2, hidden]``."""
        mean: dict[int, float] = {}
        for member in self.members:
            for head, weight in member.weights_for(embedding).items():
                mean[head] = mean.get(head, 0.0) + weight / len(self.members)
        return {h: mean[h] for h in sorted(mean) if mean[h] != 0}

    def select(self, query: str, backbone: Backbone) -> dict[int, float]:
        """The weighted heads for ``query`` (one short forward of the query alone, shared by the members)."""
        from .training.features import query_embedding

        return self.weights_for(query_embedding(backbone, query))

    def save(self, path: str | Path) -> None:
        weights = {f"{i}.{k}": v for i, m in enumerate(self.members) for k, v in m.model.state_dict().items()}
        _write_folder(Path(path), weights, {"members": [asdict(m.config) for m in self.members], "training": self.training})


TrainedRouter = Router | RouterEnsemble


def load_router(path: str | Path) -> TrainedRouter:
    """The router, or ensemble of routers, saved in the folder ``path``."""
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "router.safetensors").is_file():
        raise FileNotFoundError(f"{path} is not a router folder (config.json + router.safetensors); "
                                "train one with `routehead train-router` or pass a folder that holds one.")
    try:
        config = json.loads((path / "config.json").read_text())
        weights = load_file(path / "router.safetensors")
        if "members" not in config:
            return _router(RouterConfig(**config), weights)
        members = [_router(RouterConfig(**c), {k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith(f"{i}.")})
                   for i, c in enumerate(config["members"])]
        return RouterEnsemble(members, config.get("training"))
    except (ValueError, TypeError, KeyError, AttributeError, OSError, RuntimeError, SafetensorError) as err:
        raise ValueError(f"the router in {path} is corrupt ({err}); retrain it or restore the folder.") from err


def _write_folder(path: Path, weights: dict[str, torch.Tensor], config: dict) -> None:
    """A router folder as :func:`load_router` reads it: ``router.safetensors`` + ``config.json``."""
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, path / "router.safetensors")
    (path / "config.json").write_text(json.dumps(config, indent=1) + "\n")


def _router(config: RouterConfig, weights: dict[str, torch.Tensor]) -> Router:
    model = HeadRouterModel(weights["mean"].shape[0], len(config.candidate_heads), config.dim)
    model.load_state_dict(weights)
    return Router(config, model)
