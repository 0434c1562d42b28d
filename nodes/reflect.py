"""The `reflect` node of the propagate graph: the ONE LMMem call of a propagation.

Self-reflection rewrite of the user memory, the item memory update and the neighbour patches come
back from a single ``LMMem.propagate`` call, whatever the user's degree. The answer is kept with
the interaction's job (``memory_store/claims.keep_answer``): a retried job reuses it, no second
call. Its usage (the model, or the offline role after a failure, and why) is kept in the event log
under the interaction id, the cause of the writes that follow (``memory_store/call_log.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

from langgraph.runtime import Runtime

from memory_store.claims import keep_answer
from memory_store.job_runner import acquire_model_slot, release_model_slot
from memory_store.workspace import Workspace, aworkspace_for
from roles.factory import build_roles
from roles.offline_roles import OfflineLMMem
from schemas.context import MemRecContext
from schemas.propagate_state import LoadedContext, PropagateState
from schemas.records import CallUsage, PropagationResult, RoleOutput
from schemas.roles import LMMem


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
    if loaded.stored_answer is not None:  # an earlier attempt of this job asked already
        return RoleOutput(value=loaded.stored_answer, usage=CallUsage())
    if graph_lock is not None and isinstance(lmmem, OfflineLMMem):
        with graph_lock:
            return await lmmem.propagate(loaded.inp)
    await acquire_model_slot()  # one of the runner's in-flight model places, if run by one
    try:
        return await lmmem.propagate(loaded.inp)
    finally:
        release_model_slot()  # the call is over: what is left (keeping, writing) needs no place


def _keep(ws: Workspace, loaded: LoadedContext, value: PropagationResult) -> PropagationResult:
    """Keep the answer with the job; an answer another attempt kept first wins."""
    kept = keep_answer(
        ws.events, loaded.owner, loaded.event.interaction_id, {"result": value.model_dump()}
    )
    return PropagationResult.model_validate(kept["result"])


def make_reflect(lmmem: LMMem | None = None) -> Callable[..., Awaitable[dict[str, Any]]]:
    """The `reflect` node; with ``lmmem`` it calls that role instead of the context's (fakes)."""

    async def reflect(state: PropagateState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
        """LangGraph adapter: run the call with the context's LMMem."""
        ctx = runtime.context or MemRecContext()
        ws = await aworkspace_for(ctx)
        role = lmmem if lmmem is not None else build_roles(ctx, ws)[0]
        loaded: LoadedContext = state["loaded"]
        out = await reflect_once(role, loaded, ws.lock)
        if loaded.skip_reason or loaded.stored_answer is not None:
            return {"result": out.value, "usage": out.usage}
        # kept: who wrote the memories this interaction causes
        await asyncio.to_thread(
            ws.events.record_call, loaded.event.interaction_id, "propagate", out.usage
        )
        value = await asyncio.to_thread(_keep, ws, loaded, out.value)
        return {"result": value, "usage": out.usage}

    return reflect
