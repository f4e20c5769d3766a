"""``routehead serve --ray``: the same app from 2 Ray Serve replicas on a local cluster over loopback. The cohere
SDK's rankings equal the in-process engine's; a replica killed mid-run is replaced, and no accepted request gets a
5xx beyond those in flight on the killed replica."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed (pip install 'routehead-rag[ray]')")
cohere = pytest.importorskip("cohere")

from ray import serve  # noqa: E402

from routehead_rag import Recipe  # noqa: E402
from routehead_rag.serve import ServeSettings  # noqa: E402
from routehead_rag.serve.replicas import APP_NAME, Scaling, deploy, shutdown, start_within  # noqa: E402

QUERY = "What causes scurvy in sailors?"
DOCS = ["Scurvy is a disease resulting from a lack of vitamin C (ascorbic acid).",
        "Clipper ships were fast sailing vessels built to carry tea across the oceans.",
        "In 1747 James Lind gave sailors with scurvy oranges and lemons; they recovered.",
        "Rickets results in weak or soft bones in children, caused by a lack of vitamin D."]


def _running(timeout: float = 240) -> int:
    """Wait until every replica of the app runs; how many do."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        states = serve.status().applications[APP_NAME].deployments["RerankReplica"].replica_states
        if set(states) == {"RUNNING"}:
            return states["RUNNING"]
        time.sleep(1)
    raise AssertionError(f"replicas not running after {timeout} s: {states}")


@pytest.fixture(scope="module")
def replicas():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    assert ray.util.get_node_ip_address() == "127.0.0.1"  # a local cluster stays on loopback
    deploy({"recipe": Recipe(mode="routed")}, ServeSettings(max_queue=16, timeout_s=600), Scaling(replicas=2),
           port=port)
    yield f"http://127.0.0.1:{port}"
    shutdown()
    ray.shutdown()


def test_two_replicas_answer_the_cohere_sdk_as_the_engine_does(replicas, default_reranker):
    assert _running() == 2
    expected = default_reranker.rerank(QUERY, DOCS, top_n=3, first_stage="none")  # a set, as the API sends it
    for _ in range(4):  # the proxy spreads them over both replicas
        got = cohere.ClientV2(api_key="k", base_url=replicas).rerank(model="routehead", query=QUERY, documents=DOCS,
                                                                     top_n=3)
        assert [r.index for r in got.results] == [r.index for r in expected]
    assert httpx.get(f"{replicas}/ready").json()["ready"] is True
    assert "routehead_requests" in httpx.get(f"{replicas}/metrics").text
    assert httpx.post(f"{replicas}/v2/rerank", json={"query": "", "documents": DOCS}).status_code == 422  # same limits


def test_a_killed_replica_is_replaced_and_only_its_requests_fail(replicas, capsys):
    _running()

    def one(_: int) -> int:
        try:
            return httpx.post(f"{replicas}/v2/rerank", json={"query": QUERY, "documents": DOCS}, timeout=600).status_code
        except httpx.HTTPError:
            return 599

    victim = next(a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("SERVE_REPLICA"))
    with ThreadPoolExecutor(8) as pool:
        answers = pool.map(one, range(24))
        time.sleep(1.0)  # requests in flight on both replicas
        ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
        codes = list(answers)
    failed = sum(c >= 500 for c in codes)
    with capsys.disabled():
        print(f"\nreplica killed mid-run: {codes.count(200)} of {len(codes)} answered 200, {failed} 5xx or dropped")
    assert failed <= 8  # at most the requests in flight when it died (8 clients): none sent after it fails
    assert codes.count(200) >= len(codes) - failed and failed < len(codes)
    assert _running() == 2  # replaced
    assert all(one(i) == 200 for i in range(4))


def test_start_up_is_retried_where_ray_loses_an_actor_then_fails_saying_what_to_do():
    from ray.exceptions import RayActorError

    tries, resets = [], []

    def flaky() -> None:  # Ray killed the Serve proxy before it ran, twice
        tries.append(time.monotonic())
        if len(tries) <= 2:
            raise RayActorError(error_msg="The actor died because it was cancelled before it started running.")

    start_within(flaky, timeout_s=5, reset=lambda: resets.append(1), pause_s=0.1)
    assert len(tries) == 3 and len(resets) == 2

    def dead() -> None:
        raise RayActorError(error_msg="The actor died because it was cancelled before it started running.")

    started = time.monotonic()
    with pytest.raises(ValueError, match=r"did not start within 1 s \(\d+ tries.*fewer --replicas.*without --ray"):
        start_within(dead, timeout_s=1, reset=lambda: None, pause_s=0.2)
    assert time.monotonic() - started < 2
