"""Where routehead-rag keeps its caches and finds the shared evaluation data."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/routehead-rag``, by default ``~/.cache/routehead-rag``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "routehead-rag"


def shared_data_dir() -> Path | None:
    """The shared evaluation data: ``$ROUTEHEAD_SHARED_DATA``, else ``../shared/data`` from the working directory
    or from the repository checkout; ``None`` where there is none (as on a user's machine)."""
    repo_relative = Path(__file__).resolve().parents[2] / "shared" / "data"
    for candidate in (os.environ.get("ROUTEHEAD_SHARED_DATA"), "../shared/data", repo_relative):
        if candidate and Path(candidate).expanduser().is_dir():
            return Path(candidate).expanduser().resolve()
    return None


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """``write(temporary_path)`` into a file beside ``path``, then renamed over it: a kill at any point leaves the old
    file or the new one, never half of one. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
