"""The HTTP layer's own refusals in the server's one error format.

uvicorn parses every request before the app sees it, and answers one it cannot parse itself: a 400 with the plain-text
body ``Invalid HTTP request received.`` (a garbage request line, ``Content-Length: abc``, ``Content-Length`` together
with ``Transfer-Encoding: chunked``, a bad chunk size, ...). uvicorn has no setting for that reply, but takes the
protocol class that parses (``http=``): :class:`JSONErrorsProtocol` is uvicorn's httptools protocol with that one
reply replaced by a 400 ``{"error": "..."}`` (rendered as :func:`.errors.error` renders every other error) that names
what the parser refused and what a request must look like, on a connection then closed (as uvicorn's), and counted in
the app's ``routehead_errors`` as ``invalid``.

httptools (llhttp, Node.js's parser) rather than h11: llhttp refuses a request that has both ``Content-Length`` and
``Transfer-Encoding: chunked`` (the ambiguity request smuggling uses), where h11 reads such a body by its chunks alone;
RFC 9112 allows either, and refusing leaves nothing for a proxy in front to read differently.
"""

from __future__ import annotations

import sys

from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import broken_request_message, error
from .metrics import Metrics

_STATUS_LINE = b"HTTP/1.1 400 Bad Request\r\n"


class JSONErrorsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering a request it cannot parse with the server's JSON error (counted in
    ``metrics`` where given: :func:`protocol_for` sets them)."""

    metrics: Metrics | None = None

    def send_400_response(self, msg: str) -> None:
        """Called by uvicorn inside its ``except`` for the parser's error, which ``sys.exc_info`` gives (``msg`` is
        uvicorn's fixed text)."""
        response = error(400, broken_request_message(sys.exc_info()[1]), {"Connection": "close"})
        headers = [*self.server_state.default_headers, *response.raw_headers]  # server and date, as uvicorn's
        self.transport.write(b"".join([_STATUS_LINE, *(name + b": " + value + b"\r\n" for name, value in headers),
                                       b"\r\n", response.body]))
        self.transport.close()
        if self.metrics is not None:
            self.metrics.answered("other", 400)


def protocol_for(app: FastAPI) -> type[JSONErrorsProtocol]:
    """The protocol class to give uvicorn (``uvicorn.run(app, http=protocol_for(app))``) for an app of
    :func:`.app.create_app`: its broken requests are counted in its own metrics (``app.state.metrics``)."""
    return type("JSONErrorsProtocol", (JSONErrorsProtocol,), {"metrics": app.state.metrics})
