"""A relevance score a user can threshold: a logistic model from a document's evidence to [0, 1].

A mode's score (ICR's summed attention, or the router's weighted z-scores) is relative to its list, so no monotone
map of it can know how many relevant documents a list holds. The relevance model reads evidence that keeps its
meaning when the list changes as well (:mod:`routehead_rag.evidence`: lexical overlap, the document's own attention,
and the score's standing in its list), ``p = sigmoid(coef · standardized evidence + intercept)``, fitted on labelled
queries of several domains by ``routehead calibrate``. A router's folder keeps its models in ``calibration.json``:
one per exact setup (mode, aggregation, heads, fusion weight, prompt and window settings) where one was fitted, and
one fitted across settings (key :data:`ACROSS`) that serves every other setup of the same backbone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import torch

from .evidence import FEATURES

CALIBRATION_FILE = "calibration.json"
ACROSS = "across-settings"  # the key of the model fitted across settings, for setups without their own
RAW_SCORE_KEY = "routehead_score"  # metadata key of the engine's own score, where a relevance score is shown
Fit = Literal["exact", "across-settings"]


class Scored(Protocol):
    """A re-ranked document's two scores (:class:`routehead_rag.RerankResult`)."""

    score: float
    relevance_score: float | None


def shown_score(result: Scored) -> float:
    """The score to hand a framework or an API client: ``relevance_score`` (in [0, 1], comparable across queries, so
    a cut-off such as LlamaIndex's ``SimilarityPostprocessor(similarity_cutoff=...)`` means the same for every query)
    where a relevance model exists, else the engine's own score (then kept under :data:`RAW_SCORE_KEY` too)."""
    return float(result.relevance_score if result.relevance_score is not None else result.score)


@dataclass(frozen=True)
class Calibration:
    """A logistic model of relevance over :data:`routehead_rag.evidence.FEATURES`:
    ``relevance = sigmoid(sum(coef * (evidence - mean) / scale) + intercept)``.

    ``setup``: what decides the scores, as :func:`setup_key` writes it, for a model fitted for one setup; for a model
    fitted across settings, ``{"backbone": fingerprint}`` only. ``fit``: ``"exact"`` or ``"across-settings"``, which
    of the two this is. ``fitted_on``: the data it was fitted on, and its held-out measures where known.
    """

    coef: list[float]
    intercept: float
    mean: list[float]
    scale: list[float]
    setup: dict
    fit: Fit = "exact"
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    fitted_on: dict = field(default_factory=dict)

    def __call__(self, evidence: torch.Tensor) -> torch.Tensor:
        """``[n_docs, n_features]`` evidence to ``[n_docs]`` relevance scores in [0, 1] (float64)."""
        x = (evidence.double() - torch.tensor(self.mean, dtype=torch.float64)) / torch.tensor(self.scale,
                                                                                             dtype=torch.float64)
        return torch.sigmoid(x @ torch.tensor(self.coef, dtype=torch.float64) + self.intercept)

    def describe(self) -> str:
        """What it was fitted on, in words for a user: "fitted on 50 labelled queries of scifact (train)" (a data
        set's name, never the folder it was read from on the machine that fitted it)."""
        names = []
        for entry in self.fitted_on.get("data", []):
            source, _, split = entry.partition(" (")
            local = source.startswith((".", "/", "~")) or "\\" in source
            names.append((Path(source).stem if local else source) + (f" ({split}" if split else ""))
        queries = self.fitted_on.get("queries")
        if isinstance(queries, list) and len(queries) == len(names):  # per data set
            return "fitted on " + ", ".join(f"{name} ({n} labelled queries)" for name, n in zip(names, queries))
        return f"fitted on {f'{queries} labelled queries of ' if queries else ''}{', '.join(names) or 'labelled queries'}"


def setup_key(fingerprint: str, mode: str, aggregation: str, heads: Sequence[int] | None, fusion_weight: float,
              scoring: dict) -> dict:
    """What decides a reranker's scores, for matching a calibration to it (``heads``: the static ones, else ``None``;
    ``scoring``: the prompt and window settings, :class:`routehead_rag.reranker.ScoringSettings` as a dict)."""
    return {"backbone": fingerprint, "mode": mode, "aggregation": aggregation,
            "heads": None if heads is None else sorted(heads), "fusion_weight": float(fusion_weight),
            "scoring": scoring}


def _name(calibration_setup: dict, fit: Fit) -> str:
    return ACROSS if fit == "across-settings" else f"{calibration_setup['mode']}/{calibration_setup['aggregation']}"


def load_calibration(path: str | Path, setup: dict) -> Calibration | None:
    """The model for ``setup`` in the ``calibration.json`` at ``path`` (the file, or the folder holding it): the one
    fitted for exactly this setup, else the one fitted across settings for its backbone; ``None`` where there is no
    file, or neither in it."""
    path = Path(path)
    file = path / CALIBRATION_FILE if path.is_dir() else path
    if not file.is_file():
        return None
    try:
        saved = json.loads(file.read_text())
        exact, across = saved.get(f"{setup['mode']}/{setup['aggregation']}"), saved.get(ACROSS)
        if exact is not None and exact.get("setup") == setup:
            return Calibration(**exact)
        if across is not None and across["setup"].get("backbone") == setup["backbone"]:
            return Calibration(**across)
        return None
    except (json.JSONDecodeError, AttributeError, TypeError, KeyError) as err:
        raise ValueError(f"{file} is not a calibration file of this version ({err!r}); delete it, or refit it with "
                         "`routehead calibrate`.") from None


