"""``routehead calibrate``: fit the map from a reranker's scores to ``relevance_score`` on labelled queries."""

from __future__ import annotations

import torch

from ..calibration import Calibration, fit_platt
from ..data.datasets import Dataset, load_dataset
from ..data.first_stage import first_stage_candidates
from ..features import QueryFeatures, extract_features, replay
from ..reranker import RouteHeadReranker
from .pipeline import DataSpec


def labelled_features(reranker: RouteHeadReranker, dataset: Dataset, depth: int,
                      max_queries: int | None = None) -> list[QueryFeatures]:
    """The cached features (computed where missing, resumable) of the judged queries of ``dataset`` over their
    first-stage top-``depth``."""
    candidates = first_stage_candidates(dataset, depth).candidates
    labelled = {q: c for q, c in candidates.items() if dataset.qrels.get(q)}
    features = extract_features(dataset, labelled, reranker, depth, max_queries=max_queries)
    if not features:
        raise ValueError(f"{dataset.name} has no judged query with candidates; check --split/--qrels.")
    return features


def replayed_scores(reranker: RouteHeadReranker, dataset: Dataset,
                    features: list[QueryFeatures]) -> tuple[torch.Tensor, torch.Tensor]:
    """``reranker``'s score of every candidate of ``features`` (its mode, replayed from the cache), ``[n_pairs]``
    float64, and whether each is relevant (grade > 0), ``[n_pairs]`` bool."""
    scores, relevant = [], []
    for entry in features:
        ranking, _ = replay(reranker, entry, dataset.queries[entry.qid])
        scores.append(ranking.scores)
        relevant.append(entry.gains > 0)
    return torch.cat(scores), torch.cat(relevant)


def fit_calibration(reranker: RouteHeadReranker, specs: list[DataSpec], depth: int,
                    max_queries: int | None) -> Calibration:
    """Platt scaling of ``reranker``'s scores (its mode, aggregation, heads and fusion weight) on the candidates of
    the labelled queries of ``specs``."""
    parts = []
    for spec in specs:
        dataset = load_dataset(spec.dataset, split=spec.split, qrels_path=spec.qrels)
        features = labelled_features(reranker, dataset, depth, max_queries)
        parts.append((*replayed_scores(reranker, dataset, features), len(features)))
    scores, relevant = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    a, b = fit_platt(scores, relevant)
    fitted_on = {"data": [f"{s.dataset} ({s.split})" for s in specs], "queries": sum(p[2] for p in parts),
                 "pairs": len(scores), "relevant": int(relevant.sum()), "depth": depth,
                 "model": reranker.backbone.name, "dtype": str(reranker.backbone.model.dtype)}
    return Calibration(a=a, b=b, setup=reranker.setup(), fitted_on=fitted_on)
