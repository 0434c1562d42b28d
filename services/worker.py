"""The propagation worker: the job runner with the propagate graph as its handler.

``memrec worker`` runs one as a standalone process (drain forever; a killed worker loses nothing:
its leased jobs are reclaimed), and ``memrec feedback`` / ``memrec demo`` / ``studio.seed``
drain with one in-process. It is the same runner (``memory_store/job_runner.py``) and the same
handler (``graph/background.propagation_handler``) as the in-process background propagation.
A worker also applies the audit retention policy (``memory_store/retention.py``) once an hour.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import Field

from graph.background import propagation_handler
from memory_store.job_runner import JobRunner, RunnerStats
from memory_store.retention import RetentionPolicy, apply_retention
from memory_store.workspace import Workspace, is_open, workspace_for
from schemas.context import MemRecContext
from schemas.propagate_state import PropagationReport
from schemas.records import InteractionEvent

RETENTION_EVERY_S = 3600.0  # how often a worker applies the audit retention policy


class WorkerStats(RunnerStats):
    """What a worker has done since it was created (the runner's counts plus model calls)."""

    model_calls: int = Field(default=0, description="LMMem calls made")
    audit_rows_pruned: int = Field(default=0, description="audit texts pruned by retention")


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
        self.retention = RetentionPolicy.from_env()
        self._retained_at: float | None = None
        propagate = propagation_handler(ctx)

        async def handle(event: InteractionEvent, owner: str) -> PropagationReport:
            report: PropagationReport = await propagate(event, owner)
            self.stats.model_calls += report.usage.calls
            await self._apply_retention()
            return report

        super().__init__(ws.events, handle, owner, stats=self.stats, **options)

    async def _apply_retention(self) -> None:
        """The audit retention policy, at most once per ``RETENTION_EVERY_S`` (in a thread)."""
        now = time.monotonic()
        if self._retained_at is not None and now - self._retained_at < RETENTION_EVERY_S:
            return
        self._retained_at = now
        pruned = await asyncio.to_thread(apply_retention, self.ws.events, self.retention)
        self.stats.audit_rows_pruned += pruned

    @property
    def reports(self) -> list[PropagationReport]:
        """The latest propagation reports (at most 100), oldest first."""
        return list(self.results)
