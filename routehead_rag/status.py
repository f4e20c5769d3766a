"""What a user sees while they wait: one status line on stderr, nothing else unless they ask.

Quiet by default: the status line shows only where stderr is a terminal (and is wiped when the wait ends), and
third-party progress bars stay off (``backbone.quiet_loading``). Verbose (``ROUTEHEAD_VERBOSE=1``, or
:func:`set_verbose`, the CLI's ``--verbose``): each wait is printed as a line with its duration, on any stderr, and
the third-party bars are shown.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator

_verbose: bool | None = None  # None: ROUTEHEAD_VERBOSE decides
_waits = threading.local()  # the messages of this thread's waits in progress, outermost first


def set_verbose(on: bool | None) -> None:
    """Show every wait and the third-party progress bars (``True``), or not (``False``); ``None``: the environment's
    ``ROUTEHEAD_VERBOSE`` decides again."""
    global _verbose
    _verbose = on


def is_verbose() -> bool:
    if _verbose is not None:
        return _verbose
    return os.environ.get("ROUTEHEAD_VERBOSE", "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def waiting(message: str) -> Iterator[None]:
    """While the block runs, ``message`` on one stderr line: on a terminal (wiped after; a wait inside another shows
    in its place, then gives the line back), or when verbose (kept, with the seconds it took). Silent elsewhere."""
    stack: list[str] = _waits.__dict__.setdefault("stack", [])
    verbose, stream = is_verbose(), sys.stderr
    shown = verbose or stream.isatty()
    start = time.perf_counter()
    if shown:
        stream.write(f"{message} …\n" if verbose else f"\r\033[K{message} …")
        stream.flush()
    stack.append(message)
    try:
        yield
    finally:
        stack.pop()
        if shown:
            if verbose:
                stream.write(f"{message}: {time.perf_counter() - start:.1f} s\n")
            else:
                stream.write("\r\033[K" + (f"{stack[-1]} …" if stack else ""))
            stream.flush()
