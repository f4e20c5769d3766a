"""benchmarks/attention_speed.py: the real models' shapes, and a shrunk shape end to end on the CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "attention_speed.py"
_spec = importlib.util.spec_from_file_location("attention_speed_benchmark", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

# A shape shrunk to a few layers and a small width (GQA kept), so that it builds and runs in seconds.
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512}


@pytest.mark.parametrize("shape, family, layers, heads, kv_heads, head_dim, tied, max_pos, rope", [
    ("llama-3.2-1b", "llama", 16, 32, 8, 64, True, 131072, ("llama3", 500000.0, 32.0)),
    ("llama-3.2-3b", "llama", 28, 24, 8, 128, True, 131072, ("llama3", 500000.0, 32.0)),
    ("llama-3.1-8b", "llama", 32, 32, 8, 128, False, 131072, ("llama3", 500000.0, 8.0)),
    ("qwen2.5-7b", "qwen2", 28, 28, 4, 128, False, 32768, ("default", 1000000.0, None)),
])
def test_shapes_are_the_real_models(shape, family, layers, heads, kv_heads, head_dim, tied, max_pos, rope):
    config = bench.shape_config(shape, vocab_size=49152)
    assert config.model_type == family
    sizes = (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads)
    assert sizes == (layers, heads, kv_heads)
    assert getattr(config, "head_dim", config.hidden_size // heads) == head_dim and config.tie_word_embeddings is tied
    assert config.max_position_embeddings == max_pos and config.vocab_size >= 128256
    rope_type, theta, factor = rope
    assert config.rope_parameters["rope_type"] == rope_type and config.rope_parameters["rope_theta"] == theta
    assert config.rope_parameters.get("factor") == factor
    if family == "qwen2":
        assert set(config.layer_types) == {"full_attention"}  # the real Qwen2.5-7B uses no sliding window


def test_synthetic_inputs_are_deterministic():
    queries, docs = bench.synthetic_inputs(4, 30, 2)
    assert (queries, docs) == bench.synthetic_inputs(4, 30, 2)
    assert len(queries) == 2 and len(docs) == 4 and all(len(d["text"].split()) == 30 and d["title"] for d in docs)


def test_shrunk_shape_end_to_end(tiny_sp_dir, tmp_path):
    out = tmp_path / "speed.json"
    result = bench.main(["--shape", "llama-3.1-8b", "--config-override", json.dumps(TINY), "--tokenizer",
                         str(tiny_sp_dir), "--synthetic-docs", "--docs", "3", "--words", "30", "--queries", "1",
                         "--dtype", "float32", "--device", "cpu", "--json", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["model"] == "random:llama-3.1-8b" and (result["n_layers"], result["n_heads"]) == (2, 4)
    assert result["attn_implementation"] == "routehead_sdpa" and result["dtype"] == "float32"
    assert result["docs_source"] == "synthetic" and result["n_docs"] == 3 and result["n_windows"] == 1
    assert result["max_tokens"] == 32768 and result["prompt_tokens"] > 0 and result["weights_mb"] > 0
    for field in ("engine_all_s", "engine_static_s", "reference_s", "speedup_all", "speedup_static", "peak_rss_mb"):
        assert result[field] > 0, field
    assert result["max_abs_diff"] < 1e-4


def test_save_tokenizer(tiny_sp_dir, tmp_path):
    bench.main(["--tokenizer", str(tiny_sp_dir), "--save-tokenizer", str(tmp_path / "tok")])
    saved = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert saved.chat_template and saved("Query: N/A")["input_ids"] == AutoTokenizer.from_pretrained(tiny_sp_dir)(
        "Query: N/A")["input_ids"]
