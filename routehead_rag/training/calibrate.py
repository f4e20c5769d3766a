"""``routehead calibrate``: fit the relevance model behind ``relevance_score`` on labelled queries of several domains."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..calibration import Calibration, domain_weights, fit_monotone
from ..data.datasets import Dataset, load_dataset
from ..data.first_stage import first_stage_candidates
from ..features import QueryFeatures, extract_features, replay_evidence
from ..reranker import RouteHeadReranker
from .pipeline import DataSpec


@dataclass(frozen=True)
class Labelled:
    """Cached features of judged queries and what they were computed over: ``candidates`` (qid -> docids, the
    cached order) of ``dataset``; a candidate is relevant where its grade is at least ``min_grade``."""

    dataset: Dataset
    features: list[QueryFeatures]
    candidates: dict[str, list[str]]
    min_grade: int = 1  # the lowest grade that counts as relevant (TREC DL passages: 2, as the track binarizes)


def labelled_features(reranker: RouteHeadReranker, dataset: Dataset, depth: int, max_queries: int | None = None,
                      missing: Literal["compute", "error", "skip"] = "compute", min_grade: int = 1) -> Labelled:
    """The cached features (computed where missing, resumable; ``missing="skip"``: only those cached) of the judged
    queries of ``dataset`` over their first-stage top-``depth``, relevant from grade ``min_grade`` up."""
    if not isinstance(min_grade, int) or min_grade < 1:
        raise ValueError(f"min_grade must be a grade of 1 or more (the lowest that counts as relevant), not {min_grade!r}.")
    candidates = first_stage_candidates(dataset, depth).candidates
    labelled = {q: c[:depth] for q, c in candidates.items() if dataset.qrels.get(q)}
    features = extract_features(dataset, labelled, reranker, depth, max_queries=max_queries, missing=missing)
    if not features and missing != "skip":
        raise ValueError(f"{dataset.name} has no judged query with candidates; check --split/--qrels.")
    return Labelled(dataset=dataset, features=features, candidates=labelled, min_grade=min_grade)


def replayed_evidence(reranker: RouteHeadReranker, labelled: Labelled) -> tuple[torch.Tensor, torch.Tensor]:
    """The evidence ``reranker``'s relevance model reads for every candidate of ``labelled`` (its mode, replayed from
    the cache), ``[n_pairs, n_features]`` float64, and whether each is relevant (grade at least its
    ``min_grade``), ``[n_pairs]`` bool."""
    evidence, relevant = [], []
    for entry in labelled.features:
        docs = [labelled.dataset.corpus[d] for d in labelled.candidates[entry.qid]]
        evidence.append(replay_evidence(reranker, entry, labelled.dataset.queries[entry.qid], docs)[1])
        relevant.append(entry.gains >= labelled.min_grade)
    n_features = 3 if not evidence else evidence[0].shape[1]
    return (torch.cat(evidence) if evidence else torch.zeros(0, n_features, dtype=torch.float64),
            torch.cat(relevant) if relevant else torch.zeros(0, dtype=torch.bool))


def fit_relevance(rerankers: list[RouteHeadReranker], parts: list[Labelled], across_settings: bool) -> Calibration:
    """The relevance model over the evidence of every reranker of ``rerankers`` (one for a model of exactly its
    setup; several, of one backbone, for ``across_settings``: their evidence pooled) on the candidates of ``parts``,
    each part (a domain) counting alike however many candidates it has."""
    pooled = [replayed_evidence(r, part) for part in parts for r in rerankers]
    evidence, relevant = torch.cat([e for e, _ in pooled]), torch.cat([y for _, y in pooled])
    per_part = [sum(len(y) for _, y in pooled[k * len(rerankers):(k + 1) * len(rerankers)]) for k in range(len(parts))]
    coef, intercept, mean, scale = fit_monotone(evidence, relevant, domain_weights(per_part))
    first = rerankers[0]
    fitted_on = {"data": [p.dataset.name for p in parts], "queries": [len(p.features) for p in parts],
                 "relevant_from_grade": [p.min_grade for p in parts],
                 "weighting": "each dataset alike",
                 "pairs": len(relevant), "relevant": int(relevant.sum()),
                 "settings": [{"mode": r.mode, "aggregation": r.aggregation} for r in rerankers],
                 "model": first.backbone.name, "dtype": str(first.backbone.model.dtype)}
    if across_settings:
        return Calibration(coef=coef, intercept=intercept, mean=mean, scale=scale, fit="across-settings",
                           setup={"backbone": first.backbone.fingerprint}, fitted_on=fitted_on)
    return Calibration(coef=coef, intercept=intercept, mean=mean, scale=scale, setup=first.setup(), fitted_on=fitted_on)


def load_parts(reranker: RouteHeadReranker, specs: list[DataSpec], depth: int, max_queries: int | None,
               missing: Literal["compute", "error", "skip"], min_grades: list[int] | None = None) -> list[Labelled]:
    """Each spec's labelled features, read through ``reranker``'s feature cache (``min_grades``: per spec, the lowest
    grade that counts as relevant; default 1)."""
    min_grades = min_grades or [1] * len(specs)
    return [labelled_features(reranker, load_dataset(s.dataset, split=s.split, qrels_path=s.qrels), depth, max_queries,
                              missing, g) for s, g in zip(specs, min_grades, strict=True)]
