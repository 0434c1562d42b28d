"""The `generate_rules` and `save_rules` nodes: LMMem writes a rule set, validated, then saved."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from langgraph.runtime import Runtime

from graph.context import MemRecContext, aworkspace_for
from nodes.role_factory import build_roles

if TYPE_CHECKING:
    from graph.rules import RulesState


async def generate_rules(state: RulesState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """Ask LMMem for a rule set (the LLM role validates it and falls back offline if invalid)."""
    ctx = runtime.context or MemRecContext()
    lmmem, _ = build_roles(ctx, await aworkspace_for(ctx))
    out = await lmmem.generate_rules(state["stats"])
    return {"rules": out.value, "usage": {"generate_rules": out.usage}}


async def save_rules(state: RulesState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """Persist the validated rule set as the dataset's generated rules."""
    ctx = runtime.context or MemRecContext()
    ws = await aworkspace_for(ctx)
    path = await asyncio.to_thread(ws.save_rules, state["rules"], "generated")
    return {"path": str(path)}
