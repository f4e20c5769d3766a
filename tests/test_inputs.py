"""Bad input gets an error that says what to do; any Unicode input gets finite scores for every document."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routehead_rag import Recipe, RouteHeadReranker, cli
from routehead_rag.documents import read_documents
from routehead_rag.features import features_dir
from routehead_rag.heads import blend
from routehead_rag.router import (DEFAULT_ROUTER, Router, RouterConfig, RouterConfigError, RouterEnsemble, RouterNet,
                                  load_router)
from routehead_rag.scoring import fuse, rank, rank_prior
from routehead_rag.windows import plan_windows


def test_empty_document_list_gives_empty_result(default_reranker):
    assert default_reranker.rerank("what causes scurvy?", []) == []


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_blank_query_is_an_error(default_reranker, query):
    with pytest.raises(ValueError, match="query is empty"):
        default_reranker.rerank(query, ["a document"])


def test_missing_query_is_an_error(default_reranker):
    with pytest.raises(TypeError, match="query must be a string"):
        default_reranker.rerank(None, ["a document"])


@pytest.mark.parametrize("docs, message", [
    ([1, "text"], r"documents\[0\] is a int"),
    (["ok", {"title": "no text"}], r"documents\[1\] is a dict without a string 'text'"),
    (["ok", {"text": "t", "title": 3}], r"documents\[1\]\['title'\] must be a string"),
    ("a single string", "must be a list"),
])
def test_non_string_documents_are_errors(default_reranker, docs, message):
    with pytest.raises(TypeError, match=message):
        default_reranker.rerank("query", docs)


@pytest.mark.parametrize("top_n", [0, -1, 2.5, True])
def test_bad_top_n_is_an_error(default_reranker, top_n):
    with pytest.raises(ValueError, match="top_n must be a positive integer"):
        default_reranker.rerank("query", ["a", "b"], top_n=top_n)


def test_missing_model_paths_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RouteHeadReranker(tmp_path / "missing.gguf")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RouteHeadReranker(str(tmp_path / "no-such-folder") + "/")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        RouteHeadReranker(tmp_path)


def test_corrupt_gguf_is_an_error(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ValueError, match="Could not read the GGUF file"):
        RouteHeadReranker(broken)


def test_mode_needs_its_heads_or_router(tiny_llama_dir):
    with pytest.raises(ValueError, match="needs heads"):
        RouteHeadReranker(tiny_llama_dir, Recipe(mode="static"))
    with pytest.raises(ValueError, match="needs router"):
        RouteHeadReranker(tiny_llama_dir, Recipe(mode="routed"))
    with pytest.raises(ValueError, match="out of range"):
        RouteHeadReranker(recipe=Recipe(mode="static", heads=[270]))  # 30 layers x 9 heads
    with pytest.raises(ValueError, match="mode must be one of"):
        RouteHeadReranker(recipe=Recipe(mode="best"))


def test_routed_mode_uses_the_router_heads(default_reranker):
    class FirstLayers:
        def select(self, query, backbone):
            return [0, 1, 9] if "scurvy" in query else [100]

    routed = RouteHeadReranker(recipe=Recipe(mode="routed"), router=FirstLayers())
    static = RouteHeadReranker(recipe=Recipe(mode="static", heads=[0, 1, 9], aggregation="per_head"))
    docs = ["vitamin C prevents scurvy", "ships sail", "oranges"]
    assert routed.rerank("scurvy?", docs) == static.rerank("scurvy?", docs)
    assert routed.rerank("scurvy?", docs)[0].relevance_fit == "across-settings"  # a router of one's own: never absent
    summed = RouteHeadReranker(recipe=Recipe(mode="routed", aggregation="summed"), router=FirstLayers())
    as_qrhead = RouteHeadReranker(recipe=Recipe(mode="static", heads=[0, 1, 9]))
    assert as_qrhead.aggregation == "summed" and summed.rerank("scurvy?", docs) == as_qrhead.rerank("scurvy?", docs)
    assert routed.select_heads("other") == {100: 1.0}


def test_a_router_may_weight_its_heads(default_reranker):
    class Weighted:
        def __init__(self, weights):
            self.weights = weights

        def select(self, query, backbone):
            return self.weights

    docs = ["vitamin C prevents scurvy", "ships sail", "oranges and lemons", "scurvy at sea"]
    one_head = RouteHeadReranker(recipe=Recipe(mode="static", heads=[100], aggregation="per_head")).rerank(
        "scurvy?", docs)
    zero_weighted = RouteHeadReranker(router=Weighted({100: 2.0, 3: 0.0})).rerank("scurvy?", docs)
    assert [r.index for r in zero_weighted] == [r.index for r in one_head]
    assert [r.score for r in zero_weighted] == pytest.approx([r.score for r in one_head], rel=1e-12)
    weighted = RouteHeadReranker(router=Weighted({100: 3.0, 250: -1.0}))
    assert weighted.select_heads("scurvy?") == {100: 0.75, 250: -0.25}  # normalised to absolute values summing to 1
    against = RouteHeadReranker(router=Weighted({100: -1.0})).rerank("scurvy?", docs)  # a negative weight counts against
    assert [r.index for r in against] == [r.index for r in reversed(one_head)]
    assert blend([1, 2], {2: 1.0, 3: 1.0}, 0.25) == {1: 0.375, 2: 0.5, 3: 0.125}  # a head routed and static gets both
    assert blend([1, 2], {3: 2.0, 4: -2.0}, 0.5) == {1: 0.25, 2: 0.25, 3: 0.25, 4: -0.25}
    assert blend([1, 2], {}, 0.25) == {1: 0.5, 2: 0.5}
    assert blend([1], {1: -2.0, 2: 2.0}, 0.5) == {1: 0.25, 2: 0.25}  # a routed head offsetting a negative static one
    for bad in ({100: float("nan")}, {100: 0.0, 3: 0.0}):
        with pytest.raises(ValueError, match="head weights must be"):
            RouteHeadReranker(router=Weighted(bad)).rerank("scurvy?", docs)


def test_scores_are_python_floats_and_deterministic(default_reranker):
    docs = ["Vitamin C prevents scurvy.", {"title": "Ships", "text": "Clippers sailed fast."}, "Ünïcödé ✓ 日本語 🚢"]
    first, second = default_reranker.rerank("scurvy?", docs), default_reranker.rerank("scurvy?", docs)
    assert first == second
    assert all(type(r.score) is float for r in first)
    assert sorted(r.index for r in first) == [0, 1, 2]
    assert first[0].document is docs[first[0].index]
    assert len(default_reranker.rerank("scurvy?", docs, top_n=2)) == 2


def test_long_lists_are_split_into_windows_and_nothing_is_dropped(tiny_llama_dir):
    reranker = RouteHeadReranker(tiny_llama_dir, max_tokens=300)
    docs = [f"document number {i} " + "lorem ipsum dolor sit amet " * (i % 7 + 3) for i in range(25)]
    results = reranker.rerank("lorem?", docs)
    assert sorted(r.index for r in results) == list(range(25))
    assert all(math.isfinite(r.score) for r in results)
    # the scores of a window do not depend on documents in other windows: windows of 5 documents
    windowed = RouteHeadReranker(tiny_llama_dir, window_size=5)
    alone = RouteHeadReranker(tiny_llama_dir)
    assert windowed.head_scores("lorem?", docs[:10])[:, 5:].tolist() == alone.head_scores("lorem?", docs[5:10]).tolist()


def test_every_scoring_setting_keys_the_feature_cache(tiny_llama_dir):
    """The window size changes the scores (above), so cached features of one size are not those of another."""
    base = RouteHeadReranker(tiny_llama_dir)
    others = [RouteHeadReranker(tiny_llama_dir, window_size=5), RouteHeadReranker(tiny_llama_dir, max_tokens=300),
              RouteHeadReranker(tiny_llama_dir, max_doc_words=40), RouteHeadReranker(tiny_llama_dir, reverse=False)]
    assert len({features_dir(r) for r in [base, *others]}) == 5
    # the mode does not score
    assert features_dir(RouteHeadReranker(tiny_llama_dir, Recipe(mode="all"))) == features_dir(base)


def test_the_default_document_budget_is_the_shipped_routers(default_reranker):
    assert default_reranker.settings.max_doc_words == default_reranker.router.training["config"]["max_doc_words"] == 150


def test_one_ranking_recipe_for_all_heads_and_for_weighted_heads():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 0.0, 0.0, 1.0], [float("nan")] * 4], dtype=torch.float64)
    icr = rank(scores[:2], None, rank_prior(4), 0.5)  # all heads: the raw sum, no fusion
    assert icr.scores.tolist() == [3.0, 3.0, 3.0, 1.0] and icr.order == [0, 1, 2, 3]  # ties keep the input order
    weighted = rank(scores, {0: 0.75, 1: -0.25}, rank_prior(4), 0.5)  # the unselected NaN row is never read
    assert torch.equal(weighted.scores, fuse(scores, {0: 0.75, 1: -0.25}, rank_prior(4), 0.5))
    assert weighted.order == [1, 2, 0, 3]  # documents 1 and 2 score alike on the heads; the first stage decides
    assert rank(scores, {0: 0.75, 1: -0.25}, rank_prior(4), 0.0).order[:2] == [1, 2]  # a tie: the input order


def test_windows_fit_are_contiguous_and_balanced():
    costs = [30, 50, 20, 80, 10, 60, 40, 30, 20, 70]
    windows = plan_windows(costs, capacity=150)
    assert [i for w in windows for i in w] == list(range(len(costs)))
    assert all(sum(costs[i] for i in w) <= 150 for w in windows)
    assert len(windows) == 4  # greedy packing, which is the fewest contiguous windows
    assert min(sum(costs[i] for i in w) for w in windows) >= 90  # balanced: no near-empty leftover
    counts = [len(w) for w in plan_windows([1] * 21, capacity=100, max_docs=20)]
    assert counts == [11, 10]
    with pytest.raises(ValueError, match="cannot fit"):
        plan_windows([200], capacity=100)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(min_size=0, max_size=60),
       docs=st.lists(st.one_of(st.text(max_size=40), st.text(min_size=300, max_size=1500)), max_size=6),
       top_n=st.one_of(st.none(), st.integers(min_value=1, max_value=8)))
def test_any_unicode_input_gives_finite_scores_or_a_documented_error(tiny_llama_dir, query, docs, top_n):
    reranker = RouteHeadReranker(tiny_llama_dir, max_tokens=256, max_doc_words=None)
    try:
        results = reranker.rerank(query, docs, top_n=top_n)
    except ValueError as err:  # documented: blank query, or a query too long to leave room for documents
        assert "query is empty" in str(err) or "leaving no room for documents" in str(err)
        return
    assert len(results) == min(len(docs), top_n or len(docs))
    assert len({r.index for r in results}) == len(results)
    assert all(math.isfinite(r.score) for r in results)


# Issue 30: smaller input bugs, each answered with an error that names the input and says what to do

@pytest.fixture(scope="module")
def tiny(tiny_llama_dir) -> RouteHeadReranker:
    return RouteHeadReranker(tiny_llama_dir)


@pytest.mark.parametrize("query, docs, message", [
    ("q", ["ok", json.loads('"abc\\ud800def"')], r"documents\[1\] holds a lone surrogate \('\\ud800' at character 3\)"),
    ("q", ["ok", {"text": "é \udc00"}], r"documents\[1\]\['text'\] holds a lone surrogate \('\\udc00' at character 2\)"),
    ("q", [{"text": "ok", "title": "t\udfff"}], r"documents\[0\]\['title'\] holds a lone surrogate"),
    ("q", ["\ud83d\ude00"], r"documents\[0\] holds a lone surrogate \('\\ud83d' at character 0\)"),  # unjoined halves
    ("what \ud800?", ["ok"], r"query holds a lone surrogate \('\\ud800' at character 5\)"),
])
def test_lone_surrogates_are_named_not_a_tokenizer_type_error(tiny, query, docs, message):
    with pytest.raises(ValueError, match=message) as err:
        tiny.rerank(query, docs)
    assert "send valid UTF-8" in str(err.value)


def test_a_json_surrogate_pair_is_valid_text(tiny):
    emoji = json.loads('"ship \\ud83d\\udea2"')  # a paired escape decodes to one character
    assert emoji == "ship 🚢" and len(tiny.rerank("ships?", [emoji, "ok"])) == 2


def first_stage_reranker(tiny_llama_dir) -> RouteHeadReranker:
    """Static heads with a first-stage weight: the first-stage scores change the ranking."""
    return RouteHeadReranker(tiny_llama_dir, Recipe(mode="static", heads=[0, 5, 9], fusion_weight=1.0))


@pytest.mark.parametrize("scores, error, message", [
    ([0.5, float("nan"), 0.1], ValueError, r"first_stage_scores\[1\] is nan; each score must be finite"),
    ([0.5, 0.2, float("-inf")], ValueError, r"first_stage_scores\[2\] is -inf; each score must be finite"),
    ([0.5, 10**400, 0.1], ValueError, r"first_stage_scores\[1\] is 1000.*must be finite"),
    ([None, 0.2, 0.1], TypeError, r"first_stage_scores\[0\] is None; each score must be a real number"),
    ([0.5, True, 0.1], TypeError, r"first_stage_scores\[1\] is True; each score must be a real number"),
    ([0.5, np.bool_(False), 0.1], TypeError, r"first_stage_scores\[1\] is np.False_"),
    ([0.5, "0.2", 0.1], TypeError, r"first_stage_scores\[1\] is '0.2'"),
    (0.5, TypeError, r"first_stage_scores must be a list of one number per document \(3\), not a float"),
    ("0.5", TypeError, r"first_stage_scores must be a list of one number per document \(3\), not a str"),
    ({0: 0.5}, TypeError, r"first_stage_scores must be a list .* not a dict"),
    (np.float64(0.5), TypeError, r"first_stage_scores must be a list .* not a float"),  # a numpy scalar, 0-D
    ([0.5, 0.2], ValueError, r"first_stage_scores has 2 numbers for 3 documents; give one per document"),
    (np.zeros(4), ValueError, r"first_stage_scores has 4 numbers for 3 documents"),
])
def test_bad_first_stage_scores_name_the_position(tiny_llama_dir, scores, error, message):
    with pytest.raises(error, match=message):
        first_stage_reranker(tiny_llama_dir).rerank("lorem?", ["a b", "c d", "e f"], first_stage_scores=scores)


def test_first_stage_scores_take_numpy_and_torch_numbers(tiny_llama_dir):
    reranker = first_stage_reranker(tiny_llama_dir)
    docs = ["lorem ipsum", "dolor sit amet", "consectetur", "adipiscing elit"]
    plain = reranker.rerank("lorem?", docs, first_stage_scores=[0.25, 4.0, -1.5, 2])
    for same in ([np.float64(0.25), np.float32(4.0), np.float16(-1.5), np.int64(2)], (0.25, 4.0, -1.5, 2),
                 np.array([0.25, 4.0, -1.5, 2.0]), torch.tensor([0.25, 4.0, -1.5, 2.0])):
        assert reranker.rerank("lorem?", docs, first_stage_scores=same) == plain
    assert reranker.rerank("lorem?", docs, first_stage_scores=[2, -1.5, 4.0, 0.25]) != plain  # the scores count
    assert reranker.rerank("lorem?", [], first_stage_scores=[]) == []


@pytest.mark.parametrize("docs, message", [
    (["ok", None], r"documents\[1\] is None; each document must be a str or a dict"),
    ([{"text": 3}], r"documents\[0\]\['text'\] must be a string, not int"),
    ([{"text": None, "title": "t"}], r"documents\[0\] is a dict without a string 'text' field"),
    (["ok", b"raw bytes"], r"documents\[1\] is bytes, not text; decode it first"),
    ([bytearray(b"x")], r"documents\[0\] is bytearray, not text"),
    (b"raw bytes", r"documents must be a list .* not a single bytes"),
    ({"text": "one"}, r"documents must be a list .* not a single dict"),
    (None, r"documents must be a list of strings or \{'text', 'title'\} dicts, not None"),
    ((d for d in ["a", "b"]), r"documents must be a list \(or other sequence\) .* not a generator; pass list\(documents\)"),
    (iter(["a"]), r"not a list_iterator; pass list\(documents\)"),
    (3, r"documents must be a list \(or other sequence\) .* not a int\.$"),
])
def test_documents_that_are_not_text_are_named(tiny, docs, message):
    with pytest.raises(TypeError, match=message):
        tiny.rerank("query", docs)


def test_other_document_containers_sizes_and_queries(tiny):
    assert [r.index for r in tiny.rerank("q", ("a", "b"))] == [r.index for r in tiny.rerank("q", ["a", "b"])]
    assert tiny.rerank("q", []) == [] and tiny.rerank("q", [], top_n=3) == []
    assert sorted(r.index for r in tiny.rerank("q", ["a", "b", "c"], top_n=10**12)) == [0, 1, 2]  # huge top_n: all
    for blank in ("\u3000\u00a0", "\u2028 \r\n"):  # Unicode whitespace is blank too
        with pytest.raises(ValueError, match="query is empty or whitespace"):
            tiny.rerank(blank, ["a"])


# Router configs: checked when loaded, not when a query is routed

def router_copy(tmp_path, edit, name: str = "router"):
    folder = tmp_path / name
    shutil.copytree(DEFAULT_ROUTER, folder)
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _set(**values):
    return lambda config: config.update(values)


@pytest.mark.parametrize("edit, message", [
    (_set(top_k=100), r"top_k is 100, but it must be a whole number from 1 to the 64 candidate_heads"),
    (_set(top_k=0), r"top_k is 0, but it must be a whole number from 1"),
    (_set(top_k=2.0), r"top_k is 2.0"),
    (_set(embed_layer=99), r"embed_layer is 99, but SmolLM2-135M-Instruct has hidden-state layers 0..30 only"),
    (_set(embed_layer=-1), r"embed_layer is -1, but .* 0..30 only"),
    (_set(embed_layer="10"), r"embed_layer is '10', not a hidden-state layer number"),
    (lambda c: c["candidate_heads"].__setitem__(3, -2), r"candidate_heads holds \[-2\], beyond .*\(indices 0..269\)"),
    (lambda c: c["candidate_heads"].__setitem__(3, 270), r"candidate_heads holds \[270\], beyond"),
    (lambda c: c["candidate_heads"].__setitem__(3, True), r"candidate_heads is .* not a list of head indices"),
    (lambda c: c["candidate_heads"].__setitem__(3, c["candidate_heads"][0]), r"candidate_heads holds \[\d+\] more than once"),
    (_set(candidate_heads=[]), r"candidate_heads is empty"),
    (_set(qrhead_heads=[999]), r"qrhead_heads holds \[999\], beyond"),
    (lambda c: c["shared_heads"].update({"300": 0.1}), r"shared_heads holds \[300\], beyond"),
    (_set(dim=32), r"the weight proj.weight is \[64, 576\], not \[32, 576\] as dim=32"),
    (lambda c: c.update(candidate_heads=c["candidate_heads"][:10]), r"the weight heads is \[64, 64\], not \[10, 64\]"),
    (_set(pooling="max"), r"pooling is 'max', not 'mean' or 'last'"),
    (_set(shared_fraction=1.5), r"shared_fraction is 1.5, not a number from 0 to 1"),
    (_set(fusion_weight=None), r"fusion_weight is None, not a finite number"),
    (lambda c: c["backbone"].update(n_layers=20), r"candidate_heads holds \[.*\], beyond SmolLM2-135M-Instruct's 20 layers"),
])
def test_router_configs_that_cannot_route_are_refused_when_loaded(tmp_path, edit, message):
    folder = router_copy(tmp_path, edit)
    with pytest.raises(RouterConfigError, match=message) as err:
        load_router(folder)
    assert f"the router in {folder}" in str(err.value) and "retrain the router" in str(err.value)
    assert "fix its config.json" in str(err.value)


def test_a_bad_router_is_refused_by_the_reranker_and_the_cli(tmp_path, capsys):
    folder = router_copy(tmp_path, _set(top_k=100))
    with pytest.raises(ValueError, match=r"top_k is 100"):
        RouteHeadReranker(router=folder)
    docs = tmp_path / "docs.txt"
    docs.write_text("one\ntwo\n")
    assert cli.main(["rerank", "--query", "q", "--docs", str(docs), "--router", str(folder)]) == 2
    assert f"the router in {folder}: top_k is 100" in capsys.readouterr().err


def test_a_bad_member_of_an_ensemble_is_named(tmp_path):
    RouterEnsemble([load_router(DEFAULT_ROUTER), load_router(DEFAULT_ROUTER)]).save(tmp_path / "ensemble")
    assert isinstance(load_router(tmp_path / "ensemble"), RouterEnsemble)
    config = json.loads((tmp_path / "ensemble" / "config.json").read_text())
    config["members"][1]["embed_layer"] = 31
    (tmp_path / "ensemble" / "config.json").write_text(json.dumps(config))
    with pytest.raises(RouterConfigError, match=r"ensemble \(members\[1\]\): embed_layer is 31"):
        load_router(tmp_path / "ensemble")


def test_check_backbone_checks_layers_heads_and_hidden_size(default_reranker, tiny):
    router = load_router(DEFAULT_ROUTER)
    router.check_backbone(default_reranker.backbone)  # the shipped router fits its model
    for field, value, message in (("embed_layer", 31, r"embed_layer is 31, but SmolLM2-135M-Instruct has hidden-state "
                                                      r"layers 0..30 only"),
                                  ("candidate_heads", [0, 1, 270, 3, 4], r"candidate_heads holds \[270\]"),
                                  ("top_k", 6, r"top_k is 6, but it must be from 1 to its 5 candidate_heads")):
        broken = load_router(DEFAULT_ROUTER)
        if field == "top_k":
            broken.config.candidate_heads = [0, 1, 2, 3, 4]
        setattr(broken.config, field, value)
        with pytest.raises(RouterConfigError, match=message):
            broken.check_backbone(default_reranker.backbone)
    backbone = tiny.backbone  # 4 layers x 4 heads, hidden size 64
    config = RouterConfig(backbone={"name": backbone.name, "n_layers": 4, "n_heads": 4,
                                    "fingerprint": backbone.fingerprint},
                          candidate_heads=list(range(8)), embed_layer=1, pooling="mean", top_k=2, fusion_weight=0.0)
    with pytest.raises(RouterConfigError, match=r"its weights read 576-wide query embeddings, but .* hidden size is 64"):
        Router(config, RouterNet(576, 8, 64)).check_backbone(backbone)
    Router(config, RouterNet(64, 8, 64)).check_backbone(backbone)


# routehead rerank: files, and what it prints

def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["rerank", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", b"", "has no documents (it is empty or blank); pass a .jsonl file"),
    ("blank.jsonl", b"\n  \n\t\r\n", "has no documents"),
    ("image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is not UTF-8 text (byte 0x89 at offset 0); pass a .jsonl"),
    ("latin1.txt", "café\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9 at offset 3)"),
    ("nul.txt", b"text\x00\x01\x02\n", "holds NUL bytes, so it is a binary file, not text"),
    ("utf16.txt", "one\n".encode("utf-16"), "is not UTF-8 text"),
])
def test_cli_refuses_files_without_documents_naming_them(tmp_path, capsys, tiny_llama_dir, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = run_cli(capsys, "--query", "q", "--docs", str(path), "--model", str(tiny_llama_dir))
    assert code == 2 and out == ""
    assert f"routehead rerank: error: {path} {message}" in err


def test_cli_refuses_a_folder_and_a_missing_file_naming_them(tmp_path, capsys, tiny_llama_dir):
    code, _, err = run_cli(capsys, "--query", "q", "--docs", str(tmp_path), "--model", str(tiny_llama_dir))
    assert code == 2 and f"{tmp_path} is a folder; pass a file in it" in err
    missing = tmp_path / "missing.jsonl"
    code, _, err = run_cli(capsys, "--query", "q", "--docs", str(missing), "--model", str(tiny_llama_dir))
    assert code == 2 and f"{missing} does not exist; pass a .jsonl file" in err


@pytest.mark.parametrize("lines, message", [
    (['{"text": "ok"}', "", "{not json"], r"docs.jsonl:3 is not valid JSON"),  # the file's own line numbers
    (['{"text": "ok"}', '{"text": 3}'], r"docs.jsonl:2: documents\[1\]\['text'\] must be a string, not int"),
    (['{"text": "a \\ud800 b"}'], r"docs.jsonl:1: documents\[0\]\['text'\] holds a lone surrogate \('\\ud800' at character 2\)"),
    (["", '"just a string"', "null"], r"docs.jsonl:3: documents\[1\] is None"),
])
def test_cli_names_the_bad_line_of_a_jsonl_file(tmp_path, capsys, tiny_llama_dir, lines, message):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = run_cli(capsys, "--query", "q", "--docs", str(path), "--model", str(tiny_llama_dir))
    assert code == 2 and out == "" and re.search(message, err), err


def test_cli_reads_lines_as_written(tmp_path):
    jsonl = tmp_path / "docs.jsonl"  # a byte-order mark, CRLF, and U+2028 / form feed inside a document
    jsonl.write_bytes(b"\xef\xbb\xbf" + '{"text": "one\u2028line"}\r\n\r\n{"text": "two\\fparts"}\r\n'.encode())
    assert [d.text for d in read_documents(jsonl)] == ["one\u2028line", "two\fparts"]
    text = tmp_path / "docs.TXT"
    text.write_text("first\x85still first\n\nsecond\n", encoding="utf-8")
    assert [d.text for d in read_documents(text)] == ["first\x85still first", "second"]


def test_cli_blank_query_and_bad_options_fail_before_the_model_loads(tmp_path, capsys):
    docs = tmp_path / "docs.txt"
    docs.write_text("one\n")
    never = str(tmp_path / "no-model")  # would be "does not exist", were it loaded
    for args, message in ((["--query", "  "], "query is empty or whitespace"),
                          (["--query", "q", "--top-n", "0"], "--top-n must be a positive integer, not 0"),
                          (["--query", "q", "--heads", "1,x"], "--heads '1,x' is not a comma-separated list")):
        code, _, err = run_cli(capsys, *args, "--docs", str(docs), "--model", never)
        assert code == 2 and message in err, err


CONTROL_TEXTS = ["\x1b[31mred\x1b[0m \x1b]0;pwned\x07", "c1 \x9b2J and \x85 next", "nul \x00 del \x7f bell \x07",
                 "tab\there\nnew line\rreturn", "bidi \u202eevil\u202c \u2066x\u2069", "plain café 日本語"]
TERMINAL_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")  # "\n" ends lines


def test_cli_prints_no_control_characters(tmp_path, capsys, tiny_llama_dir):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t, "title": "t\x1b[1m" if i == 0 else ""}) + "\n"
                            for i, t in enumerate(CONTROL_TEXTS)))
    query = "\x1b[2Jwhich\x9b?"
    code, out, _ = run_cli(capsys, "--query", query, "--docs", str(path), "--model", str(tiny_llama_dir))
    assert code == 0 and not TERMINAL_UNSAFE.search(out), ascii(out)
    assert out.startswith("query: \\x1b[2Jwhich\\x9b?\n")
    # query, counts, blank, column header, one line per document, blank, what the relevance column means
    assert len(out.strip().split("\n")) == 6 + len(CONTROL_TEXTS)
    assert "\\x1b[31mred\\x1b[0m \\x1b]0;pwned\\x07" in out and "c1 \\x9b2J and   next" in out
    assert "nul \\x00 del \\x7f" in out and "tab here new line return" in out and "\\u202eevil" in out
    assert "plain café 日本語" in out and "t\\x1b[1m: " in out

    code, out, _ = run_cli(capsys, "--query", query, "--docs", str(path), "--model", str(tiny_llama_dir), "--json")
    assert code == 0 and not TERMINAL_UNSAFE.search(out), ascii(out)
    ranked = json.loads(out)
    assert sorted(r["text"] for r in ranked) == sorted(CONTROL_TEXTS)  # escaped, not changed
    assert "plain café 日本語" in out  # non-ASCII text is kept readable
