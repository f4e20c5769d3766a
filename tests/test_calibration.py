"""relevance_score: the relevance model fitted and read back (exact setup, else across settings), its evidence, its
error measured, and the shipped models of the default model: never absent, whatever the mode and settings."""

from __future__ import annotations

import warnings

import pytest
import torch

from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.calibration import (
    Calibration,
    auc,
    domain_weights,
    expected_calibration_error,
    fit_logistic,
    fit_monotone,
    load_calibration,
    save_calibration,
    setup_key,
)
from routehead_rag.documents import Document
from routehead_rag.evidence import FEATURES, document_evidence, lexical_overlap


def test_logistic_fit_recovers_a_logistic_model():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 2, generator=generator, dtype=torch.float64) * torch.tensor([3.0, 0.5], dtype=torch.float64)
    relevant = torch.rand(20000, generator=generator, dtype=torch.float64) < torch.sigmoid(0.7 * x[:, 0] - 2 * x[:, 1] - 1.5)
    coef, intercept, mean, scale = fit_logistic(x, relevant, ridge=0.0)
    model = Calibration(coef=coef, intercept=intercept, mean=mean, scale=scale, setup={})
    assert coef[0] / scale[0] == pytest.approx(0.7, abs=0.05) and coef[1] / scale[1] == pytest.approx(-2, abs=0.15)
    assert float(model(torch.zeros(1, 2, dtype=torch.float64))) == pytest.approx(float(torch.sigmoid(torch.tensor(-1.5))),
                                                                               abs=0.02)
    coef, intercept, _, _ = fit_logistic(torch.tensor([[0.0], [1.0], [2.0], [3.0]]),
                                         torch.tensor([False, False, True, True]))  # separable: finite
    assert 0 < coef[0] < 100 and torch.isfinite(torch.tensor(intercept))
    with pytest.raises(ValueError, match="relevant and non-relevant"):
        fit_logistic(torch.tensor([[0.0], [1.0]]), torch.tensor([True, True]))


def test_monotone_fit_leaves_out_evidence_that_would_count_against_relevance():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(5000, 2, generator=generator, dtype=torch.float64)
    relevant = torch.rand(5000, generator=generator, dtype=torch.float64) < torch.sigmoid(1.5 * x[:, 0] - 1.0 * x[:, 1])
    assert fit_logistic(x, relevant)[0][1] < 0
    coef, intercept, mean, scale = fit_monotone(x, relevant)
    assert coef[0] > 0 and coef[1] == 0.0 and coef[0] == pytest.approx(fit_logistic(x[:, :1], relevant)[0][0])
    model = Calibration(coef=coef, intercept=intercept, mean=mean, scale=scale, setup={})
    assert torch.all((model(x) >= 0) & (model(x) <= 1))


def test_domain_weights_make_each_domain_count_alike():
    weights = domain_weights([3, 1, 0])
    assert weights.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0]) and float(weights.mean()) == pytest.approx(1.0)
    x = torch.tensor([[0.0], [1.0], [0.0], [1.0], [5.0]])
    relevant = torch.tensor([False, True, False, True, True])
    plain, weighted = fit_logistic(x, relevant), fit_logistic(x, relevant, torch.tensor([1.0, 1.0, 1.0, 1.0, 4.0]))
    assert weighted[1] != pytest.approx(plain[1])  # the weight moves the fit


