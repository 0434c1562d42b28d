"""Propagate one recorded event through the propagate graph, as the workers do, from a test."""

from __future__ import annotations

from typing import Any

from graph.propagate import build_propagate_graph
from graph.propagate import graph as propagate_graph
from memory_store.workspace import Workspace, workspace_for
from schemas.context import MemRecContext
from schemas.propagate_state import PropagationReport
from schemas.records import InteractionEvent
from schemas.roles import LMMem


async def propagate(
    ws: Workspace, ctx: MemRecContext, event: InteractionEvent, *, lmmem: LMMem | None = None
) -> PropagationReport:
    """Run the propagate graph on ``event`` (compiled with ``lmmem`` instead of ctx's role)."""
    assert workspace_for(ctx) is ws, "register ws for ctx: the graph resolves ctx to its workspace"
    graph: Any = propagate_graph if lmmem is None else build_propagate_graph(lmmem).compile()
    out = await graph.ainvoke({"event": event}, context=ctx)
    report: PropagationReport = out["report"]
    return report
