"""``routehead serve`` over real HTTP on loopback, with clients nobody here wrote: the ``cohere`` SDK (v1 and v2)
and LlamaIndex's TEI rerank postprocessor; bad input, auth, limits (a body counted as it streams in, the query and
per-request token limits, the per-request cuts), one error format (requests that are not HTTP/1.1 included, sent as raw
bytes), refusals that name real options and fields, fair order, batching under concurrency and shutdown."""

from __future__ import annotations

import asyncio
import argparse
import json
import re
import socket
import threading
import time

import cohere
import httpx
import pytest
import uvicorn
from cohere.core.api_error import ApiError
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.adapters import shown_score
from routehead_rag.cli import build_parser, main
from routehead_rag.serve import ServeSettings, create_app, protocol_for
from routehead_rag.serve.protocol import JSONErrorsProtocol
from routehead_rag.serve.schemas import CohereRerankRequest, TEIRerankRequest

KEY = "test-key"
QUERY = "What causes scurvy?"
DOCS = ["Scurvy is a disease caused by a lack of vitamin C.", "Clipper ships carried tea from China.",
        "Lemons and oranges are rich in vitamin C.", "Rickets weakens the bones of children.",
        "Sailors on long voyages fell ill without fresh fruit."]


class Server:
    """A uvicorn server for ``app`` on a free loopback port, in a thread, with the HTTP protocol ``routehead serve``
    gives uvicorn."""

    def __init__(self, app) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, http=protocol_for(app), log_level="warning",
                                                    timeout_graceful_shutdown=30))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.fixture(scope="module")
def server(default_reranker):
    with Server(create_app(default_reranker, ServeSettings(api_key=KEY, max_documents=50))) as running:
        yield running


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def _serve_options() -> set[str]:
    """The options of ``routehead serve``."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(commands.choices["serve"]._option_string_actions)


REAL_NAMES = _serve_options() | set(CohereRerankRequest.model_fields) | set(TEIRerankRequest.model_fields)


def _named(message: str) -> set[str]:
    """The options (``--max-documents``) and field-like names (``max_tokens_per_query``) a message names."""
    return set(re.findall(r"--[a-z][a-z-]*", message)) | set(re.findall(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", message))


def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """``request`` sent as it is on a socket of its own, and the server's status, headers and body (it closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    return int(status.split()[1]), headers, body


def _counted(url: str, sample: str) -> float:
    """A sample's value in the server's /metrics (0 where absent)."""
    text = httpx.get(f"{url}/metrics", headers=_auth()).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(sample + " "))


def _batches(url: str) -> float:
    """Requests served by the engine so far, from the server's own /metrics."""
    text = httpx.get(f"{url}/metrics", headers=_auth()).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("routehead_batch_requests_sum"))


def test_the_cohere_sdk_v2_and_v1_rank_as_the_engine(server, default_reranker):
    expected = default_reranker.rerank(QUERY, DOCS, top_n=3, first_stage="none")  # the APIs send a set
    v2 = cohere.ClientV2(api_key=KEY, base_url=server.url).rerank(model="routehead", query=QUERY, documents=DOCS,
                                                                   top_n=3)
    assert [r.index for r in v2.results] == [r.index for r in expected]
    assert [r.relevance_score for r in v2.results] == pytest.approx([shown_score(r) for r in expected], rel=1e-9)
    assert all(0 <= r.relevance_score <= 1 for r in v2.results)  # the shipped calibration
    v1 = cohere.Client(api_key=KEY, base_url=server.url).rerank(model="routehead", query=QUERY, documents=DOCS,
                                                                 top_n=3, return_documents=True)
    assert [(r.index, r.document.text) for r in v1.results] == [(r.index, DOCS[r.index]) for r in expected]


def test_the_documents_are_a_set_unless_the_request_says_they_are_ranked(server, default_reranker):
    client = cohere.ClientV2(api_key=KEY, base_url=server.url)
    by_text = []
    for order in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]):  # the same set in three orders
        docs = [DOCS[i] for i in order]
        results = client.rerank(model="routehead", query=QUERY, documents=docs).results
        by_text.append([(docs[r.index], r.relevance_score) for r in results])
    assert by_text[0] == by_text[1] == by_text[2]  # the same ranking and the same scores, exactly
    reversed_docs = DOCS[::-1]
    ranked = httpx.post(f"{server.url}/v2/rerank", headers=_auth(), timeout=120,
                        json={"query": QUERY, "documents": reversed_docs, "ranked": True}).json()["results"]
    expected = default_reranker.rerank(QUERY, reversed_docs)  # the order as a retriever's ranking, as in Python
    assert [r["index"] for r in ranked] == [r.index for r in expected]
    assert [r["relevance_score"] for r in ranked] == pytest.approx([shown_score(r) for r in expected], rel=1e-9)
    scores = [0.1, 0.9, 0.3, 0.2, 0.5]
    scored = httpx.post(f"{server.url}/rerank", headers=_auth(), timeout=120,
                        json={"query": QUERY, "texts": DOCS, "first_stage_scores": scores}).json()
    assert [r["index"] for r in scored] == [r.index for r in default_reranker.rerank(QUERY, DOCS, first_stage=scores)]
    schema = httpx.get(f"{server.url}/openapi.json").json()["components"]["schemas"]
    assert "ranked" in schema["CohereRerankRequest"]["properties"] and "set" in schema["CohereRerankRequest"][
        "properties"]["ranked"]["description"]


