"""relevance_score: Platt scaling fitted and read back, its error measured, and the shipped map for the default model."""

from __future__ import annotations

import pytest
import torch

from routehead_rag import RouteHeadReranker
from routehead_rag.calibration import (
    Calibration,
    expected_calibration_error,
    fit_platt,
    load_calibration,
    save_calibration,
    setup_key,
)


def test_platt_fit_recovers_a_logistic_model():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(20000, generator=generator, dtype=torch.float64) * 3
    relevant = torch.rand(20000, generator=generator, dtype=torch.float64) < torch.sigmoid(0.7 * scores - 1.5)
    a, b = fit_platt(scores, relevant)
    assert a == pytest.approx(0.7, abs=0.05) and b == pytest.approx(-1.5, abs=0.1)
    a, b = fit_platt(torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([False, False, True, True]))  # separable
    assert 0 < a < 100 and torch.isfinite(torch.tensor(b))
    with pytest.raises(ValueError, match="relevant and non-relevant"):
        fit_platt(torch.tensor([0.0, 1.0]), torch.tensor([True, True]))


def test_expected_calibration_error():
    assert expected_calibration_error([0.2] * 10, [True, True] + [False] * 8)["ece"] == pytest.approx(0.0)
    result = expected_calibration_error([0.9] * 4 + [0.05] * 4, [True, False, True, False] + [False] * 4)
    assert result["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.05)
    assert sum(b["count"] for b in result["bins"]) == 8 and len(result["bins"]) == 10
    assert expected_calibration_error([1.0], [True])["bins"][-1]["count"] == 1  # 1.0 falls in the last bin


def test_calibrations_are_kept_per_setup_and_matched_exactly(tmp_path):
    routed = setup_key("abc", "routed", "per_head", None, 0.0, {})
    icr = setup_key("abc", "all", "summed", None, 0.0, {})
    save_calibration(tmp_path, Calibration(a=2.0, b=-1.0, setup=routed, fitted_on={"data": ["x"]}))
    save_calibration(tmp_path, Calibration(a=0.5, b=0.0, setup=icr))
    assert load_calibration(tmp_path, routed).a == 2.0 and load_calibration(tmp_path, icr).a == 0.5
    assert load_calibration(tmp_path, setup_key("abc", "routed", "per_head", None, 0.5, {})) is None  # other fusion
    assert load_calibration(tmp_path, setup_key("other", "all", "summed", None, 0.0, {})) is None  # other backbone
    assert load_calibration(tmp_path, setup_key("abc", "all", "summed", None, 0.0, {"max_doc_words": 300})) is None
    assert load_calibration(tmp_path / "nowhere", icr) is None
    assert load_calibration(tmp_path, routed)(torch.tensor([0.5])).item() == pytest.approx(0.5)


def test_the_default_model_ships_a_calibrated_relevance_score(default_reranker):
    """The shipped router folder holds the default mode's map: relevance_score in [0, 1], in the order of the scores."""
    assert default_reranker.calibration is not None
    docs = ["Scurvy is caused by a lack of vitamin C.", "Clipper ships carried tea.", "Lemons hold vitamin C.",
            "Rickets weakens bones."]
    results = default_reranker.rerank("What causes scurvy?", docs)
    relevance = [r.relevance_score for r in results]
    assert all(0 <= p <= 1 for p in relevance) and relevance == sorted(relevance, reverse=True)
    assert relevance[0] > relevance[-1]
    assert RouteHeadReranker(mode="all").calibration is not None  # ICR's map is shipped too
