"""The ranking adapter: LoRA weights on the layers up to a scoring layer, trained so that the query rows' attention
there ranks the documents (BlockRank's loss, arXiv 2510.05396; docs/method.md, "The ranking adapter").

A document's score is the log of the attention mass that the query rows give its span (``[i] `` marker included) at
layer :attr:`AdapterConfig.layer`, averaged over the adapter's heads; with ``calibrated`` the log mass of the "N/A"
rows is subtracted (ICR's content-free calibration as a log ratio). Training and ranking call the same
:func:`document_scores`, so what is trained is what ranks.

The file is one safetensors file: the LoRA tensors (peft's names) and, in its metadata, the config and the
fingerprint of the base model it was trained on. :func:`load_adapter` refuses a file that is not one, or one made
for another model, saying what to do; :func:`merged` gives a copy of the base model with the adapter merged into its
weights, so the engine runs it unchanged and the base backbone stays usable beside it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .backbone import Backbone, decoder_of
from .paths import atomic_write

ADAPTER_FORMAT = "routehead-adapter/1"
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class AdapterConfig:
    """What an adapter is: ``layer`` (the scoring layer ℓ; the LoRA weights sit on layers ``0 .. ℓ`` and the forward
    stops after ℓ), ``rank`` / ``alpha`` / ``modules`` (LoRA's), ``heads`` (the heads of ℓ whose attention scores,
    ``None``: all), ``calibrated`` (score = log mass of the query rows - log mass of the "N/A" rows),
    ``temperature`` (the loss's: cross-entropy over ``score / temperature``) and ``layout`` (the prompt layout it
    was trained in, which it must rank in)."""

    layer: int
    rank: int = 16
    alpha: float = 32.0
    modules: tuple[str, ...] = LORA_MODULES
    heads: tuple[int, ...] | None = None
    calibrated: bool = False
    temperature: float = 1.0
    layout: str = "sequential"

    def __post_init__(self) -> None:
        if self.layer < 0 or self.rank < 1 or self.temperature <= 0:
            raise ValueError(f"adapter config out of range: layer {self.layer} (>= 0), rank {self.rank} (>= 1), "
                             f"temperature {self.temperature} (> 0).")
        object.__setattr__(self, "modules", tuple(self.modules))
        if self.heads is not None:
            object.__setattr__(self, "heads", tuple(int(h) for h in self.heads))

    @classmethod
    def from_json(cls, text: str) -> AdapterConfig:
        return cls(**json.loads(text))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Adapter:
    """A loaded adapter: its config, the LoRA tensors (peft's state-dict names), the fingerprint of the base model
    it was trained on, and its own (sha256 of the file's tensors and config: what cache keys hold)."""

    config: AdapterConfig
    tensors: dict[str, torch.Tensor] = field(repr=False)
    base_fingerprint: str
    fingerprint: str


def document_scores(query_rows: torch.Tensor, na_rows: torch.Tensor | None, marked_spans: list[tuple[int, int]],
                    config: AdapterConfig) -> torch.Tensor:
    """``[n_docs]`` scores from one prompt's rows at the scoring layer (``query_rows`` / ``na_rows``: ``[heads,
    n_prefix]``, each head's attention averaged over its rows; ``na_rows`` is needed where ``config.calibrated``):
    the log of each document's mass over its marked span, averaged over the config's heads."""
    def log_mass(rows: torch.Tensor) -> torch.Tensor:
        rows = rows if config.heads is None else rows[list(config.heads)]
        mass = torch.stack([rows[:, start:end].sum(dim=-1) for start, end in marked_spans], dim=-1)  # [heads, docs]
        return torch.log(mass.float().mean(dim=0) + 1e-9)

    scores = log_mass(query_rows)
    if config.calibrated:
        if na_rows is None:
            raise ValueError("a calibrated adapter scores against the N/A rows: pass na_rows.")
        scores = scores - log_mass(na_rows)
    return scores


def lora_config(config: AdapterConfig):
    """peft's ``LoraConfig`` for ``config``: LoRA on ``config.modules`` of layers ``0 .. config.layer``."""
    try:
        from peft import LoraConfig
    except ImportError:
        raise ImportError("training an adapter needs peft: pip install 'routehead-rag[train]'") from None
    return LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0, target_modules=list(config.modules),
                      layers_to_transform=list(range(config.layer + 1)), layers_pattern="layers", bias="none")


def with_lora(model: torch.nn.Module, config: AdapterConfig, tensors: dict[str, torch.Tensor] | None = None):
    """``model`` (changed in place) with LoRA layers injected for ``config``, their weights from ``tensors`` where
    given (else peft's initialisation: B = 0, so the model is unchanged); only the LoRA weights require grad."""
    from peft import inject_adapter_in_model, set_peft_model_state_dict
    for p in model.parameters():
        p.requires_grad_(False)
    model = inject_adapter_in_model(lora_config(config), model)
    if tensors is not None:
        result = set_peft_model_state_dict(model, tensors)
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"the adapter holds tensors this model has no place for ({result.unexpected_keys[:3]}...): "
                             "it was made for another architecture.")
    return model


