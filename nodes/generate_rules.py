"""The `generate_rules` node: LMMem writes a rule set from the domain statistics, validated."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from memory_store.workspace import aworkspace_for
from roles.factory import build_roles
from roles.notices import fallback_notices
from schemas.context import MemRecContext
from schemas.rules_state import RulesState


async def generate_rules(state: RulesState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """Ask LMMem for a rule set (the LLM role validates it and falls back offline if invalid)."""
    ctx = runtime.context or MemRecContext()
    lmmem, _ = build_roles(ctx, await aworkspace_for(ctx))
    out = await lmmem.generate_rules(state["stats"])
    usage = {"generate_rules": out.usage}
    return {"rules": out.value, "usage": usage, "notes": fallback_notices(usage)}