def test_expected_calibration_error_and_auc():
    assert expected_calibration_error([0.2] * 10, [True, True] + [False] * 8)["ece"] == pytest.approx(0.0)
    result = expected_calibration_error([0.9] * 4 + [0.05] * 4, [True, False, True, False] + [False] * 4)
    assert result["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.05)
    assert sum(b["count"] for b in result["bins"]) == 8 and len(result["bins"]) == 10
    assert expected_calibration_error([1.0], [True])["bins"][-1]["count"] == 1  # 1.0 falls in the last bin
    assert auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auc([0.5] * 4, [True, False, True, False]) == 0.5  # the base rate everywhere: chance
    assert auc([0.3, 0.1, 0.2], [True, False, False]) == 1.0 and auc([0.3], [True]) is None


def test_models_are_kept_per_setup_with_one_across_settings_per_backbone(tmp_path):
    routed = setup_key("abc", "routed", "per_head", None, 0.0, {})
    icr = setup_key("abc", "all", "summed", None, 0.0, {})
    model = {"mean": [0.0], "scale": [1.0], "features": ["standing"]}
    save_calibration(tmp_path, Calibration(coef=[2.0], intercept=-1.0, setup=routed, fitted_on={"data": ["x"]}, **model))
    assert load_calibration(tmp_path, routed).coef == [2.0]
    assert load_calibration(tmp_path, icr) is None  # neither its own nor one across settings
    save_calibration(tmp_path, Calibration(coef=[0.5], intercept=0.0, setup={"backbone": "abc"}, fit="across-settings",
                                           **model))
    assert load_calibration(tmp_path, routed).fit == "exact"  # its own still wins
    for other in (icr, setup_key("abc", "routed", "per_head", None, 0.5, {}),
                  setup_key("abc", "all", "summed", None, 0.0, {"max_doc_words": 60})):
        assert load_calibration(tmp_path, other).fit == "across-settings"
    assert load_calibration(tmp_path, setup_key("other", "all", "summed", None, 0.0, {})) is None  # other backbone
    assert load_calibration(tmp_path / "nowhere", icr) is None
    assert float(load_calibration(tmp_path, routed)(torch.tensor([[0.5]]))) == pytest.approx(0.5)


def test_evidence_lexical_overlap_is_absolute_and_the_standing_relative():
    doc = Document(text="Scurvy follows a lack of vitamin C.", title="Scurvy")
    assert lexical_overlap("What causes scurvy?", doc, None) == pytest.approx(0.5)  # "causes" is not in it
    assert lexical_overlap("what is it?", doc, None) == 0.0  # stopwords only
    assert lexical_overlap("vitamin lack", Document(text="lack " + "x " * 10 + "vitamin"), 5) == pytest.approx(0.5)
    evidence = document_evidence("scurvy", [doc, Document(text="")], torch.tensor([0.3, 0.0]),
                                 torch.tensor([2.0, 1.0]), None)
    assert evidence.shape == (2, len(FEATURES)) and evidence[:, 0].tolist() == [1.0, 0.0]
    assert evidence[:, 2].tolist() == [1.0, -1.0]
    assert document_evidence("scurvy", [doc], torch.tensor([0.3]), torch.tensor([5.0]), None)[0, 2] == 0.0


@pytest.mark.parametrize("options", [{}, {"recipe": Recipe(mode="all")}, {"recipe": Recipe(mode="static")},
                                     {"max_doc_words": 60}, {"recipe": Recipe(mode="all", layers=range(8, 20))},
                                     {"recipe": Recipe(mode="static", heads=[133, 139])}])
def test_every_setting_of_the_default_model_has_a_relevance_score(default_reranker, options):
    """Never silently absent: a model of exactly the setup, else the one fitted across settings, which the results
    name and which warns once at load."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reranker = RouteHeadReranker(**options)
    assert reranker.calibration is not None
    across = reranker.calibration.fit == "across-settings"
    assert len([w for w in caught if "fitted across settings" in str(w.message)]) == int(across)
    docs = ["Scurvy is a disease caused by a lack of vitamin C.", "", "Clipper ships carried tea."]
    results = reranker.rerank("What causes scurvy?", docs)
    assert all(r.relevance_fit == reranker.calibration.fit for r in results)
    assert all(0 <= r.relevance_score <= 1 for r in results)
    by_index = {r.index: r.relevance_score for r in results}
    assert by_index[0] > by_index[1] and by_index[0] > by_index[2]


@pytest.mark.parametrize("mode", ["routed", "all"])
def test_relevance_replayed_from_the_cache_is_what_rerank_gives(default_reranker, mode):
    """The benchmark and `routehead calibrate` read the evidence from cached attention (features.replay_evidence);
    it must be the evidence rerank computes live, in the per-head and the summed aggregation alike."""
    from routehead_rag.features import QueryFeatures, replay_evidence

    reranker = default_reranker if mode == "routed" else RouteHeadReranker(recipe=Recipe(mode=mode))
    query, docs = "What causes scurvy?", ["Scurvy is caused by a lack of vitamin C.", "Clipper ships carried tea.",
                                          "Lemons hold vitamin C."]
    diffs = reranker.token_diffs(query, docs)
    cached = QueryFeatures(qid="q", head_scores=diffs.per_head().float(), gains=torch.zeros(len(docs)), ideal_dcg=0.0,
                           embedding=torch.zeros(0), diffs=diffs)
    replayed = reranker.calibration(replay_evidence(reranker, cached, query, docs)[1]).tolist()
    live = {r.index: r.relevance_score for r in reranker.rerank(query, docs)}
    assert [live[i] for i in range(len(docs))] == pytest.approx(replayed, rel=1e-4)


def test_a_minimum_grade_decides_which_candidates_count_as_relevant(default_reranker):
    """TREC DL's passage qrels count grades 2 and 3 for binary measures (1 is 'related' only): ``--min-grade 2``."""
    from routehead_rag.data.datasets import Dataset
    from routehead_rag.features import QueryFeatures
    from routehead_rag.training.calibrate import Labelled, labelled_features, replayed_evidence

    query, docs = "What causes scurvy?", ["Scurvy is caused by a lack of vitamin C.", "Sailors got scurvy.",
                                          "Clipper ships carried tea."]
    diffs = default_reranker.token_diffs(query, docs)
    cached = QueryFeatures(qid="q", head_scores=diffs.per_head().float(), gains=torch.tensor([2.0, 1.0, 0.0]),
                           ideal_dcg=1.0, embedding=torch.zeros(0), diffs=diffs)
    dataset = Dataset(name="d", queries={"q": query}, qrels={"q": {"a": 2, "b": 1}},
                      corpus={k: {"title": "", "text": t} for k, t in zip("abc", docs)})
    for grade, expected in ((1, [True, True, False]), (2, [True, False, False])):
        labelled = Labelled(dataset=dataset, features=[cached], candidates={"q": list("abc")}, min_grade=grade)
        assert replayed_evidence(default_reranker, labelled)[1].tolist() == expected
    with pytest.raises(ValueError, match="min_grade must be a grade of 1 or more"):
        labelled_features(default_reranker, dataset, 3, min_grade=0)