def test_llamaindex_tei_client_ranks_as_the_engine(server, default_reranker):
    nodes = [NodeWithScore(node=TextNode(text=text, id_=f"n{i}"), score=1.0 - i / 10) for i, text in enumerate(DOCS)]
    tei = TextEmbeddingInference(base_url=server.url, top_n=3, auth_token=f"Bearer {KEY}")
    out = tei.postprocess_nodes(nodes, query_str=QUERY)
    expected = default_reranker.rerank(QUERY, DOCS, top_n=3, first_stage="none")
    assert [n.node.node_id for n in out] == [f"n{r.index}" for r in expected]
    raw = httpx.post(f"{server.url}/rerank", headers=_auth(),
                     json={"query": QUERY, "texts": DOCS, "raw_scores": True, "return_text": True}).json()
    assert [(r["index"], r["text"]) for r in raw[:3]] == [(r.index, DOCS[r.index]) for r in expected]
    assert [r["score"] for r in raw[:3]] == pytest.approx([r.score for r in expected], rel=1e-9)


def test_without_the_key_401_and_the_model_never_runs(server):
    before = _batches(server.url)
    for headers, says in (({}, "needs an API key"), ({"Authorization": "Bearer wrong"}, "wrong API key"),
                          ({"Authorization": KEY}, "not a bearer token"),  # the bare key, as docs/server.md has it
                          ({"Authorization": f"Token {KEY}"}, "not a bearer token"),
                          ({"Authorization": f"Bearer  {KEY}"}, "wrong API key")):  # one space, then the key
        response = httpx.post(f"{server.url}/v2/rerank", json={"query": QUERY, "documents": DOCS}, headers=headers)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        assert list(response.json()) == ["error"] and says in response.json()["error"]
        assert "Authorization: Bearer <key>" in response.json()["error"]
    with pytest.raises(ApiError) as err:
        cohere.ClientV2(api_key="wrong", base_url=server.url).rerank(model="m", query=QUERY, documents=DOCS)
    assert err.value.status_code == 401
    assert _batches(server.url) == before
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}  # health and readiness need no key
    assert httpx.get(f"{server.url}/ready").json()["ready"] is True
    for scheme in ("Bearer", "bearer", "BEARER"):  # HTTP's auth schemes are case-insensitive
        assert httpx.get(f"{server.url}/metrics", headers={"Authorization": f"{scheme} {KEY}"}).status_code == 200


@pytest.mark.parametrize("body, status, says", [
    (b"{not json", 422, "JSON"),
    ({"query": QUERY}, 422, "body.documents: Field required"),
    ({"query": QUERY, "documents": [1, 2]}, 422, "body.documents.0"),
    ({"query": 5, "documents": DOCS}, 422, "body.query"),
    ({"query": QUERY, "documents": DOCS, "top_n": 0}, 422, "body.top_n"),
    ({"query": QUERY, "documents": DOCS, "top_n": True}, 422, "body.top_n"),
    ({"query": QUERY, "documents": DOCS, "top_n": "2"}, 422, "body.top_n"),
    ({"query": "   ", "documents": DOCS}, 422, "query is empty"),
    ({"query": QUERY, "documents": [{"title": "no text"}]}, 422, "text"),
    ({"query": QUERY, "documents": ["x"] * 51}, 413, "limit of 50"),
    ({"query": " ".join(["scurvy"] * 9000), "documents": DOCS}, 422, "(--max-query-tokens)"),
    ({"query": QUERY, "documents": DOCS, "max_tokens_per_query": 0}, 422, "body.max_tokens_per_query"),
    ({"query": QUERY, "documents": DOCS, "first_stage_scores": [1.0]}, 422, "first_stage_scores has 1 numbers"),
])
def test_bad_input_gets_a_4xx_that_says_what_to_fix(server, body, status, says):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    start = time.perf_counter()
    response = httpx.post(f"{server.url}/v1/rerank", content=content,
                          headers={**_auth(), "Content-Type": "application/json"})
    assert response.status_code == status and says in response.json()["error"]
    assert _named(response.json()["error"]) <= REAL_NAMES
    assert time.perf_counter() - start < 5  # refused before any model work


