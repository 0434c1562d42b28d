"""The `forget` node: run a privacy action in the process that owns the store's writes.

On a LangGraph server that holds an embedded store's writer lock, a deletion from the command line
cannot take the lock; ``memrec privacy delete-user --server URL`` runs this graph there instead.
The work is ``memory_store/deletion.delete_user`` (or an opt-out), in a thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from memory_store.deletion import delete_user
from memory_store.privacy_log import record_choice
from memory_store.workspace import Workspace, aworkspace_for
from schemas.context import MemRecContext
from schemas.privacy_state import PrivacyState


def set_opt_out(ws: Workspace, user_id: str, opted_out: bool = True) -> None:
    """Opt a user out of (or back into) serving as a neighbour; persisted and effective now.

    Raises UnknownEntity for a user the dataset does not have. A deleted user stays excluded.
    """
    code = ws.user_code(user_id)
    ws.acquire_writer()
    record_choice(ws.events.path, user_id, opted_out=opted_out)
    with ws.lock:
        if opted_out:
            ws.opted_out.add(code)
        elif code not in ws.deleted_codes:
            ws.opted_out.discard(code)


def run_action(ws: Workspace, user_id: str, action: str) -> dict[str, Any]:
    """Apply one privacy action; the deletion report, or what was recorded."""
    if action == "delete":
        return delete_user(ws, user_id).model_dump()
    if action in ("opt-out", "opt-in"):
        set_opt_out(ws, user_id, action == "opt-out")
        return {"recorded": action}
    raise ValueError(f"unknown privacy action {action!r}; accepted: delete, opt-out, opt-in")


async def forget(state: PrivacyState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: the action runs in a thread (it rewrites files and compacts Chroma)."""
    ws = await aworkspace_for(runtime.context or MemRecContext())
    report = await asyncio.to_thread(run_action, ws, state["user_id"], state["action"])
    return {"report": report}
