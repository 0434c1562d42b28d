"""Pause points inside a subgraph: stop before a node named in the run context's ``pause_before``.

LangGraph's run-level ``interrupt_before`` applies to the graph a run starts, not to the nodes of
its subgraphs. The chat graph wraps the nodes of its recommend subgraph with :func:`pausable`, so
``pause_before=["rank"]`` (an assistant's context in Studio) stops a chat turn inside the
subgraph with the curated neighbours and facets in its state; edit them
(``threads.update_state`` with the subgraph's checkpoint config) and resume with
``Command(resume=...)``: the node runs on the edited state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from schemas.context import MemRecContext

Node = Callable[[Any, Runtime[MemRecContext]], Awaitable[dict[str, Any]]]


def pausable(name: str, node: Node) -> Node:
    """``node``, first pausing the run when ``name`` is in the context's ``pause_before``."""

    async def run(state: Any, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
        ctx = runtime.context or MemRecContext()
        if name in (ctx.pause_before or []):
            interrupt({"paused_before": name, "resume": "edit this subgraph's state, then resume"})
        return await node(state, runtime)

    run.__name__ = getattr(node, "__name__", name)
    run.__doc__ = node.__doc__
    return run