def test_a_query_too_long_for_the_window_is_refused_naming_the_option_and_the_field(server):
    query = " ".join(["scurvy"] * 20000)  # more tokens than the model's window of 8,192, not only than the limit
    response = httpx.post(f"{server.url}/v2/rerank", json={"query": query, "documents": DOCS}, headers=_auth(),
                          timeout=30)
    message = response.json()["error"]
    assert response.status_code == 422 and "(--max-query-tokens)" in message and "max_tokens_per_query" in message
    assert _named(message) <= REAL_NAMES, message
    cut = httpx.post(f"{server.url}/v2/rerank", json={"query": query, "documents": DOCS, "max_tokens_per_query": 16},
                     headers=_auth(), timeout=120)
    assert cut.status_code == 200 and any("cut to its first 16 tokens" in w for w in cut.json()["meta"]["warnings"])


BROKEN_HTTP = {  # what uvicorn's own parser refuses before any app sees the request
    "a garbage request line": (b"GARBAGE\r\n\r\n", "Invalid method"),
    "Content-Length: abc": (b"POST /v2/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: abc\r\n\r\n{}", "Content-Length"),
    "Content-Length with chunked": (b"POST /v2/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                                    "Transfer-Encoding can't be present with Content-Length"),
}


def test_routehead_serve_gives_uvicorn_the_protocol_that_answers_in_json(tiny_llama_dir, monkeypatch):
    given = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: given.update(app=app, **options))
    assert main(["serve", "--model", str(tiny_llama_dir), "--mode", "all", "--port", "8099"]) == 0
    assert issubclass(given["http"], JSONErrorsProtocol) and given["http"].metrics is given["app"].state.metrics


@pytest.mark.parametrize("case", list(BROKEN_HTTP))
def test_a_request_that_is_not_http_gets_the_one_json_error_format(server, case):
    request, says = BROKEN_HTTP[case]
    before = _counted(server.url, 'routehead_requests_total{route="other",status="400"}')
    status, headers, body = _raw(server.port, request)
    assert status == 400 and headers["content-type"] == "application/json", (status, headers, body)
    assert headers["connection"] == "close" and int(headers["content-length"]) == len(body)
    error = json.loads(body)
    assert list(error) == ["error"] and "not valid HTTP/1.1" in error["error"] and says in error["error"]
    assert _counted(server.url, 'routehead_requests_total{route="other",status="400"}') == before + 1
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}  # the server goes on


def test_a_lone_surrogate_an_empty_list_and_a_long_document(server):
    escaped = '{"query": "scurvy", "documents": ["bad \\ud800 text"]}'.encode()
    response = httpx.post(f"{server.url}/v2/rerank", content=escaped, headers={**_auth(), "Content-Type": "application/json"})
    assert response.status_code == 422 and "surrogate" in response.json()["error"]
    empty = httpx.post(f"{server.url}/v2/rerank", json={"query": QUERY, "documents": []}, headers=_auth())
    assert empty.status_code == 200 and empty.json()["results"] == []
    long = ["vitamin C " * 200, DOCS[0]]
    response = httpx.post(f"{server.url}/v2/rerank", json={"query": QUERY, "documents": long}, headers=_auth())
    assert response.status_code == 200 and response.headers["X-Routehead-Truncated"] == "0"
    assert any("documents [0] were cut" in w for w in response.json()["meta"]["warnings"])


def test_concurrent_requests_are_batched_and_equal_the_sequential_ones(server, default_reranker):
    cases = [(f"{QUERY} {i}", DOCS[i % 3:] + DOCS[:i % 3]) for i in range(12)]
    expected = [[r.index for r in default_reranker.rerank(q, d, first_stage="none")] for q, d in cases]

    async def everything():
        async with httpx.AsyncClient(base_url=server.url, headers=_auth(), timeout=120) as client:
            responses = await asyncio.gather(*[client.post("/v2/rerank", json={"query": q, "documents": d})
                                               for q, d in cases])
        return [[r["index"] for r in response.json()["results"]] for response in responses]

    assert asyncio.run(everything()) == expected
    metrics = httpx.get(f"{server.url}/metrics", headers=_auth()).text
    assert 'routehead_requests_total{route="/v2/rerank",status="200"}' in metrics
    assert "routehead_queue_depth" in metrics and "routehead_request_seconds_bucket" in metrics


