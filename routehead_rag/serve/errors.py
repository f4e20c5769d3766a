"""Every error the server answers is ``{"error": "<what is wrong, and what to do>"}``: the HTTP layer's own (a request
that is not HTTP/1.1, answered by :mod:`.protocol`), the framework's (404, 405, a body that is not UTF-8 or not JSON, a
field of the wrong type) and the server's refusals.

Each error is also counted in ``routehead_errors`` by kind (:data:`KINDS`).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

ROUTES = "POST /v1/rerank, /v2/rerank (Cohere, Jina, vLLM), POST /rerank (TEI); GET /health, /ready, /metrics, /docs"
KINDS = {400: "invalid", 401: "unauthorized", 404: "not_found", 405: "not_found", 413: "too_large", 422: "invalid",
         429: "queue_full", 500: "internal", 503: "unavailable"}
_EXAMPLE = '{"query": "...", "documents": ["...", "..."]}'


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def broken_request_message(reason: BaseException | None) -> str:
    """A request the HTTP parser refused (``reason``: the parser's error, e.g. ``Invalid character in
    Content-Length``), said as what a request must look like."""
    said = f" ({reason})" if reason is not None and str(reason) else ""
    return (f"the request is not valid HTTP/1.1{said}; send a request line such as 'POST /v2/rerank HTTP/1.1', a "
            "Content-Length of digits or 'Transfer-Encoding: chunked' (not both), and a JSON body such as "
            f"{_EXAMPLE}.")


def validation_message(err: RequestValidationError) -> str:
    """What is wrong with a body FastAPI could not read into the request's model: where the JSON breaks, or
    ``body.documents.2: Input should be a valid string; ...`` (where each problem is, and what it is)."""
    problems = err.errors()
    broken = next((p for p in problems if p.get("type") == "json_invalid"), None)
    if broken is not None:
        return _json_message(err.body, broken)
    parts = []
    for problem in problems[:5]:
        where = ".".join(str(p) for p in problem.get("loc", ()))
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more + "; see /docs for the request format."


def _json_message(body: object, problem: dict) -> str:
    reason = (problem.get("ctx") or {}).get("error", "not JSON")
    position = problem.get("loc", ())[-1] if problem.get("loc") else None
    where = ""
    if isinstance(position, int) and isinstance(body, str):
        line = body.count("\n", 0, position) + 1
        column = position - (body.rfind("\n", 0, position) + 1) + 1
        where = f" at line {line}, column {column} (character {position})"
    return (f"the request body is not valid JSON: {reason}{where}; send one JSON object such as {_EXAMPLE}, with "
            "strings in double quotes and no trailing commas.")


def http_message(request: Request, err: HTTPException) -> str:
    """The framework's own errors, said as what to do: no such route, a method the route does not take, a body that
    is not UTF-8 text, or the message of an error raised with one."""
    if err.status_code == 404:
        return f"there is no route {request.url.path}; the routes are {ROUTES}."
    if err.status_code == 405:
        allowed = (err.headers or {}).get("Allow", "")
        return f"{request.method} is not allowed on {request.url.path}; use {allowed or 'another method'}."
    cause = err.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return (f"the request body is not UTF-8 text (byte {cause.object[cause.start]:#04x} at offset {cause.start}); "
                f"send JSON encoded as UTF-8, such as {_EXAMPLE}.")
    if err.status_code == 400 and cause is not None:
        return f"the request body could not be read as JSON ({type(cause).__name__}); send one UTF-8 JSON object."
    return str(err.detail)