def save_calibration(folder: str | Path, calibration: Calibration) -> Path:
    """Write ``calibration`` into ``folder/calibration.json``, beside the other models already there."""
    file = Path(folder) / CALIBRATION_FILE
    saved = json.loads(file.read_text()) if file.is_file() else {}
    saved[_name(calibration.setup, calibration.fit)] = asdict(calibration)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n")
    tmp.rename(file)
    return file


def fit_monotone(evidence: torch.Tensor, relevant: torch.Tensor, weights: torch.Tensor | None = None,
                 ridge: float = 1e-2) -> tuple[list[float], float, list[float], list[float]]:
    """:func:`fit_logistic` with every coefficient at least 0: each feature of :data:`FEATURES` is evidence *for*
    relevance, so a negative weight is an artefact of correlated features on the fitting domains, and it turns over
    off them. A feature whose weight comes out negative is left out (weight 0) and the rest refitted, until none is."""
    kept = list(range(evidence.shape[1]))
    while True:
        coef, intercept, mean, scale = fit_logistic(evidence[:, kept], relevant, weights, ridge)
        if min(coef) >= 0 or len(kept) == 1:
            break
        kept = [k for k, c in zip(kept, coef) if c >= 0]
    full = [0.0] * evidence.shape[1]
    for k, c in zip(kept, coef):
        full[k] = max(c, 0.0)
    means, scales = evidence.double().mean(dim=0).tolist(), [1.0] * evidence.shape[1]
    for k, m, sc in zip(kept, mean, scale):
        means[k], scales[k] = m, sc
    return full, intercept, means, scales


def fit_logistic(evidence: torch.Tensor, relevant: torch.Tensor, weights: torch.Tensor | None = None,
                 ridge: float = 1e-2, steps: int = 100) -> tuple[list[float], float, list[float], list[float]]:
    """Logistic regression of ``relevant`` (``[n]`` bool) on ``evidence`` (``[n, k]``), each feature standardized,
    each document counting ``weights`` (``[n]``, mean 1; default: alike; :func:`domain_weights` makes every domain
    count alike):
    Newton's method with a backtracking line search on the log loss plus ``ridge`` · |coef|² (the line search as Lin,
    Lin and Weng's note on Platt scaling does: plain Newton overshoots when the relevant documents are few), with
    Platt's smoothed targets (``(n+ + 1) / (n+ + 2)`` and ``1 / (n- + 2)``) so that a separable set stays finite.
    Returns ``(coef, intercept, mean, scale)``; raises ``ValueError`` unless both classes are present."""
    x = evidence.double()
    y = relevant.bool()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"calibration needs relevant and non-relevant documents; got {n_pos} relevant and {n_neg} "
                         "not. Use more queries, or a deeper candidate list.")
    mean, scale = x.mean(dim=0), x.std(dim=0, correction=0)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    design = torch.cat([(x - mean) / scale, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)  # [n, k + 1]
    w = torch.ones(len(x), dtype=torch.float64) if weights is None else weights.double() / weights.double().mean()
    target = torch.where(y, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2)).double()
    penalty = torch.full((design.shape[1],), ridge * len(x), dtype=torch.float64)
    penalty[-1] = 0.0  # the intercept is free

    def loss(params: torch.Tensor) -> float:
        z = design @ params
        return float((w * (torch.nn.functional.softplus(z) - target * z)).sum() + 0.5 * (penalty * params ** 2).sum())

    params = torch.zeros(design.shape[1], dtype=torch.float64)
    params[-1] = float(torch.log(torch.tensor((n_pos + 1) / (n_neg + 1))))
    current = loss(params)
    for _ in range(steps):
        p = torch.sigmoid(design @ params)
        grad = design.T @ (w * (p - target)) + penalty * params
        if float(grad.abs().max()) < 1e-9:
            break
        hessian = design.T @ (design * (w * p * (1 - p))[:, None]) + torch.diag(penalty) + 1e-12 * torch.eye(
            design.shape[1], dtype=torch.float64)
        step = torch.linalg.solve(hessian, grad)
        size = 1.0
        while size > 1e-10 and loss(params - size * step) > current - 1e-4 * size * float(grad @ step):
            size /= 2
        params = params - size * step
        current = loss(params)
    return params[:-1].tolist(), float(params[-1]), mean.tolist(), scale.tolist()


def domain_weights(sizes: Sequence[int]) -> torch.Tensor:
    """Weights that make each of several domains (``sizes``: documents per domain, in order) count alike in a fit,
    whatever its number of documents: ``[sum(sizes)]``, mean 1."""
    parts = [torch.full((n,), 1.0 / n, dtype=torch.float64) for n in sizes if n]
    weights = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
    return weights / weights.mean() if len(weights) else weights


def auc(probabilities: Sequence[float], relevant: Sequence[bool]) -> float | None:
    """The area under the ROC curve: the chance that a relevant document scores above a non-relevant one (ties count
    half); ``None`` unless both classes are present."""
    pos = torch.tensor([p for p, r in zip(probabilities, relevant) if r], dtype=torch.float64)
    neg = torch.tensor([p for p, r in zip(probabilities, relevant) if not r], dtype=torch.float64)
    if not len(pos) or not len(neg):
        return None
    every = torch.cat([pos, neg])
    ranks = torch.empty_like(every)
    order = every.argsort()
    ranks[order] = torch.arange(1, len(every) + 1, dtype=torch.float64)
    for value in every.unique():  # average ranks over ties
        tied = every == value
        ranks[tied] = ranks[tied].mean()
    return round(float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))), 4)


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
