"""``routehead serve``: the engine behind the rerank HTTP APIs that RAG stacks already call (FastAPI).

Routes: ``POST /v1/rerank`` and ``/v2/rerank`` (Cohere, Jina, vLLM), ``POST /rerank`` (Hugging Face TEI),
``GET /health`` (the process answers), ``/ready`` (the model is loaded and the batcher runs), ``/metrics``
(Prometheus), ``/docs`` (OpenAPI). Every request is checked and costed before it is queued; requests are batched
(:mod:`.batcher`); with an API key, a request without ``Authorization: Bearer <key>`` gets a 401 before anything else
runs. Every error is JSON ``{"error": "..."}`` that says what to fix (:mod:`.errors`): 400 (a request that is not
HTTP/1.1, answered by the protocol of :mod:`.protocol` that uvicorn is given; a body that is not UTF-8), 401, 404, 405,
413 (too many documents, body too large, over the per-request token budget), 422 (wrong types, malformed JSON, a query
over the token limit, text the engine refuses), 429 (queue full, with ``Retry-After``), 503 (timed out waiting).
"""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from ..calibration import RAW_SCORE_KEY, shown_score
from ..documents import check_query
from ..reranker import RerankJob, RerankResult, RouteHeadReranker
from .batcher import Batcher, QueueFull, TimedOut
from .body_limit import BodyLimit
from .errors import error, http_message, validation_message
from .metrics import Metrics
from .schemas import CohereRerankRequest, CohereRerankResponse, DocumentObject, ErrorBody, TEIRerankRequest, TEIResult

RERANK_ROUTES = ("/v1/rerank", "/v2/rerank", "/rerank")
OPEN_ROUTES = ("/health", "/ready", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc")
ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 413, 422, 429, 500, 503)}


@dataclass(frozen=True)
class ServeSettings:
    """The server's limits (the CLI option of each in brackets; README's "Server limits" lists them).

    api_key: required as ``Authorization: Bearer <key>`` on every route but health, readiness and docs (the scheme
    ``Bearer`` in any case, as HTTP's schemes are; a bare key is refused; ``None``: no auth) [--api-key];
    max_documents: per request [--max-documents]; max_body_bytes: per request body, counted as it streams in
    [--max-body-bytes]; max_query_tokens: tokens of the query (after the request's own ``max_tokens_per_query`` cut),
    beyond which it is refused with a 422 before the prompt is laid out (as the rerank APIs cap queries: Cohere at
    2,048 tokens) [--max-query-tokens]; max_request_tokens: prompt tokens one request may cost (every window's
    documents and query; the engine's time grows with them), beyond which it is refused with a 413
    [--max-request-tokens]; large_request_tokens: requests of at least this many prompt tokens run on a second
    engine thread, so that a small request shares the machine with a large one instead of waiting for it (``None``:
    one thread) [--large-request-tokens]; max_queue: requests that may wait for a batch [--max-queue];
    batch_tokens: prompt tokens grouped into one engine call (``None``: the engine's, 0 on a CPU, where each request
    runs alone, as grouping brings no speed there and would make a small request wait for a large one);
    max_wait_ms: how long a batch waits for company [--max-wait-ms]; timeout_s: how long a request may wait and run
    before it is answered 503 [--timeout].
    """

    api_key: str | None = None
    max_documents: int = 1000
    max_body_bytes: int = 16 * 1024 * 1024
    max_query_tokens: int = 2048
    max_request_tokens: int = 8192
    large_request_tokens: int | None = 2048
    max_queue: int = 64
    batch_tokens: int | None = None
    max_wait_ms: float = 5.0
    timeout_s: float = 120.0


class RequestTooLarge(Exception):
    """More documents, or a costlier request, than the server's limits: a 413."""


class _Refused(Exception):
    """The engine refused the request's input (its message says what to fix): a 422."""


