"""One scoring recipe (routehead_rag.recipe.Recipe): the reranker, the benchmark, the cache key and the server take
it; the recipe's fields given as keywords the old way still work, with a DeprecationWarning."""

from __future__ import annotations

import warnings

import pytest

from families import DOCS, QUERY, load
from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.bench.methods import METHODS


def test_old_keywords_still_work_with_a_deprecation_warning(tiny_llama_dir):
    tiny = load(tiny_llama_dir)
    with pytest.warns(DeprecationWarning, match=r"recipe=Recipe\(mode=\.\.\., layout=\.\.\.\)"):
        old = RouteHeadReranker(tiny, mode="all", layout="block")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new = RouteHeadReranker(tiny, Recipe(mode="all", layout="block"))
    assert old.recipe == new.recipe and old.cache_key() == new.cache_key() and old.setup() == new.setup()
    assert [(r.index, r.score) for r in old.rerank(QUERY, DOCS)] == [(r.index, r.score) for r in new.rerank(QUERY, DOCS)]
    with pytest.warns(DeprecationWarning):
        static = RouteHeadReranker(tiny, heads=[1, 5], fusion_weight=0.5)
    assert (static.mode, static.heads, static.fusion_weight) == ("static", [1, 5], 0.5)


def test_a_field_given_twice_or_unknown_is_refused(tiny_llama_dir):
    tiny = load(tiny_llama_dir)
    with pytest.raises(ValueError, match="given both"):
        RouteHeadReranker(tiny, Recipe(mode="all"), mode="static")
    with pytest.raises(TypeError, match="unknown options \\['moed'\\]"):
        RouteHeadReranker(tiny, moed="all")
    with pytest.raises(ValueError, match="layer indices 0..3"):
        RouteHeadReranker(tiny, Recipe(mode="all", layers=[1, 7]))


@pytest.mark.parametrize("fields, message", [
    ({"mode": "sometimes"}, "mode must be one of"),
    ({"layout": "grid"}, "layout must be one of"),
    ({"ape": (0.8, 0.8)}, "pass layout='block'"),
    ({"mode": "routed", "heads": [1]}, "for mode='static'"),
    ({"layers": [1, 2]}, "for mode='all'"),
    ({"mode": "adapter"}, "pass adapter="),
    ({"reweighting": "reattn", "aggregation": "per_head"}, "aggregation='summed'"),
    ({"fusion_weight": "high"}, "fusion_weight must be a number"),
    ({"heads": []}, "head indices"),
    ({"adapter": "a.safetensors", "layout": "block", "ape": (0.8, 0.8)}, "not applied to a trained adapter"),
])
def test_a_recipe_checks_itself_without_a_model(fields, message):
    with pytest.raises(ValueError, match=message):
        Recipe(**fields)


def test_a_recipe_normalizes_what_it_is_given():
    recipe = Recipe(heads=[5, 1, 5])
    assert recipe.mode == "static" and recipe.heads == (1, 5)
    assert Recipe(mode="all", layers=range(8, 11)).layers == (8, 9, 10)
    assert Recipe(layout="block", ape=(1, 1)).ape is None  # plain attention: the block cache key
    assert Recipe(mode="all").key() == {"mode": "all"}


def test_every_benchmark_method_is_a_recipe():
    for name, (fields, _) in METHODS.items():
        if fields is not None:
            assert Recipe(**fields).mode in ("all", "static", "routed"), name
