"""The `reflect` node of the propagate graph: the ONE LMMem call of a propagation.

Self-reflection rewrite of the user memory, the item memory update and the neighbour patches come
back from a single ``LMMem.propagate`` call, whatever the user's degree.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from langgraph.runtime import Runtime

from graph.context import MemRecContext, aworkspace_for
from nodes.load_context import LoadedContext
from nodes.offline_roles import OfflineLMMem
from nodes.role_factory import build_roles
from nodes.roles import CallUsage, LMMem, PropagationResult, RoleOutput

if TYPE_CHECKING:  # the graph module imports this node; LangGraph reads the graph state
    from graph.propagate import PropagateState


async def reflect_once(
    lmmem: LMMem, loaded: LoadedContext, graph_lock: AbstractContextManager[Any] | None = None
) -> RoleOutput[PropagationResult]:
    """Exactly one propagation call (none when the context says to skip).

    The offline role reads the live interaction graph in-process, so it runs under the
    workspace's ``graph_lock`` (recording appends under it); a model call never holds it.
    """
    if loaded.skip_reason:
        empty = PropagationResult(
            user_memory=loaded.inp.user_memory, item_memory=loaded.inp.item_memory
        )
        return RoleOutput(value=empty, usage=CallUsage())
    if graph_lock is not None and isinstance(lmmem, OfflineLMMem):
        with graph_lock:
            return await lmmem.propagate(loaded.inp)
    return await lmmem.propagate(loaded.inp)


async def reflect(state: PropagateState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: run the call with the context's LMMem."""
    ctx = runtime.context or MemRecContext()
    ws = await aworkspace_for(ctx)
    lmmem, _ = build_roles(ctx, ws)
    out = await reflect_once(lmmem, state["loaded"], ws.lock)
    return {"result": out.value, "usage": out.usage}
