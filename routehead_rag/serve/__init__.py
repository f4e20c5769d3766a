"""The HTTP server (``routehead serve``): :func:`create_app` over one engine; needs the ``serve`` extra."""

from .app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
