"""The propagation worker: the job runner with the propagate graph as its handler.

``memrec worker`` runs one as a standalone process (drain forever; a killed worker loses nothing:
its leased jobs are reclaimed), and ``memrec feedback`` / ``memrec demo`` / ``studio.seed``
drain with one in-process. It is the same runner (``memory_store/job_runner.py``) and the same
handler (``graph/background.propagation_handler``) as the in-process background propagation.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from graph.background import propagation_handler
from memory_store.job_runner import JobRunner, RunnerStats
from memory_store.workspace import Workspace, is_open, workspace_for
from schemas.context import MemRecContext
from schemas.propagate_state import PropagationReport
from schemas.records import InteractionEvent


class WorkerStats(RunnerStats):
    """What a worker has done since it was created (the runner's counts plus model calls)."""

    model_calls: int = Field(default=0, description="LMMem calls made")


class PropagationWorker(JobRunner):
    """Claims and propagates the jobs of one workspace; ``drain`` once or ``start`` a loop.

    ``ws`` must be the workspace the graphs resolve ``ctx`` to (``workspace_for(ctx)``): the
    propagate graph writes there, so the worker and its graph always share one store.
    """

    def __init__(
        self, ws: Workspace, ctx: MemRecContext, owner: str | None = None, **options: Any
    ) -> None:
        opened = is_open(ctx.dataset, home=ctx.home, chroma_url=ctx.chroma_url)
        if not opened or workspace_for(ctx) is not ws:
            raise ValueError(
                "PropagationWorker: ws is not the workspace the context resolves to; open it "
                "with memory_store.workspace.workspace_for(ctx) (or register it for that context)"
            )
        self.ws = ws
        self.ctx = ctx
        self.stats: WorkerStats = WorkerStats()
        propagate = propagation_handler(ctx)

        async def handle(event: InteractionEvent, owner: str) -> PropagationReport:
            report: PropagationReport = await propagate(event, owner)
            self.stats.model_calls += report.usage.calls
            return report

        super().__init__(ws.events, handle, owner, stats=self.stats, **options)

    @property
    def reports(self) -> list[PropagationReport]:
        """The latest propagation reports (at most 100), oldest first."""
        return list(self.results)
