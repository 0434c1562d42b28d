"""The event loop MemRec's commands run on: uvloop when installed, as under its servers.

``uvicorn`` (``services.http_api``, ``langgraph dev``) and the LangGraph server's queue already
run on uvloop when it is installed; the CLI's commands use the same loop through :func:`run`, so a
request costs the same event-loop CPU from a terminal as behind a server (``bench llm_cpu``
measures both loops). ``MEMREC_EVENT_LOOP=asyncio`` selects the standard library's loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
LOOPS = ("uvloop", "asyncio")


class EventLoopConfigError(ValueError):
    """``MEMREC_EVENT_LOOP`` names no event loop."""


def loop_factory(kind: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The new-loop function for ``kind`` (default ``MEMREC_EVENT_LOOP``, else uvloop if present).

    ``None`` means the standard library's loop.
    """
    kind = (kind or os.environ.get("MEMREC_EVENT_LOOP", "")).strip().lower() or "uvloop"
    if kind not in LOOPS:
        raise EventLoopConfigError(f"MEMREC_EVENT_LOOP={kind!r} is not one of {', '.join(LOOPS)}")
    if kind == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, loop: str | None = None) -> T:
    """``asyncio.run(main)`` on the loop :func:`loop_factory` picks."""
    try:
        factory = loop_factory(loop)
    except EventLoopConfigError:
        main.close()  # never awaited: no "coroutine was never awaited" warning on top
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
