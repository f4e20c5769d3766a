"""``rerank(..., first_stage=...)``: the input order as a retriever's ranking, explicit scores, or none (a set)."""

from __future__ import annotations

import pytest

from routehead_rag import Recipe, RouteHeadReranker

QUERY = "What causes scurvy?"
DOCS = ["Scurvy is a disease caused by a lack of vitamin C.", "Clipper ships carried tea.",
        "Lemons hold vitamin C.", "Rickets weakens bones."]


@pytest.fixture(scope="module")
def fused(tiny_llama_dir) -> RouteHeadReranker:
    """Static heads with the first stage weighed in, on the tiny model."""
    return RouteHeadReranker(tiny_llama_dir, Recipe(mode="static", heads=[1, 9, 14], fusion_weight=1.0),
                             dtype="float32")


def scores(results) -> dict[int, float]:
    return {r.index: r.score for r in results}


def test_first_stage_order_is_the_default_and_scores_replace_it(fused):
    order = scores(fused.rerank(QUERY, DOCS))
    assert scores(fused.rerank(QUERY, DOCS, first_stage="order")) == order
    given = [0.1, 0.9, 0.3, 0.2]
    as_first_stage = scores(fused.rerank(QUERY, DOCS, first_stage=given))
    assert as_first_stage == scores(fused.rerank(QUERY, DOCS, first_stage_scores=given))  # the older name still works
    assert as_first_stage != order


def test_first_stage_none_weighs_no_order(fused):
    none = scores(fused.rerank(QUERY, DOCS, first_stage="none"))
    canonical = sorted(range(len(DOCS)), key=lambda i: DOCS[i])  # a set is laid out in one order: by its text
    constant = scores(fused.rerank(QUERY, [DOCS[i] for i in canonical], first_stage=[1.0] * len(DOCS)))
    assert none == {canonical[k]: score for k, score in constant.items()}  # constant scores: no evidence
    assert none != scores(fused.rerank(QUERY, DOCS))
    assert scores(fused.rerank_many([QUERY], [DOCS], first_stage="none")[0]) == none


def test_a_set_scores_alike_in_any_order_in_the_sequential_layout_too(fused):
    results = {}
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        got = fused.rerank(QUERY, [DOCS[i] for i in order], first_stage="none")
        results[tuple(order)] = {DOCS[order[r.index]]: (r.score, r.relevance_score) for r in got}
    first, *others = results.values()
    assert all(other == first for other in others)  # exactly: the same prompt whatever the order


def test_relevance_never_rises_down_the_ranking(default_reranker):
    docs = ["Scurvy is a disease caused by a lack of vitamin C.", "Clipper ships carried tea from China.",
            "Lemons and oranges are rich in vitamin C.", "Rickets weakens the bones of children.",
            "Sailors on long voyages fell ill without fresh fruit."]
    for first_stage in ("order", "none"):
        relevance = [r.relevance_score for r in default_reranker.rerank(QUERY, docs, first_stage=first_stage)]
        assert relevance == sorted(relevance, reverse=True)


def test_block_layout_with_no_first_stage_ignores_the_input_order(tiny_llama_dir):
    """The set semantics end to end: the block layout's attention and no first stage."""
    block = RouteHeadReranker(tiny_llama_dir, Recipe(mode="static", heads=[1, 9, 14], fusion_weight=1.0,
                                                     layout="block"), dtype="float32")
    forward = scores(block.rerank(QUERY, DOCS, first_stage="none"))
    backward = scores(block.rerank(QUERY, DOCS[::-1], first_stage="none"))
    n = len(DOCS)
    assert [backward[n - 1 - i] for i in range(n)] == pytest.approx([forward[i] for i in range(n)], abs=1e-4)  # float noise of the reordered prefix


def test_first_stage_mistakes_say_what_to_give(fused):
    with pytest.raises(ValueError, match="'order'.*'none'"):
        fused.rerank(QUERY, DOCS, first_stage="reversed")
    with pytest.raises(ValueError, match="give the first stage once"):
        fused.rerank(QUERY, DOCS, first_stage="none", first_stage_scores=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="one per document"):
        fused.rerank(QUERY, DOCS, first_stage=[1.0, 2.0])
    with pytest.raises(TypeError, match="first_stage_scores"):
        fused.rerank_many([QUERY], [DOCS], first_stage=[1.0, 2.0, 3.0, 4.0])


def test_cli_rerank_takes_first_stage(tmp_path, capsys, default_reranker):
    """`routehead rerank --first-stage none`: the file's order weighs nothing in the routed score (its router's
    first-stage weight is not 0), and every row still has a relevance score in [0, 1]."""
    import json

    from routehead_rag import cli

    path = tmp_path / "docs.txt"
    path.write_text("\n".join(DOCS) + "\n")
    runs = {}
    for first_stage in ("order", "none"):
        assert cli.main(["rerank", "--query", QUERY, "--docs", str(path), "--json", "--first-stage", first_stage]) == 0
        runs[first_stage] = json.loads(capsys.readouterr().out)
    assert all(0 <= row["relevance_score"] <= 1 for rows in runs.values() for row in rows)
    scores = {stage: {row["index"]: row["score"] for row in rows} for stage, rows in runs.items()}
    assert scores["none"] == {r.index: r.score for r in default_reranker.rerank(QUERY, DOCS, first_stage="none")}
    assert scores["none"] != scores["order"]


def test_an_empty_list_is_answered_quietly(default_reranker):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torch warning about the standard deviation of nothing
        for first_stage in ("order", "none"):
            assert default_reranker.rerank(QUERY, [], first_stage=first_stage) == []
