"""The first stage's weight per query: learned from the head scores' statistics, saved with the router, used by
``rerank`` and the cache's replay alike."""

from __future__ import annotations

import math

import pytest
import torch

from routehead_rag import Recipe, RouteHeadReranker

from routehead_rag.features import QueryFeatures, ideal_dcg, replay
from routehead_rag.router import Router, RouterConfig, RouterEnsemble, RouterNet, load_router
from routehead_rag.scoring import rank_prior
from routehead_rag.training.train import Prepared, fit_trust, mean_ndcg, per_query_router_ndcg, with_trust
from routehead_rag.trust import STATISTICS, Trust, trust_statistics


def _router(n_heads_total: int = 2, fusion_weight: float = 0.5) -> Router:
    config = RouterConfig(backbone={"name": "t", "n_layers": 1, "n_heads": n_heads_total, "fingerprint": "f"},
                          candidate_heads=[0, 1], embed_layer=0, pooling="mean", top_k=1, fusion_weight=fusion_weight,
                          dim=4)
    model = RouterNet(4, 2, 4)
    with torch.no_grad():
        model.heads.zero_()
        model.bias.copy_(torch.tensor([1.0, 0.0]))  # head 0 for every query
    return Router(config, model)


def _queries(n: int, seed: int) -> list[QueryFeatures]:
    """Half the queries: head 0 finds the two relevant documents, the first stage does not; the other half: head 0
    is noise and the first stage has the relevant one on top. No single weight serves both; the heads' own clarity
    tells them apart. (Two relevant documents, so that no single one leads clearly: a clear attention winner stays
    first whatever the weight, ``scoring.with_prior``.)"""
    rng = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        relevant = torch.randperm(20, generator=rng)[:2].tolist() if i % 2 == 0 else [0]
        gains = torch.zeros(20)
        gains[relevant] = 1.0
        rows = 0.3 * torch.randn(2, 20, generator=rng)
        if i % 2 == 0:
            rows[0, relevant] += 3.0  # attention sees them clearly
        out.append(QueryFeatures(f"q{seed}-{i}", rows, gains, ideal_dcg([1] * len(relevant)), torch.zeros(1, 2, 4)))
    return out


def test_statistics_are_finite_and_named():
    stats = trust_statistics(torch.randn(6, 20), {0: 0.5, 3: 0.3, 5: -0.2}, rank_prior(20), 0.3)
    assert stats.shape == (len(STATISTICS),) and torch.isfinite(stats).all()
    single = trust_statistics(torch.randn(6, 1), {2: 1.0}, rank_prior(1), 0.0)  # one document, one head
    assert torch.isfinite(single).all()


def test_novelty_grows_with_the_distance_from_the_training_queries():
    router = _router()
    with torch.no_grad():
        router.model.mean.fill_(1.0)
        router.model.std.fill_(0.5)
    near, far = torch.ones(1, 2, 4) + 0.5 * torch.tensor([1.0, -1.0, 1.0, -1.0]), torch.full((1, 2, 4), 5.0)
    assert router.novelty(near) == pytest.approx(0.0, abs=1e-6)  # one standard deviation off in every dimension
    assert router.novelty(far) == pytest.approx(math.log(64.0))
    assert RouterEnsemble([router, _router()]).novelty(far) == pytest.approx((math.log(64.0) + math.log(25.0)) / 2)


def test_a_constant_trust_is_the_fixed_weight():
    trust = Trust.constant(0.75, [0.0] * len(STATISTICS), [1.0] * len(STATISTICS))
    assert trust.weight(torch.randn(len(STATISTICS))) == pytest.approx(0.75)


def test_learned_trust_beats_every_fixed_weight_where_queries_differ():
    router = _router()
    train, val, test = _queries(120, 0), _queries(60, 1), _queries(100, 2)
    trusted = with_trust(router, fit_trust(router, train, val))
    learned = sum(per_query_router_ndcg(test, trusted)) / len(test)
    fixed = max(mean_ndcg(Prepared.of(test), [[0]] * len(test), w) for w in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0))
    assert learned > fixed + 0.05
    weights = [trusted.fusion_weight_for(q.head_scores.double(), {0: 1.0}, rank_prior(20), q.embedding) for q in test]
    assert sum(weights[1::2]) > 2 * sum(weights[0::2])  # more trust in the first stage where the head sees nothing


def test_trust_learns_from_a_router_that_ignores_the_first_stage():
    """A fixed weight of 0 puts the softplus where it is flat; the descent starts higher and still learns."""
    router = _router(fusion_weight=0.0)
    train, val, test = _queries(120, 0), _queries(60, 1), _queries(100, 2)
    trusted = with_trust(router, fit_trust(router, train, val))
    assert sum(per_query_router_ndcg(test, trusted)) > sum(per_query_router_ndcg(test, router)) + 0.05 * len(test)


def test_trust_reads_each_query_through_the_router_given_for_it():
    """Queries scored by another router (one trained without their domain) train the trust as that router's own."""
    router, other = _router(), _router()
    with torch.no_grad():
        other.model.bias.copy_(torch.tensor([0.0, 1.0]))  # head 1 for every query
    train, val = _queries(120, 0), _queries(60, 1)
    assert fit_trust(router, train, val, scored_by=lambda q: other) == fit_trust(other, train, val)
    assert fit_trust(router, train, val) != fit_trust(other, train, val)


def test_trust_is_saved_with_the_router_and_used_by_rerank_and_replay(tmp_path, default_reranker):
    router = default_reranker.router
    stats_mean, stats_std = [0.0] * len(STATISTICS), [1.0] * len(STATISTICS)
    trust = Trust(stats_mean, stats_std, [0.0, 0.0, -2.0, 0.0, 0.0], 0.3)  # a clear winner: less first stage
    with_trust(router, trust).save(tmp_path / "trusted")
    assert load_router(tmp_path / "trusted").config.trust == trust.to_dict()
    engine = RouteHeadReranker(router=tmp_path / "trusted")
    query = "What causes scurvy?"
    docs = ["Scurvy comes from a lack of vitamin C.", "Clipper ships carried tea.", "Lemons hold vitamin C.",
            "Sailors ate limes on long voyages."]
    results = engine.rerank(query, docs)
    features = QueryFeatures("q", engine.head_scores(query, docs).float(), torch.zeros(4), 0.0, torch.zeros(1, 2, 4))
    ranking, heads = replay(engine, features, query)
    embedding = engine.route(query)[1]
    expected = engine.query_fusion_weight(features.head_scores.double(), heads, rank_prior(4), embedding)
    assert expected != engine.fusion_weight  # per query, not the router's fixed weight
    assert [r.index for r in results] == ranking.order
    assert RouteHeadReranker(recipe=Recipe(fusion_weight=0.2), router=tmp_path / "trusted").query_fusion_weight(
        features.head_scores.double(), heads, rank_prior(4), embedding) == 0.2  # a weight given by the user wins
