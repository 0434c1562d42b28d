"""Propagation of one interaction: load context -> ONE LMMem call -> versioned, audited writes.

``propagate_event`` composes the three node cores (``nodes/load_context.py``, ``nodes/reflect.py``,
``nodes/apply_patches.py``) for the worker and for tests; the propagate graph wires the same
functions as nodes. A replayed interaction whose user rewrite is already written (it is written
last) makes no model call and no write.
"""

from __future__ import annotations

import asyncio
import logging

from graph.context import MemRecContext
from memory_store.workspace import Workspace
from memory_store.writes import apply_write
from nodes.apply_patches import (
    MAX_PATCH_CHARS,
    MemoryWrite,
    PropagationReport,
    apply_propagation,
    screen_patches,
)
from nodes.load_context import LoadedContext, load_propagation_context
from nodes.reflect import reflect_once
from nodes.role_factory import build_roles
from nodes.roles import InteractionEvent, LMMem

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_PATCH_CHARS",
    "MemoryWrite",
    "PropagationReport",
    "already_propagated",
    "propagate_event",
    "screen_patches",
]


def already_propagated(ws: Workspace, event: InteractionEvent) -> bool:
    """Whether this interaction's user rewrite (its last write) is already in the store."""
    if ws.events.applied(event.interaction_id, "user", event.user_id):
        return True
    current = ws.memories.get("user", event.user_id)
    if current is None or current.source != event.interaction_id:
        return False
    # written but not audited (the process died in between): apply_write repairs the audit row
    apply_write(ws.memories, ws.events, "user", event.user_id, current.text, cause=current.source)
    ws.on_memory_write("user", event.user_id, current.text)
    return True


async def propagate_event(
    ws: Workspace,
    ctx: MemRecContext,
    event: InteractionEvent,
    *,
    lmmem: LMMem | None = None,
) -> PropagationReport:
    """Propagate one recorded interaction (idempotent: a replay changes nothing).

    Unknown user or item ids raise UnknownEntity before anything is written. With
    ``ctx.collab_write`` off nothing is propagated (the interaction stays recorded).
    """
    ws.user_code(event.user_id)
    ws.item_code(event.item_id)
    if ctx.collab_write and await asyncio.to_thread(already_propagated, ws, event):
        logger.debug("interaction %s already propagated; nothing to do", event.interaction_id)
        return PropagationReport(
            interaction_id=event.interaction_id, notes=["already propagated (replayed job)"]
        )
    loaded: LoadedContext = await asyncio.to_thread(load_propagation_context, ws, ctx, event)
    role = lmmem if lmmem is not None else build_roles(ctx, ws)[0]
    out = await reflect_once(role, loaded, ws.lock)
    return await asyncio.to_thread(apply_propagation, ws, loaded, out.value, out.usage)
