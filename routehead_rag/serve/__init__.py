"""The HTTP server (``routehead serve``): :func:`create_app` over one engine, served by uvicorn with the protocol of
:func:`protocol_for` (the HTTP layer's own errors in the same JSON format); needs the ``serve`` extra."""

from .app import ServeSettings, create_app
from .protocol import protocol_for

__all__ = ["ServeSettings", "create_app", "protocol_for"]
