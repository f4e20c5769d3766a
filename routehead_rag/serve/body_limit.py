"""The request body's size, enforced while it streams in: an ASGI middleware that counts the bytes ``receive``
hands over, whether the client declared a ``Content-Length`` or sends ``Transfer-Encoding: chunked``.

A declared length over the limit is refused before any byte is read; an undeclared (or understated) one as soon as
the bytes read pass the limit, so a server never holds more than ``max_bytes`` (plus one chunk) of a body.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error


class BodyTooLarge(HTTPException):
    """The body passed the limit while it was read. An ``HTTPException``, so the framework's body parsing lets it
    through to the server's error handler (a 413) instead of calling it a malformed body."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, detail=f"the request body is over this server's limit of {max_bytes} bytes "
                                     "(--max-body-bytes); send fewer or shorter documents per request.")


class BodyLimit:
    """Answer 413 to a request whose body is over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received, started = 0, False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error(413, BodyTooLarge(self.max_bytes).detail, {"Connection": "close"})
        await response(scope, receive, send)
