"""A relevance score a user can threshold: a monotone map from one mode's document score to [0, 1].

A mode's score (ICR's summed attention, or the router's weighted z-scores) has a scale that changes with the
query, the list and the mode. Platt scaling, ``p = sigmoid(a · score + b)`` with ``a > 0``, fitted on labelled
training queries, turns it into the probability that the document is relevant, so that 0.8 means the same across
queries, lists and calls. The maps of one router (one per mode, aggregation, head set and fusion weight) are kept
in ``calibration.json`` beside its weights; ``routehead calibrate`` fits them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch

CALIBRATION_FILE = "calibration.json"
RAW_SCORE_KEY = "routehead_score"  # metadata key of the engine's own score, where a relevance score is shown


class Scored(Protocol):
    """A re-ranked document's two scores (:class:`routehead_rag.RerankResult`)."""

    score: float
    relevance_score: float | None


def shown_score(result: Scored) -> float:
    """The score to hand a framework or an API client: ``relevance_score`` (in [0, 1], comparable across queries, so
    a cut-off such as LlamaIndex's ``SimilarityPostprocessor(similarity_cutoff=...)`` means the same for every query)
    where a calibration exists, else the engine's own score (then kept under :data:`RAW_SCORE_KEY` too)."""
    return float(result.relevance_score if result.relevance_score is not None else result.score)


@dataclass(frozen=True)
class Calibration:
    """Platt scaling of the scores of one scoring setup: ``relevance = sigmoid(a · score + b)``.

    ``setup``: what decides the scores, as :func:`setup_key` writes it (backbone, mode, aggregation, heads, fusion
    weight, prompt and window settings); a map is used only where the reranker's setup is the same. ``fitted_on``: the data it was fitted on.
    """

    a: float
    b: float
    setup: dict
    fitted_on: dict = field(default_factory=dict)

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        """``[n_docs]`` scores to ``[n_docs]`` relevance scores in [0, 1] (float64)."""
        return torch.sigmoid(self.a * scores.double() + self.b)

    def describe(self) -> str:
        """What it was fitted on, in words for a user: "fitted on 50 labelled queries of scifact (train)" (a data
        set's name, never the folder it was read from on the machine that fitted it)."""
        names = []
        for entry in self.fitted_on.get("data", []):
            source, _, split = entry.partition(" (")
            local = source.startswith((".", "/", "~")) or "\\" in source
            names.append((Path(source).stem if local else source) + (f" ({split}" if split else ""))
        queries = self.fitted_on.get("queries")
        return f"fitted on {f'{queries} labelled queries of ' if queries else ''}{', '.join(names) or 'labelled queries'}"


def setup_key(fingerprint: str, mode: str, aggregation: str, heads: Sequence[int] | None, fusion_weight: float,
              scoring: dict) -> dict:
    """What decides a reranker's scores, for matching a calibration to it (``heads``: the static ones, else ``None``;
    ``scoring``: the prompt and window settings, :class:`routehead_rag.reranker.ScoringSettings` as a dict)."""
    return {"backbone": fingerprint, "mode": mode, "aggregation": aggregation,
            "heads": None if heads is None else sorted(heads), "fusion_weight": float(fusion_weight),
            "scoring": scoring}


def _name(setup: dict) -> str:
    return f"{setup['mode']}/{setup['aggregation']}"


def load_calibration(path: str | Path, setup: dict) -> Calibration | None:
    """The map for ``setup`` in the ``calibration.json`` at ``path`` (the file, or the folder holding it); ``None``
    where there is no file, or no map for this setup in it."""
    path = Path(path)
    file = path / CALIBRATION_FILE if path.is_dir() else path
    if not file.is_file():
        return None
    try:
        saved = json.loads(file.read_text()).get(_name(setup))
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"{file} is not a calibration file ({err}); delete it, or refit it with "
                         "`routehead calibrate`.") from None
    if saved is None or saved.get("setup") != setup:
        return None
    return Calibration(a=float(saved["a"]), b=float(saved["b"]), setup=saved["setup"], fitted_on=saved["fitted_on"])


def save_calibration(folder: str | Path, calibration: Calibration) -> Path:
    """Write ``calibration`` into ``folder/calibration.json``, beside the maps of the other modes already there."""
    file = Path(folder) / CALIBRATION_FILE
    saved = json.loads(file.read_text()) if file.is_file() else {}
    saved[_name(calibration.setup)] = asdict(calibration)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n")
    tmp.rename(file)
    return file


def fit_platt(scores: torch.Tensor, relevant: torch.Tensor, steps: int = 100) -> tuple[float, float]:
    """Platt's fit of ``sigmoid(a · score + b)`` to ``relevant`` (``[n]`` bool): Newton's method with a backtracking
    line search on the log loss (as Lin, Lin and Weng's note on Platt scaling does; plain Newton overshoots when
    the relevant documents are few), with Platt's smoothed targets (``(n+ + 1) / (n+ + 2)`` and ``1 / (n- + 2)``)
    so that a separable set stays finite. Returns ``(a, b)``; raises ``ValueError`` unless both classes are
    present."""
    x = scores.double()
    y = relevant.bool()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"calibration needs relevant and non-relevant documents; got {n_pos} relevant and {n_neg} "
                         "not. Use more queries, or a deeper candidate list.")
    target = torch.where(y, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2)).double()
    scale = float(x.std()) or 1.0
    design = torch.stack([x / scale, torch.ones_like(x)], dim=1)  # [n, 2]: Newton on a unit-scale score

    def loss(params: torch.Tensor) -> float:
        z = design @ params
        return float((torch.nn.functional.softplus(z) - target * z).sum())

    params = torch.tensor([0.0, math.log((n_pos + 1) / (n_neg + 1))], dtype=torch.float64)
    current = loss(params)
    for _ in range(steps):
        p = torch.sigmoid(design @ params)
        grad = design.T @ (p - target)
        if float(grad.abs().max()) < 1e-9:
            break
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + 1e-12 * torch.eye(2, dtype=torch.float64)
        step = torch.linalg.solve(hessian, grad)
        size = 1.0
        while size > 1e-10 and loss(params - size * step) > current - 1e-4 * size * float(grad @ step):
            size /= 2
        params = params - size * step
        current = loss(params)
    return float(params[0]) / scale, float(params[1])


def expected_calibration_error(probabilities: Sequence[float], relevant: Sequence[bool], bins: int = 10) -> dict:
    """ECE over ``bins`` equal-width bins of the predicted probability: the mean of ``|mean prediction - fraction
    relevant|`` per bin, weighted by the bin's share of the documents. Returns ``{"ece": .., "bins": [{"low", "high",
    "count", "mean_predicted", "fraction_relevant"}]}``."""
    if len(probabilities) != len(relevant) or not probabilities:
        raise ValueError("give one label per probability, and at least one.")
    table = []
    total = 0.0
    for k in range(bins):
        low, high = k / bins, (k + 1) / bins
        members = [(p, r) for p, r in zip(probabilities, relevant) if low <= p < high or (k == bins - 1 and p == 1.0)]
        if not members:
            table.append({"low": low, "high": high, "count": 0, "mean_predicted": None, "fraction_relevant": None})
            continue
        predicted = sum(p for p, _ in members) / len(members)
        observed = sum(1 for _, r in members if r) / len(members)
        total += len(members) / len(probabilities) * abs(predicted - observed)
        table.append({"low": low, "high": high, "count": len(members), "mean_predicted": round(predicted, 4),
                      "fraction_relevant": round(observed, 4)})
    return {"ece": round(total, 4), "bins": table}
