"""Features on Ray workers: the same cache, the same features as one process, and a worker killed mid-run costs
only its in-flight queries, which are retried."""

from __future__ import annotations

import pytest
import torch

ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed (pip install 'routehead-rag[ray]')")

from routehead_rag import Recipe, RouteHeadReranker  # noqa: E402
from routehead_rag.data.datasets import Dataset  # noqa: E402
from routehead_rag.features import extract_features, features_dir  # noqa: E402
from routehead_rag.workers import RayWorkers  # noqa: E402

WORDS = "wings feathers beaks nests eggs songs flight migration plumage talons".split()


def _dataset(n_queries: int) -> tuple[Dataset, dict[str, list[str]]]:
    corpus = {f"d{i}": {"title": "", "text": f"document {i} about {WORDS[i % 10]} and {WORDS[(i * 3) % 10]}"}
              for i in range(12)}
    queries = {f"q{i}": f"what about {WORDS[i % 10]}?" for i in range(n_queries)}
    candidates = {q: [f"d{(i + k) % 12}" for k in range(6)] for i, q in enumerate(queries)}
    qrels = {q: {candidates[q][i % 6]: 1} for i, q in enumerate(queries)}
    return Dataset(name="birds", queries=queries, qrels=qrels, corpus=corpus), candidates


@pytest.fixture(scope="module")
def workers(tiny_llama_dir):
    """Two workers on a local Ray, shared by the tests (starting a worker's Python and engine takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    assert ray.util.get_node_ip_address() == "127.0.0.1"  # a local cluster stays on loopback
    pool = RayWorkers(2, {"model": str(tiny_llama_dir), "dtype": "float32"})
    yield pool
    pool.close()
    ray.shutdown()


def test_two_workers_compute_what_one_process_does_into_the_same_cache(tmp_path, monkeypatch, workers, tiny_llama_dir):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "here"))
    reranker = RouteHeadReranker(tiny_llama_dir, Recipe(mode="all"), dtype="float32")
    dataset, candidates = _dataset(8)
    alone = extract_features(dataset, candidates, reranker, depth=6)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "workers"))  # the driver writes what the workers compute
    half = extract_features(dataset, candidates, reranker, depth=6, max_queries=3, workers=workers)  # stopped early
    assert len(list(features_dir(reranker).glob("*.pt"))) == 3
    spread = extract_features(dataset, candidates, reranker, depth=6, workers=workers)  # resumed, with the rest
    assert [f.qid for f in spread] == [f.qid for f in alone] and len(half) == 3
    for a, b in zip(alone, spread):
        torch.testing.assert_close(b.head_scores, a.head_scores, atol=1e-6, rtol=0)
        torch.testing.assert_close(b.diffs.values, a.diffs.values, atol=1e-6, rtol=0)
        torch.testing.assert_close(b.embedding, a.embedding, atol=1e-5, rtol=0)
        assert torch.equal(b.gains, a.gains) and b.ideal_dcg == a.ideal_dcg


def test_a_killed_worker_is_restarted_and_its_queries_retried(tmp_path, monkeypatch, workers, tiny_llama_dir):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    reranker = RouteHeadReranker(tiny_llama_dir, Recipe(mode="all"), dtype="float32")
    dataset, candidates = _dataset(10)
    original = workers.map

    def map_then_kill(jobs):
        for n, features in enumerate(original(jobs)):
            if n == 1:
                ray.kill(workers.actors[0], no_restart=False)  # dies with queries in flight
            yield features

    monkeypatch.setattr(workers, "map", map_then_kill)
    features = extract_features(dataset, candidates, reranker, depth=6, workers=workers)
    assert sorted(f.qid for f in features) == sorted(dataset.queries)
    assert len(list(features_dir(reranker).glob("*.pt"))) == 10


def test_workers_for_another_engine_are_refused(workers, tiny_sp_dir):
    with pytest.raises(ValueError, match="a worker's engine differs"):
        workers.check(RouteHeadReranker(tiny_sp_dir, Recipe(mode="all"), dtype="float32").cache_key())
    with pytest.raises(ValueError, match="positive whole number"):
        RayWorkers(0, {})
