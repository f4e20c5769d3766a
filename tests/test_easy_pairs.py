"""The easy-pairs check (routehead_rag.bench.easy_pairs): its draw, its statistics, and that what it replays is what
``rerank`` gives, on the real default model."""

from __future__ import annotations

import pytest

from routehead_rag.bench.easy_pairs import easy_pairs, evaluate, kendall_tau, pair_features, replay_with_prior
from routehead_rag.bench.runner import method_rerankers
from routehead_rag.data.datasets import Dataset
from routehead_rag.features import replay
from routehead_rag.prompt import MAX_DOC_WORDS

CORPUS = {
    "scurvy": {"title": "Scurvy", "text": "Scurvy is a disease caused by a lack of vitamin C in the diet."},
    "rickets": {"title": "Rickets", "text": "Rickets softens the bones of children who lack vitamin D."},
    "eiffel": {"title": "Eiffel Tower", "text": "The Eiffel Tower is a wrought-iron tower in Paris, France."},
    "python": {"title": "Python", "text": "Python is a programming language with dynamic typing."},
    "tides": {"title": "Tides", "text": "Tides are caused by the gravity of the Moon and the Sun."},
    "violin": {"title": "Violin", "text": "The violin is a string instrument played with a bow."},
}
DATASET = Dataset(name="toy", queries={"q1": "What causes scurvy?", "q2": "What causes the tides?",
                                       "q3": "An unjudged query"},
                  qrels={"q1": {"scurvy": 1, "rickets": 0}, "q2": {"tides": 2}}, corpus=CORPUS)


def test_draw_is_seeded_and_reversed():
    pairs = easy_pairs(DATASET, n_queries=5, k=3, seed=1)
    assert set(pairs.queries) == {"q1", "q2"}  # q3 has no relevant document
    assert pairs == easy_pairs(DATASET, n_queries=5, k=3, seed=1)
    for qid, lists in pairs.lists.items():
        assert lists["first"][0] == pairs.relevant[qid] == lists["last"][-1]
        assert lists["last"] == lists["first"][::-1]
        assert len(set(lists["first"])) == 4
        assert all(DATASET.qrels[qid].get(d, 0) <= 0 for d in lists["first"][1:])


def test_draw_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="no corpus"):
        easy_pairs(Dataset(name="x", queries={}, qrels={}, corpus=None), 3, 2)
    with pytest.raises(ValueError, match="at least 1"):
        easy_pairs(DATASET, 0, 2)


def test_kendall_tau():
    assert kendall_tau([3, 2, 1], [30, 20, 10]) == 1.0
    assert kendall_tau([3, 2, 1], [1, 2, 3]) == -1.0
    assert kendall_tau([1, 1, 2], [5, 6, 7]) == pytest.approx(2 / 3)  # the tied pair counts as neither
    assert kendall_tau([1.0], [2.0]) == 1.0


def test_on_the_default_model(default_reranker, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    pairs = easy_pairs(DATASET, n_queries=2, k=2)
    rerankers = method_rerankers(["icr", "routehead_default"], None, None, "auto", MAX_DOC_WORDS)
    features = pair_features(pairs, rerankers["icr"])
    rows = evaluate(pairs, features, rerankers)
    assert set(rows) == {"icr prior on", "icr prior off", "routehead_default prior on", "routehead_default prior off"}
    for row in rows.values():
        assert row["queries"] == 2 and -1 <= row["order_tau"] <= 1
        assert 0 <= row["top1_first"] <= 1 and 0 <= row["top1_last"] <= 1
    assert rows["routehead_default prior on"]["relevance_relevant"] is not None  # the shipped relevance model
    # what the check replays with the prior on is what a user's rerank call gives, in both orders
    routed = rerankers["routehead_default"]
    for order in ("first", "last"):
        docs = [CORPUS[d] for d in pairs.lists["q1"][order]]
        live = [r.index for r in routed.rerank("What causes scurvy?", docs)]
        assert replay_with_prior(routed, features["q1"][order], "What causes scurvy?", True).order == live
        assert replay(routed, features["q1"][order], "What causes scurvy?")[0].order == live
    # and the relevance it reports is rerank's, in both orders of both queries
    relevant, negative = [], []
    for qid, query in pairs.queries.items():
        for order in ("first", "last"):
            for r in routed.rerank(query, [CORPUS[d] for d in pairs.lists[qid][order]]):
                doc = pairs.lists[qid][order][r.index]
                (relevant if doc == pairs.relevant[qid] else negative).append(r.relevance_score)
    row = rows["routehead_default prior on"]
    assert row["relevance_relevant"] == pytest.approx(sum(relevant) / len(relevant), abs=1e-4)
    assert row["relevance_negative"] == pytest.approx(sum(negative) / len(negative), abs=1e-4)