def test_a_full_queue_is_refused_with_retry_after_and_shutdown_finishes_what_was_accepted(tiny_llama_dir):
    engine = RouteHeadReranker(tiny_llama_dir, Recipe(mode="all"), dtype="float32")
    real_run = engine.run

    def slow_run(jobs, batch_tokens=None):  # the real engine, slowed so that requests pile up
        time.sleep(0.3)
        return real_run(jobs, batch_tokens)

    engine.run = slow_run
    app = create_app(engine, ServeSettings(max_queue=2, max_wait_ms=1, batch_tokens=1))
    with Server(app) as running:
        async def burst():
            async with httpx.AsyncClient(base_url=running.url, timeout=60) as client:
                return await asyncio.gather(*[client.post("/v2/rerank", json={"query": f"q{i}", "documents": DOCS})
                                              for i in range(8)])

        responses = asyncio.run(burst())
        codes = sorted(r.status_code for r in responses)
        assert set(codes) == {200, 429} and codes.count(200) >= 2, codes
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.headers["Retry-After"] == "1" and "busy" in refused.json()["error"]

        results: list[int] = []
        def call():
            results.append(httpx.post(f"{running.url}/v2/rerank", json={"query": "q", "documents": DOCS},
                                      timeout=60).status_code)
        callers = [threading.Thread(target=call) for _ in range(2)]
        for caller in callers:
            caller.start()
        deadline = time.time() + 30
        while app.state.batcher.unanswered < 2:  # both accepted, and waiting or running
            assert time.time() < deadline, "the two requests did not reach the batcher"
            time.sleep(0.01)
    for caller in callers:
        caller.join()
    assert results == [200, 200]  # the server stopped only after answering them


def test_a_request_waiting_past_its_timeout_gets_a_503(tiny_llama_dir):
    engine = RouteHeadReranker(tiny_llama_dir, Recipe(mode="all"), dtype="float32")
    real_run = engine.run
    engine.run = lambda jobs, batch_tokens=None: (time.sleep(1.0), real_run(jobs, batch_tokens))[1]
    with Server(create_app(engine, ServeSettings(timeout_s=0.3))) as running:
        response = httpx.post(f"{running.url}/v2/rerank", json={"query": "q", "documents": DOCS}, timeout=30)
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert "within 0.3 s" in response.json()["error"]
        assert "/v2/rerank" in httpx.get(f"{running.url}/openapi.json").json()["paths"]


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams_in(default_reranker):
    def chunks():  # no Content-Length: Transfer-Encoding chunked, 64 KiB at a time, 2 MiB in all
        for _ in range(32):
            yield b"x" * 65536

    with Server(create_app(default_reranker, ServeSettings(max_body_bytes=100_000))) as running:
        response = httpx.post(f"{running.url}/v2/rerank", content=chunks(),
                              headers={"Content-Type": "application/json"})
        assert response.status_code == 413 and "limit of 100000 bytes (--max-body-bytes)" in response.json()["error"]
        declared = httpx.post(f"{running.url}/v2/rerank", content=b"x" * 200_000,
                              headers={"Content-Type": "application/json"})
        assert declared.status_code == 413 and "--max-body-bytes" in declared.json()["error"]
        fine = httpx.post(f"{running.url}/v2/rerank", json={"query": QUERY, "documents": []})
        assert fine.status_code == 200
        assert 'routehead_errors_total{kind="too_large"} 2.0' in httpx.get(f"{running.url}/metrics").text


@pytest.mark.parametrize("method, path, content, status, says", [
    ("POST", "/v2/rerank", b'{"query": "caf\xe9", "documents": []}', 400, "not UTF-8 text (byte 0xe9 at offset 14)"),
    ("POST", "/v2/rerank", b'{"query": "a",\n "documents": [1,]}', 422, "not valid JSON: Expecting value at line 2, "
                                                                       "column 18"),
    ("POST", "/rerank", b'{"query": "a", "texts": "one"}', 422, "body.texts: Input should be a valid list"),
    ("GET", "/v2/rerank", b"", 405, "GET is not allowed on /v2/rerank; use POST"),
    ("POST", "/v3/rerank", b"{}", 404, "there is no route /v3/rerank; the routes are POST /v1/rerank"),
])
def test_every_error_is_one_json_format_that_says_what_to_fix(server, method, path, content, status, says):
    response = httpx.request(method, f"{server.url}{path}", content=content,
                             headers={**_auth(), "Content-Type": "application/json"})
    assert response.status_code == status and list(response.json()) == ["error"]
    assert says in response.json()["error"]
    assert _named(response.json()["error"]) <= REAL_NAMES


