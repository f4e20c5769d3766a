"""``routehead serve`` in a subprocess on a free loopback port, for the benchmarks that load it over real HTTP
(``serve_load.py``, ``large_requests.py``)."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx


@contextlib.contextmanager
def served(*options: str, ready_within_s: float = 300) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start ``routehead serve --port P *options`` on a free loopback port and wait until ``/ready`` answers 200;
    yields its URL and process, and stops it with SIGTERM (so it answers what it accepted) on the way out. Exits
    with a message if it is not ready within ``ready_within_s`` seconds or dies first."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "routehead_rag.cli", "serve", "--port", str(port), *options])
    try:
        deadline = time.time() + ready_within_s
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("the server did not become ready")
            time.sleep(0.5)
        yield url, server
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=600)
