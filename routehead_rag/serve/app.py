"""``routehead serve``: the engine behind the rerank HTTP APIs that RAG stacks already call (FastAPI).

Routes: ``POST /v1/rerank`` and ``/v2/rerank`` (Cohere, Jina, vLLM), ``POST /rerank`` (Hugging Face TEI),
``GET /health`` (the process answers), ``/ready`` (the model is loaded and the batcher runs), ``/metrics``
(Prometheus), ``/docs`` (OpenAPI). Every request is checked before it is queued; requests are batched
(:mod:`.batcher`); with an API key, a request without it gets a 401 before anything else runs. Errors are JSON
``{"error": "..."}`` that say what to fix: 401, 413 (too many documents, body too large), 422 (wrong types,
malformed JSON, text the engine refuses), 429 (queue full, with ``Retry-After``), 503 (timed out waiting).
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

from ..calibration import RAW_SCORE_KEY, shown_score
from ..reranker import RerankResult, RouteHeadReranker
from .batcher import Batcher, QueueFull, TimedOut
from .metrics import Metrics
from .schemas import CohereRerankRequest, CohereRerankResponse, DocumentObject, ErrorBody, TEIRerankRequest, TEIResult

RERANK_ROUTES = ("/v1/rerank", "/v2/rerank", "/rerank")
OPEN_ROUTES = ("/health", "/ready", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc")
ERRORS = {status: {"model": ErrorBody} for status in (401, 413, 422, 429, 503)}


@dataclass(frozen=True)
class ServeSettings:
    """The server's limits.

    api_key: required as ``Authorization: Bearer <key>`` on every route but health, readiness and docs (``None``:
    no auth); max_documents: per request; max_body_bytes: per request body; max_queue: requests that may wait for
    a batch; batch_tokens: prompt tokens grouped into one engine call; max_wait_ms: how long a batch waits for
    company; timeout_s: how long a request may wait and run before it is answered 503.
    """

    api_key: str | None = None
    max_documents: int = 1000
    max_body_bytes: int = 16 * 1024 * 1024
    max_queue: int = 64
    batch_tokens: int = 16384
    max_wait_ms: float = 5.0
    timeout_s: float = 120.0


class RequestTooLarge(Exception):
    """More documents or bytes than the server's limits: a 413."""


class _Refused(Exception):
    """The engine refused the request's input (its message says what to fix): a 422."""


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(err: RequestValidationError) -> str:
    """``body.documents.2: Input should be a valid string; ...``: where each problem is, and what it is."""
    parts = []
    for problem in err.errors()[:5]:
        where = ".".join(str(p) for p in problem.get("loc", ()))
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    more = f" (+{len(err.errors()) - 5} more)" if len(err.errors()) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more + "; see /docs for the request format."