def test_a_long_query_and_a_costly_request_are_refused_in_under_a_second_saying_what_to_change(default_reranker):
    words = ["scurvy", "vitamin", "lemons", "sailors", "voyage", "disease", "citrus", "navy"]
    long_query = " ".join(words[i % 8] + str(i % 97) for i in range(2000))
    many = [" ".join(words[(i + k) % 8] for k in range(10)) for i in range(500)]
    settings = ServeSettings(max_documents=1000)
    with Server(create_app(default_reranker, settings)) as running:
        for body, status, says in (({"query": long_query, "documents": DOCS}, 422, "--max-query-tokens"),
                                   ({"query": QUERY, "documents": many}, 413, "--max-request-tokens")):
            start = time.perf_counter()
            response = httpx.post(f"{running.url}/v2/rerank", json=body, timeout=30)
            assert response.status_code == status and says in response.json()["error"]
            assert _named(response.json()["error"]) <= REAL_NAMES
            assert time.perf_counter() - start < 1.0


def test_max_tokens_per_doc_and_per_query_cut_the_request_as_the_engine_does(server, default_reranker):
    docs = ["vitamin C " * 40, *DOCS[:3]]
    body = {"query": QUERY + " in sailors who sailed for months", "documents": docs, "max_tokens_per_doc": 6,
            "max_tokens_per_query": 4}
    response = httpx.post(f"{server.url}/v2/rerank", json=body, headers=_auth(), timeout=120)
    assert response.status_code == 200, response.text
    job = default_reranker.prepare(body["query"], docs, first_stage="none", max_query_tokens=4, max_doc_tokens=6)
    assert job.query_tokens == 4 and job.query_truncated
    expected = default_reranker.run([job])[0]
    assert [r["index"] for r in response.json()["results"]] == [r.index for r in expected]
    assert response.headers["X-Routehead-Truncated"] == "0,1,2,3"
    warnings = response.json()["meta"]["warnings"]
    assert any("cut to its first 4 tokens" in w for w in warnings)
    assert any("max_tokens_per_doc=6" in w for w in warnings)


def test_small_requests_waiting_beside_a_large_one_run_first(tiny_llama_dir):
    engine = RouteHeadReranker(tiny_llama_dir, Recipe(mode="all"), dtype="float32")
    real_run, order = engine.run, []

    def recorded_run(jobs, batch_tokens=None):
        order.extend(job.query for job in jobs)
        time.sleep(0.3)
        return real_run(jobs, batch_tokens)

    engine.run = recorded_run
    large = [f"document {i} about ships and lemons and the sea" for i in range(60)]
    with Server(create_app(engine, ServeSettings(max_wait_ms=0))) as running:
        async def arrive():
            async with httpx.AsyncClient(base_url=running.url, timeout=60) as client:
                async def post(query, docs, delay):
                    await asyncio.sleep(delay)
                    return await client.post("/v2/rerank", json={"query": query, "documents": docs})

                return await asyncio.gather(post("first", DOCS[:2], 0), post("large", large, 0.1),
                                            *[post(f"small{i}", DOCS[:2], 0.15) for i in range(3)])

        assert {r.status_code for r in asyncio.run(arrive())} == {200}
    assert order[0] == "first" and order[-1] == "large", order


def test_a_small_request_runs_beside_a_large_one_instead_of_waiting_for_it(tiny_llama_dir):
    engine = RouteHeadReranker(tiny_llama_dir, Recipe(mode="all"), dtype="float32")
    real_run = engine.run

    def slow_for_large(jobs, batch_tokens=None):  # a large request holds its thread for 3 s
        time.sleep(3.0 if sum(job.tokens for job in jobs) >= 300 else 0.05)
        return real_run(jobs, batch_tokens)

    engine.run = slow_for_large
    large = [f"document {i} about ships and lemons and the sea" for i in range(60)]
    with Server(create_app(engine, ServeSettings(large_request_tokens=300))) as running:
        async def both():
            async with httpx.AsyncClient(base_url=running.url, timeout=60) as client:
                async def timed(body, delay):
                    await asyncio.sleep(delay)
                    start = time.perf_counter()
                    response = await client.post("/v2/rerank", json=body)
                    return response.status_code, time.perf_counter() - start

                return await asyncio.gather(timed({"query": "large", "documents": large}, 0),
                                            timed({"query": "small", "documents": DOCS[:2]}, 0.5))

        (large_status, large_s), (small_status, small_s) = asyncio.run(both())
    assert large_status == small_status == 200
    assert small_s < 1.5 < large_s  # answered while the large one ran