def create_app(engine: RouteHeadReranker, settings: ServeSettings | None = None) -> FastAPI:
    """The HTTP app over one shared ``engine`` (loaded once; every request reuses it). Serve it with uvicorn's
    ``http=``:func:`.protocol.protocol_for` (``app``), so that a request uvicorn cannot parse is answered in the same
    JSON format and counted in ``app.state.metrics``."""
    settings = settings or ServeSettings()
    metrics = Metrics()
    batch_tokens = engine.batch_tokens if settings.batch_tokens is None else settings.batch_tokens
    batcher = Batcher(engine, max_queue=settings.max_queue, batch_tokens=batch_tokens,
                      max_wait_s=settings.max_wait_ms / 1000, large_tokens=settings.large_request_tokens,
                      on_batch=metrics.batch)
    model_name = engine.backbone.name

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        app.state.ready = True
        yield
        app.state.ready = False
        await batcher.stop()  # what was accepted is answered before the process ends

    app = FastAPI(title="routehead-rag", lifespan=lifespan,
                  description="Attention-head re-ranking behind the Cohere/Jina/vLLM and TEI rerank APIs.")
    app.state.ready = False
    app.state.batcher, app.state.metrics = batcher, metrics
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # inside the guard: a 401 comes first

    @app.middleware("http")
    async def guard(request: Request, call_next):
        path = request.url.path
        route = path if path in RERANK_ROUTES or path in OPEN_ROUTES or path == "/metrics" else "other"
        start = time.perf_counter()
        refused = None if settings.api_key is None or path in OPEN_ROUTES else _unauthorized(request, settings.api_key)
        if refused is not None:
            response = error(401, refused, {"WWW-Authenticate": "Bearer"})
        else:
            try:
                response = await call_next(request)
            except Exception as err:  # a failure of the model, not of the input: the one source of a 500
                response = error(500, f"the model failed on this request ({type(err).__name__}: {err}).")
        if route in RERANK_ROUTES:
            metrics.latency.labels(route).observe(time.perf_counter() - start)
        metrics.answered(route, response.status_code)
        return response

    @app.exception_handler(HTTPException)
    async def framework_error(request: Request, err: HTTPException) -> JSONResponse:
        return error(err.status_code, http_message(request, err), err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return error(422, validation_message(err))

    @app.exception_handler(RequestTooLarge)
    async def too_large(request: Request, err: RequestTooLarge) -> JSONResponse:
        return error(413, str(err))

    @app.exception_handler(_Refused)
    async def refused(request: Request, err: _Refused) -> JSONResponse:
        return error(422, str(err))

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, err: QueueFull) -> JSONResponse:
        return error(429, f"the server is busy ({settings.max_queue} requests waiting); retry after a second.",
                     {"Retry-After": "1"})

    @app.exception_handler(TimedOut)
    async def timed_out(request: Request, err: TimedOut) -> JSONResponse:
        return error(503, f"the request was not answered within {settings.timeout_s} s; retry later, or send "
                          "fewer documents.", {"Retry-After": "5"})

    def admit_query(query: str, max_query_tokens: int | None) -> None:
        """Refuse a query over the token limit (after the request's own ``max_tokens_per_query`` cut), before the
        engine lays it out: so that the refusal names this server's option and the request's field, also for a query
        too long for the model's window."""
        tokens = engine.prompts.query_within(check_query(query), None)[1]
        if max_query_tokens is not None:
            tokens = min(tokens, max_query_tokens)
        if tokens > settings.max_query_tokens:
            raise _Refused(f"the query has {tokens} tokens, over this server's limit of "
                           f"{settings.max_query_tokens} (--max-query-tokens); shorten it, or send "
                           f"max_tokens_per_query (at most {settings.max_query_tokens}) to have it cut.")

    def admit(job: RerankJob) -> None:
        """Refuse a request that would hold the engine too long: its prompts over the per-request budget."""
        if job.tokens > settings.max_request_tokens:
            raise RequestTooLarge(
                f"this request needs {job.tokens} prompt tokens ({len(job.truncated)} documents in "
                f"{len(job.windows)} windows), over this server's budget of {settings.max_request_tokens} per request "
                "(--max-request-tokens); send fewer documents, cut them shorter (max_tokens_per_doc), or split the "
                "list over several requests.")

    async def prepare(query: str, documents: Sequence[str | DocumentObject], top_n: int | None, *, ranked: bool,
                      first_stage_scores: Sequence[float] | None, max_query_tokens: int | None = None,
                      max_doc_tokens: int | None = None) -> RerankJob:
        """The request checked, laid out and costed (no model work): its job, for :func:`run`. The documents are a
        set (the rerank APIs' meaning) unless the request says they are ``ranked`` or gives ``first_stage_scores``."""
        if len(documents) > settings.max_documents:
            raise RequestTooLarge(f"{len(documents)} documents is over this server's limit of "
                                  f"{settings.max_documents} per request (--max-documents); split the list.")
        docs = [d if isinstance(d, str) else {"text": d.text, "title": d.title or ""} for d in documents]
        first_stage = first_stage_scores if first_stage_scores is not None else "order" if ranked else "none"

        def checked() -> RerankJob:  # checks and layout; no model work
            admit_query(query, max_query_tokens)
            return engine.prepare(query, docs, top_n, first_stage=first_stage, max_query_tokens=max_query_tokens,
                                  max_doc_tokens=max_doc_tokens)

        try:
            job = await asyncio.to_thread(checked)
        except (TypeError, ValueError) as err:
            raise _Refused(str(err)) from None
        admit(job)
        return job

    async def run(job: RerankJob) -> list[RerankResult]:
        if not job.truncated:
            return []
        metrics.queue_depth.set(batcher.depth + 1)
        try:
            return await batcher.submit(job, settings.timeout_s)
        finally:
            metrics.queue_depth.set(batcher.depth)

    def truncation(job: RerankJob, max_doc_tokens: int | None) -> tuple[list[str], dict[str, str]]:
        warnings, headers = [], {}
        if job.query_truncated:
            warnings.append(f"the query was cut to its first {job.query_tokens} tokens (max_tokens_per_query).")
        cut = [i for i, was_cut in enumerate(job.truncated) if was_cut]
        if cut:
            budget = f"{engine.settings.max_doc_words} words per document" + (
                f", max_tokens_per_doc={max_doc_tokens}" if max_doc_tokens is not None else "")
            warnings.append(f"documents {cut} were cut to the model's budget ({budget}, inside their own span); their "
                            "scores read only their start.")
            headers["X-Routehead-Truncated"] = ",".join(map(str, cut))
        return warnings, headers

    async def cohere(body: CohereRerankRequest, version: str) -> JSONResponse:
        job = await prepare(body.query, body.documents, body.top_n, ranked=body.ranked,
                            first_stage_scores=body.first_stage_scores, max_query_tokens=body.max_tokens_per_query,
                            max_doc_tokens=body.max_tokens_per_doc)
        results = await run(job)
        warnings, headers = truncation(job, body.max_tokens_per_doc)
        if engine.calibration is None:
            warnings.append("relevance_score is the engine's own score: no calibration exists for this model and "
                            "mode (fit one with `routehead calibrate`).")
        texts = [d if isinstance(d, str) else d.text for d in body.documents]
        response = CohereRerankResponse(
            id=str(uuid.uuid4()),
            results=[{"index": r.index, "relevance_score": shown_score(r),
                      **({"document": {"text": texts[r.index]}} if body.return_documents else {})} for r in results],
            meta={"api_version": {"version": version}, "billed_units": {"search_units": 1}, "warnings": warnings,
                  "model": model_name, RAW_SCORE_KEY: [r.score for r in results]})
        return JSONResponse(response.model_dump(exclude_none=True), headers=headers)

    @app.post("/v1/rerank", response_model=CohereRerankResponse, responses=ERRORS, summary="Rerank (Cohere v1, Jina)")
    async def rerank_v1(body: CohereRerankRequest) -> JSONResponse:
        return await cohere(body, "1")

    @app.post("/v2/rerank", response_model=CohereRerankResponse, responses=ERRORS, summary="Rerank (Cohere v2, vLLM)")
    async def rerank_v2(body: CohereRerankRequest) -> JSONResponse:
        return await cohere(body, "2")

    @app.post("/rerank", response_model=list[TEIResult], responses=ERRORS, summary="Rerank (Hugging Face TEI)")
    async def rerank_tei(body: TEIRerankRequest) -> JSONResponse:
        job = await prepare(body.query, body.texts, None, ranked=body.ranked, first_stage_scores=body.first_stage_scores)
        results = await run(job)
        _, headers = truncation(job, None)
        out = [TEIResult(index=r.index, score=r.score if body.raw_scores else shown_score(r),
                         text=body.texts[r.index] if body.return_text else None) for r in results]
        return JSONResponse([o.model_dump(exclude_none=True) for o in out], headers=headers)

    @app.get("/health", summary="The process answers")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", summary="The model is loaded and requests are served", responses={503: {"model": ErrorBody}})
    async def ready() -> JSONResponse:
        if not app.state.ready:
            return error(503, "starting or stopping; not serving requests.")
        return JSONResponse({"ready": True, "model": model_name, "mode": engine.mode, "recipe": engine.recipe.key(),
                             "calibrated": engine.calibration is not None, "queue_depth": batcher.depth})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}}, 401: {"model": ErrorBody}})
    async def prometheus() -> Response:
        metrics.queue_depth.set(batcher.depth)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app


def _unauthorized(request: Request, key: str) -> str | None:
    """Why ``request`` is refused a 401 (``None``: it carries ``Authorization: Bearer <key>``; the scheme in any
    case, as HTTP's are, then one space and exactly the key)."""
    given = request.headers.get("authorization")
    if given is None:
        return "this server needs an API key: send the header 'Authorization: Bearer <key>'."
    if given[:7].lower() != "bearer ":
        return ("the Authorization header is not a bearer token: send 'Authorization: Bearer <key>' (the word "
                "Bearer, a space, then the key).")
    if not hmac.compare_digest(given[7:].encode(), key.encode()):
        return "wrong API key: send the header 'Authorization: Bearer <key>' with this server's key (--api-key)."
    return None
