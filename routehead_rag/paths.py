"""Where routehead-rag keeps its caches and finds the shared evaluation data."""

from __future__ import annotations

import os
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