def create_app(engine: RouteHeadReranker, settings: ServeSettings | None = None) -> FastAPI:
    """The HTTP app over one shared ``engine`` (loaded once; every request reuses it)."""
    settings = settings or ServeSettings()
    metrics = Metrics()
    batcher = Batcher(engine, max_queue=settings.max_queue, batch_tokens=settings.batch_tokens,
                      max_wait_s=settings.max_wait_ms / 1000, on_batch=metrics.batch)
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

    @app.middleware("http")
    async def guard(request: Request, call_next):
        path = request.url.path
        route = path if path in RERANK_ROUTES or path in OPEN_ROUTES or path == "/metrics" else "other"
        start = time.perf_counter()
        if settings.api_key is not None and path not in OPEN_ROUTES and not _authorized(request, settings.api_key):
            response = _error(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'.",
                              {"WWW-Authenticate": "Bearer"})
            metrics.errors.labels("unauthorized").inc()
        elif int(request.headers.get("content-length") or 0) > settings.max_body_bytes:
            response = _error(413, f"the request body is over {settings.max_body_bytes} bytes; send fewer or "
                                   "shorter documents per request.")
            metrics.errors.labels("too_large").inc()
        else:
            try:
                response = await call_next(request)
            except Exception as err:  # a failure of the model, not of the input: the one source of a 500
                metrics.errors.labels("internal").inc()
                response = _error(500, f"the model failed on this request ({type(err).__name__}: {err}).")
        if route in RERANK_ROUTES:
            metrics.latency.labels(route).observe(time.perf_counter() - start)
        metrics.requests.labels(route, str(response.status_code)).inc()
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        metrics.errors.labels("invalid").inc()
        return _error(422, _validation_message(err))

    @app.exception_handler(RequestTooLarge)
    async def too_large(request: Request, err: RequestTooLarge) -> JSONResponse:
        metrics.errors.labels("too_large").inc()
        return _error(413, str(err))

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, err: QueueFull) -> JSONResponse:
        metrics.errors.labels("queue_full").inc()
        return _error(429, f"the server is busy ({settings.max_queue} requests waiting); retry after a second.",
                      {"Retry-After": "1"})

    @app.exception_handler(TimedOut)
    async def timed_out(request: Request, err: TimedOut) -> JSONResponse:
        metrics.errors.labels("timeout").inc()
        return _error(503, f"the request was not answered within {settings.timeout_s} s; retry later, or send "
                           "fewer documents.", {"Retry-After": "5"})

    async def rerank(query: str, documents: Sequence[str | DocumentObject], top_n: int | None,
                     ) -> list[RerankResult]:
        if len(documents) > settings.max_documents:
            raise RequestTooLarge(f"{len(documents)} documents is over this server's limit of "
                                  f"{settings.max_documents} per request; split the list.")
        docs = [d if isinstance(d, str) else {"text": d.text, "title": d.title or ""} for d in documents]
        try:
            job = await asyncio.to_thread(engine.prepare, query, docs, top_n)  # checks; no model work
        except (TypeError, ValueError) as err:
            metrics.errors.labels("invalid").inc()
            raise _Refused(str(err)) from None
        if not docs:
            return []
        metrics.queue_depth.set(batcher.depth + 1)
        try:
            return await batcher.submit(job, settings.timeout_s)
        finally:
            metrics.queue_depth.set(batcher.depth)

    @app.exception_handler(_Refused)
    async def refused(request: Request, err: _Refused) -> JSONResponse:
        return _error(422, str(err))

    def truncation(results: Sequence[RerankResult]) -> tuple[list[str], dict[str, str]]:
        cut = sorted(r.index for r in results if r.truncated)
        if not cut:
            return [], {}
        budget = engine.settings.max_doc_words
        return ([f"documents {cut} were cut to the model's budget ({budget} words per document, inside their own "
                 "span); their scores read only their start."], {"X-Routehead-Truncated": ",".join(map(str, cut))})

    async def cohere(body: CohereRerankRequest, version: str) -> JSONResponse:
        results = await rerank(body.query, body.documents, body.top_n)
        warnings, headers = truncation(results)
        if engine.calibration is None:
            warnings.append("relevance_score is the engine's own score: no calibration exists for this model and "
                            "mode (fit one with `routehead calibrate`).")
        if body.max_tokens_per_doc is not None:
            warnings.append("max_tokens_per_doc is not applied: the server's per-document budget is.")
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
        results = await rerank(body.query, body.texts, None)
        _, headers = truncation(results)
        out = [TEIResult(index=r.index, score=r.score if body.raw_scores else shown_score(r),
                         text=body.texts[r.index] if body.return_text else None) for r in results]
        return JSONResponse([o.model_dump(exclude_none=True) for o in out], headers=headers)

    @app.get("/health", summary="The process answers")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", summary="The model is loaded and requests are served", responses={503: {"model": ErrorBody}})
    async def ready() -> JSONResponse:
        if not app.state.ready:
            return _error(503, "starting or stopping; not serving requests.")
        return JSONResponse({"ready": True, "model": model_name, "mode": engine.mode,
                             "calibrated": engine.calibration is not None, "queue_depth": batcher.depth})

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        metrics.queue_depth.set(batcher.depth)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app


def _authorized(request: Request, key: str) -> bool:
    given = request.headers.get("authorization", "")
    token = given[7:] if given[:7].lower() == "bearer " else given
    return hmac.compare_digest(token.encode(), key.encode())
