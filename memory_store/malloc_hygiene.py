"""Keep a long-lived serving process's resident memory flat (glibc malloc arenas).

A server runs our nodes on many threads (the asyncio thread pool, the LangGraph server's workers,
Chroma's own). glibc gives each thread that allocates under contention its own malloc arena (up to
8 x cores of them) and rarely returns their freed pages to the system, so RSS creeps up request
after request although the live Python heap does not grow (the soak of ``bench chaos`` measured
+3.4 MB/min with a flat traced heap; with at most 2 arenas, +0.8 MB/min and a 30 MB lower
baseline). `memrec serve` therefore starts the server with ``MALLOC_ARENA_MAX`` set
(:func:`server_env`; ``MEMREC_MALLOC_ARENAS``, default 2); in any serving process, the first
shared workspace caps the arenas made from then on (``mallopt``) and starts a daemon thread that
hands free pages back every ``MEMREC_MALLOC_TRIM_S`` seconds (``malloc_trim(0)``, default 30;
0 disables both). Elsewhere than glibc it does nothing. For a container deployment, set
``MALLOC_ARENA_MAX=2`` in its environment.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
import time

logger = logging.getLogger(__name__)

ARENAS_ENV = "MEMREC_MALLOC_ARENAS"
GLIBC_ARENAS_ENV = "MALLOC_ARENA_MAX"  # read by glibc when the process starts
TRIM_ENV = "MEMREC_MALLOC_TRIM_S"
_M_ARENA_MAX = -8  # glibc malloc.h

_started = False
_lock = threading.Lock()


def server_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment to start a server process with: glibc's arena cap set from the start.

    ``mallopt`` in a running process cannot shrink the arenas its threads already made, so
    `memrec serve` (and the benchmarks' server) set ``MALLOC_ARENA_MAX`` before the process
    starts, unless it is set already.
    """
    env = dict(os.environ if environ is None else environ)
    env.setdefault(GLIBC_ARENAS_ENV, str(int(_setting(ARENAS_ENV, 2))))
    return env


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def _setting(env: str, default: float) -> float:
    raw = os.environ.get(env)
    try:
        return float(raw) if raw else default
    except ValueError:
        logger.warning("%s=%r is not a number; using %s", env, raw, default)
        return default


def start() -> bool:
    """Cap the malloc arenas and start the trimming thread (once per process); whether it did."""
    global _started
    with _lock:
        if _started:
            return False
        _started = True
        every_s = _setting(TRIM_ENV, 30.0)
        libc = _libc()
        if libc is None or every_s <= 0:
            return False
        arenas = int(_setting(ARENAS_ENV, 2))
        if arenas > 0:
            libc.mallopt(_M_ARENA_MAX, arenas)
        thread = threading.Thread(
            target=_trim_forever, args=(libc, every_s), name="memrec-malloc-trim", daemon=True
        )
        thread.start()
        return True


def _trim_forever(libc: ctypes.CDLL, every_s: float) -> None:
    while True:
        time.sleep(every_s)
        libc.malloc_trim(0)
