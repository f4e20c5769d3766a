"""Bad input gets an error that says what to do; any Unicode input gets finite scores for every document."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routehead_rag import RouteHeadReranker
from routehead_rag.features import features_dir
from routehead_rag.heads import blend
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
        RouteHeadReranker(tiny_llama_dir, mode="static")
    with pytest.raises(ValueError, match="needs router"):
        RouteHeadReranker(tiny_llama_dir, mode="routed")
    with pytest.raises(ValueError, match="out of range"):
        RouteHeadReranker(mode="static", heads=[270])  # 30 layers x 9 heads
    with pytest.raises(ValueError, match="mode must be one of"):
        RouteHeadReranker(mode="best")


def test_routed_mode_uses_the_router_heads(default_reranker):
    class FirstLayers:
        def select(self, query, backbone):
            return [0, 1, 9] if "scurvy" in query else [100]

    routed = RouteHeadReranker(mode="routed", router=FirstLayers())
    static = RouteHeadReranker(mode="static", heads=[0, 1, 9])
    docs = ["vitamin C prevents scurvy", "ships sail", "oranges"]
    assert routed.rerank("scurvy?", docs) == static.rerank("scurvy?", docs)
    assert routed.select_heads("other") == {100: 1.0}


def test_a_router_may_weight_its_heads(default_reranker):
    class Weighted:
        def __init__(self, weights):
            self.weights = weights

        def select(self, query, backbone):
            return self.weights

    docs = ["vitamin C prevents scurvy", "ships sail", "oranges and lemons", "scurvy at sea"]
    one_head = RouteHeadReranker(mode="static", heads=[100]).rerank("scurvy?", docs)
    assert RouteHeadReranker(router=Weighted({100: 2.0, 3: 0.0})).rerank("scurvy?", docs) == one_head
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
    assert features_dir(RouteHeadReranker(tiny_llama_dir, mode="all")) == features_dir(base)  # the mode does not score


def test_the_default_document_budget_is_the_shipped_routers(default_reranker):
    assert default_reranker.settings.max_doc_words == default_reranker.router.training["max_doc_words"] == 150


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