def lora_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA weights of a model from :func:`with_lora`, by peft's names (adapter name dropped)."""
    from peft import get_peft_model_state_dict
    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}


def _digest(tensors: dict[str, torch.Tensor], config: AdapterConfig) -> str:
    digest = hashlib.sha256(config.to_json().encode())
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].float().numpy().tobytes())
    return digest.hexdigest()


def save_adapter(path: str | os.PathLike, tensors: dict[str, torch.Tensor], config: AdapterConfig,
                 base_fingerprint: str) -> Path:
    """Write the adapter file atomically (a temporary file in the same folder, then renamed): a kill at any point
    leaves the old file or the new one, never half of one."""
    from safetensors.torch import save_file
    metadata = {"format": ADAPTER_FORMAT, "config": config.to_json(), "base_fingerprint": base_fingerprint}
    return atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, tmp,
                                                    metadata=metadata))


def load_adapter(path: str | os.PathLike, backbone: Backbone | None = None) -> Adapter:
    """Read an adapter file; with ``backbone``, refuse one trained on another model (``ValueError`` saying which)."""
    from safetensors import SafetensorError, safe_open
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"adapter file {path} does not exist; train one with `routehead adapt` or "
                                "benchmarks/adapter_gate.py, or pass adapter=None for the frozen model.")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable adapter file ({error}); it may be truncated or corrupt: "
                         "train it again or copy it anew.") from error
    if metadata.get("format") != ADAPTER_FORMAT or "config" not in metadata:
        raise ValueError(f"{path} is a safetensors file but not a routehead adapter (format "
                         f"{metadata.get('format')!r}, expected {ADAPTER_FORMAT!r}).")
    config = AdapterConfig.from_json(metadata["config"])
    base = metadata.get("base_fingerprint", "")
    if backbone is not None:
        if base != backbone.fingerprint:
            raise ValueError(f"{path} was trained on another model (fingerprint {base[:12]}…) than {backbone.name} "
                             f"({backbone.fingerprint[:12]}…); load the model it was trained on, or train one for this "
                             "model with `routehead adapt`.")
        if config.layer >= backbone.n_layers or (config.heads and max(config.heads) >= backbone.n_heads):
            raise ValueError(f"{path} scores at layer {config.layer} with heads {config.heads}, beyond {backbone.name} "
                             f"({backbone.n_layers} layers × {backbone.n_heads} heads).")
    return Adapter(config=config, tensors=tensors, base_fingerprint=base, fingerprint=_digest(tensors, config))


def merged(backbone: Backbone, adapter: Adapter) -> Backbone:
    """A new backbone: a copy of ``backbone``'s model with the adapter's weights merged in (its fingerprint the base's
    and the adapter's together); ``backbone`` itself is left as it was."""
    model = copy.deepcopy(backbone.model)
    dtype = next(model.parameters()).dtype
    layers = decoder_of(model).layers
    scale = adapter.config.alpha / adapter.config.rank
    for name, a in adapter.tensors.items():
        if ".lora_A." not in name:
            continue
        b = adapter.tensors[name.replace(".lora_A.", ".lora_B.")]
        layer_index, module_path = _layer_and_module(name)
        linear = layers[layer_index].get_submodule(module_path)
        with torch.no_grad():
            linear.weight += (scale * b.float() @ a.float()).to(dtype=dtype, device=linear.weight.device)
    fingerprint = hashlib.sha256(f"{backbone.fingerprint}+{adapter.fingerprint}".encode()).hexdigest()
    return Backbone(model=model, tokenizer=backbone.tokenizer, name=f"{backbone.name}+adapter", fingerprint=fingerprint)


def _layer_and_module(name: str) -> tuple[int, str]:
    """``base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight`` → ``(3, "self_attn.q_proj")``."""
    parts = name.split(".")
    at = parts.index("layers")
    end = parts.index("lora_A") if "lora_A" in parts else parts.index("lora_B")
    return int(parts[at + 1]), ".".join(parts[at + 2:end])
