"""The `save_rules` node: persist the validated rule set as the dataset's generated rules."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from memory_store.workspace import aworkspace_for
from schemas.context import MemRecContext
from schemas.rules_state import RulesState


async def save_rules(state: RulesState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """Save the rule set in the store; later requests curate with it."""
    ctx = runtime.context or MemRecContext()
    ws = await aworkspace_for(ctx)
    path = await asyncio.to_thread(ws.save_rules, state["rules"], "generated")
    return {"path": str(path)}
