"""Hooks the graph layer registers to run on a serving process's event loop.

``aworkspace_for`` (called by every node) runs them; each must be cheap and idempotent. The graph
layer uses one to start housekeeping on the LangGraph server's loop (``graph/server_hygiene.py``).
"""

from __future__ import annotations

from collections.abc import Callable

_ASYNC_HOOKS: list[Callable[[], None]] = []


def add_async_hook(hook: Callable[[], None]) -> None:
    """Run ``hook`` whenever a node asks for its workspace on an event loop."""
    _ASYNC_HOOKS.append(hook)


def run_async_hooks() -> None:
    """Run every registered hook (from async code)."""
    for hook in _ASYNC_HOOKS:
        hook()
