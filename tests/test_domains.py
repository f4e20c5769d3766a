"""Leave one domain out: settings are chosen on the other domains only, and every method is measured per query."""

from __future__ import annotations

import dataclasses
import statistics

import pytest

from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.features import compute_features
from routehead_rag.router import load_router
from routehead_rag.training.config import TrainConfig
from routehead_rag.training.domains import (
    FIXED_WEIGHTS,
    Domain,
    best_fixed_weight,
    icr_ndcg,
    leave_one_domain_out,
    memoized,
    table,
    train_on_every_domain,
)
from routehead_rag.training.selection import best_layer_window, core_heads, n_layers_of, window_heads
from routehead_rag.training.pipeline import train_routers
from routehead_rag.training.train import Prepared, per_query_router_ndcg, qrhead_heads, split

TOPICS = {
    "medicine": ["vitamin C prevents scurvy", "insulin regulates blood sugar", "aspirin thins the blood"],
    "ships": ["clipper ships carried tea", "steam replaced sail", "a keel keeps a ship upright"],
    "space": ["the moon orbits the earth", "mars has two moons", "jupiter is a gas giant"],
}


def _domain(reranker: RouteHeadReranker, name: str) -> Domain:
    docs = [{"text": t} for topic in TOPICS.values() for t in topic]
    doc_ids = [f"d{i}" for i in range(len(docs))]
    queries = []
    for i, text in enumerate(TOPICS[name]):
        relevant = {doc_ids[list(TOPICS).index(name) * 3 + i]: 1}
        queries.append(compute_features(reranker, f"{name}{i}", text.split()[1] + "?", docs, doc_ids, relevant))
    return Domain(name, queries, queries)


@pytest.fixture(scope="module")
def reranker(tiny_llama_dir) -> RouteHeadReranker:
    return RouteHeadReranker(tiny_llama_dir, Recipe(mode="all"), dtype="float32")


@pytest.fixture(scope="module")
def domains(reranker) -> list[Domain]:
    return [_domain(reranker, name) for name in TOPICS]


def test_the_fixed_weight_is_the_best_on_the_given_domains(domains):
    def mean(weight):
        return statistics.fmean(statistics.fmean(icr_ndcg(d.training, weight)) for d in domains[1:])

    chosen = best_fixed_weight(domains[1:])
    assert mean(chosen) == max(mean(w) for w in FIXED_WEIGHTS)


def test_each_domain_is_measured_with_settings_chosen_without_it(domains):
    results = leave_one_domain_out(domains)
    assert [r.domain for r in results] == list(TOPICS)
    for result, held_out in zip(results, domains):
        others = [d for d in domains if d is not held_out]
        assert result.chosen["icr_fused"] == best_fixed_weight(others)
        assert result.ndcg["icr_fused"] == icr_ndcg(held_out.evaluation, result.chosen["icr_fused"])
        assert result.ndcg["bm25"] == per_query_router_ndcg(held_out.evaluation, None)
        assert len(result.ndcg["icr"]) == len(held_out.evaluation)
        train, val = split([q for d in others for q in d.training])
        heads, _ = qrhead_heads(Prepared.of(train), Prepared.of(val))
        assert result.ndcg["qrhead"] == icr_ndcg(held_out.evaluation, 0.0, heads) and result.chosen["qrhead"] == len(heads)
        window, _ = best_layer_window(train + val, n_layers_of(train))
        assert result.chosen["selective_icr"] == f"L{window.start}-{window.stop - 1}"
        assert result.ndcg["selective_icr"] == icr_ndcg(held_out.evaluation, 0.0, window_heads(window, train))
        core, _, _ = core_heads(train, val)
        assert result.ndcg["core"] == icr_ndcg(held_out.evaluation, 0.0, core)
        assert result.chosen["core"].startswith(f"{len(core)} t=") and result.chosen["headrank"].split()[1].startswith("entropy=")
        assert result.engine["qrhead"] == {"mode": "static", "heads": list(heads)}
        assert result.engine["selective_icr"] == {"mode": "all", "layers": list(window)}
        assert result.engine["icr_fused"] == {"mode": "all", "fusion_weight": result.chosen["icr_fused"]}
    printed = table(results)
    assert printed.count("icr_fused") == len(TOPICS) + 2 and "vs bm25" in printed and "s/query" not in printed
    # the summary: the mean of the per-domain differences from BM25, and the domains more than 1 s.e. below it
    differences = [statistics.fmean(a - b for a, b in zip(r.ndcg["icr"], r.ndcg["bm25"])) for r in results]
    summary = next(line for line in printed.splitlines() if line.startswith("icr ") and "±" in line)
    assert float(summary.split()[1]) == pytest.approx(statistics.fmean(differences), abs=1e-4)
    results[0].latency["icr"] = 1.25
    assert "s/query" in table(results) and "1.25" in table(results)


def test_one_domain_is_not_enough(domains):
    with pytest.raises(ValueError, match="at least two domains"):
        leave_one_domain_out(domains[:1])


def test_routers_are_trained_on_the_other_domains_and_ranked_as_at_inference(domains, reranker):
    config = TrainConfig(candidates=8, max_heads=2, top_k=2)
    trained = []

    def fit(queries):
        trained.append({q.qid for q in queries})
        return train_routers(queries, reranker, config)

    signed = {"routehead_signed": lambda queries: train_routers(queries, reranker,
                                                               dataclasses.replace(config, shared_signs="signed"))}
    results = leave_one_domain_out(domains, fit, signed)
    for result, held_out, pool in zip(results, domains, trained[::3], strict=True):
        assert pool == {q.qid for d in domains if d is not held_out for q in d.training}
        router = train_routers([q for d in domains if d is not held_out for q in d.training], reranker, config)
        assert result.ndcg["routehead"] == per_query_router_ndcg(held_out.evaluation, router)
        assert {"routehead_signed", "routehead_trust", "routehead_trust_off"} <= set(result.ndcg)
    assert len(trained) == len(domains) * 3  # each held-out domain: its router, and one without each other domain


def test_the_router_to_ship_is_trained_on_every_domain_and_trusts_off_domain(domains, reranker, tmp_path):
    config = TrainConfig(candidates=8, max_heads=2, top_k=2)
    router = train_on_every_domain(domains, lambda queries: train_routers(queries, reranker, config))
    assert router.config.trust and router.config.shared_heads and min(router.config.shared_heads.values()) > 0
    router.save(tmp_path / "router")
    assert load_router(tmp_path / "router").config.trust == router.config.trust


def test_a_memoized_fitter_trains_each_pool_once_and_changes_no_result(domains, reranker):
    config = TrainConfig(candidates=8, max_heads=2, top_k=2)
    pools = []

    def fit(queries):
        pools.append(tuple(map(id, queries)))
        return train_routers(queries, reranker, config)

    once = memoized(fit)
    results = leave_one_domain_out(domains, once)
    shipped = train_on_every_domain(domains, once)
    assert len(pools) == len(set(pools)) == 2 * len(domains) + 1  # each pair, each single domain, all three
    plain = leave_one_domain_out(domains, lambda queries: train_routers(queries, reranker, config))
    assert [r.ndcg for r in results] == [r.ndcg for r in plain]
    unmemoized = train_on_every_domain(domains, lambda queries: train_routers(queries, reranker, config))
    assert shipped.config.trust == unmemoized.config.trust
