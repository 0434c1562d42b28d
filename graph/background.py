"""Background propagation: where a recorded interaction's propagate graph runs, never awaited.

The builders hand :func:`schedule_propagation` to the nodes that record (`record`, the chat's
`feedback`); the jobs are already durable in the event log when it is called.

- Library / CLI: wake the workspace's shared in-process job runner (``memory_store/job_runner``),
  whose handler runs the propagate graph (:func:`propagation_handler`); it runs in the background
  of the current event loop.
- LangGraph server (``langgraph dev`` / ``langgraph up``: the ``langgraph_api`` package is loaded
  in-process, or ``LANGGRAPH_API_URL`` is set): one background run of the ``propagate`` graph per
  interaction, not awaited. Inside the server it goes through the SDK's in-process transport as
  the server's own identity (:func:`schemas.tenancy.as_internal_service`), which the auth lets
  start propagate runs and nothing else, so it works with tokens on and no user can forge it.
  From another process it goes to ``LANGGRAPH_API_URL`` with the SDK's key
  (``LANGGRAPH_API_KEY``: an admin token). The run claims its job itself
  (``memory_store/claims.py``), so a ``memrec worker`` draining the same queue, or the server
  replaying the run after a restart, never propagates it twice. A sweeper (the in-process runner
  with ``min_age_s``) picks up jobs whose run never started. If starting the runs fails, the
  in-process runner takes the jobs instead.

``MEMREC_PROPAGATION`` = ``auto`` (default), ``worker`` or ``server`` forces one path;
``external`` only records (the jobs are durable): ``memrec worker`` processes
(``services/worker.py``, the same handler) drain them, as in the scaled deployment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any, Literal

import httpx

from dataio.paths import store_dir
from graph.propagate import graph as propagate_graph
from memory_store.events import EventLog
from memory_store.job_runner import (
    Handler,
    JobRunner,
    shared_runner,
    stop_shared_runners,
    wake_shared_runner,
)
from memory_store.workspace import INDEX_MARKER, Workspace, workspace_for
from schemas.context import MemRecContext
from schemas.propagate_state import PropagationReport
from schemas.records import InteractionEvent
from schemas.tenancy import as_internal_service

logger = logging.getLogger(__name__)

MODE_ENV = "MEMREC_PROPAGATION"
PROPAGATE_ASSISTANT = "propagate"
Mode = Literal["worker", "server", "external"]


ORPHAN_AGE_S = 30.0  # a job still pending this long after recording lost its background run


def propagation_handler(ctx: MemRecContext, graph: Any = None) -> Handler:
    """A job handler that runs the propagate graph (default: the compiled one) under a claim."""
    runnable: Any = graph if graph is not None else propagate_graph

    async def propagate(event: InteractionEvent, owner: str) -> PropagationReport:
        out = await runnable.ainvoke({"event": event, "lease_owner": owner}, context=ctx)
        report: PropagationReport = out["report"]
        return report

    return propagate


def shared_worker(ws: Workspace, ctx: MemRecContext) -> JobRunner:
    """The in-process runner of a workspace, propagating with the latest context."""
    return shared_runner(ws, propagation_handler(ctx))


def wake_shared_worker(ws: Workspace, ctx: MemRecContext) -> JobRunner:
    """Start (or wake) the shared runner in the running loop; never waits for propagation."""
    return wake_shared_runner(ws, propagation_handler(ctx))


async def stop_shared_workers(timeout_s: float = 30.0) -> None:
    """Stop every shared runner running in this loop (tests, process shutdown)."""
    await stop_shared_runners(timeout_s)


def on_langgraph_server() -> bool:
    """Whether this process serves graphs for the LangGraph API server."""
    return bool(os.environ.get("LANGGRAPH_API_URL")) or "langgraph_api" in sys.modules


def propagation_mode() -> Mode:
    """Where propagation runs from here (see the module docstring)."""
    forced = (os.environ.get(MODE_ENV) or "auto").strip().lower()
    if forced not in ("auto", "worker", "server", "external"):
        raise ValueError(
            f"{MODE_ENV}={forced!r}: accepted values are auto, worker, server, external"
        )
    if forced != "auto":
        return forced  # type: ignore[return-value]
    return "server" if on_langgraph_server() else "worker"


def in_server_process() -> bool:
    """Whether this process is the LangGraph API server itself."""
    return "langgraph_api" in sys.modules


def _server_client() -> Any:
    """The SDK client: in-process transport inside the server, else ``LANGGRAPH_API_URL``."""
    from langgraph_sdk import get_client

    if in_server_process():
        return get_client(url=None)
    return get_client(url=os.environ.get("LANGGRAPH_API_URL") or None)


async def start_server_runs(ctx: MemRecContext, events: list[InteractionEvent]) -> list[str]:
    """One background ``propagate`` run per interaction (created, not awaited); run ids."""
    client = _server_client()
    context = {k: v for k, v in dataclasses.asdict(ctx).items() if v is not None}
    run_ids = []
    for event in events:
        call = client.runs.create(
            None,
            PROPAGATE_ASSISTANT,
            input={"interaction_id": event.interaction_id},
            context=context,
        )
        if in_server_process():
            run = await as_internal_service(call)
        else:
            run = await call
        run_ids.append(str(run.get("run_id", "")) if isinstance(run, dict) else str(run))
    return run_ids


def _start_sweeper(ctx: MemRecContext) -> None:
    """Run the in-process runner on orphaned jobs only (pending > ``ORPHAN_AGE_S``)."""
    runner = shared_worker(workspace_for(ctx), ctx)
    runner.min_age_s = ORPHAN_AGE_S
    runner.poll_s = max(runner.poll_s, 5.0)
    runner.start()


async def recover_jobs(ctx: MemRecContext | None = None) -> int:
    """At server start: sweep the jobs a killed server left running or pending; how many.

    Without it they wait for the next feedback to start the sweeper, and a server restarted into
    a quiet hour keeps them for good. Only the server's default store (``MEMREC_DATASET`` /
    ``MEMREC_HOME``) with an event log file of its own; another store's jobs are swept from its
    next feedback on. The log is read in a thread, and the store opened only if there are jobs.
    """

    def busy_jobs(events_path: Path) -> int:
        with EventLog(events_path, readonly=True) as log:
            return log.busy_jobs()

    try:
        ctx = ctx or MemRecContext()
        if propagation_mode() != "server":
            return 0
        store = store_dir(ctx.dataset, ctx.home)
        events_path = store / "events.sqlite"
        if not (store / INDEX_MARKER).exists() or not events_path.exists():
            return 0
        busy = await asyncio.to_thread(busy_jobs, events_path)
        if busy:
            await asyncio.to_thread(workspace_for, ctx)
    except Exception as err:  # noqa: BLE001 - best effort at start-up; doctor names the damage
        logger.warning("job recovery at start skipped: %s", err)
        return 0
    if busy:
        logger.info("%d propagation job(s) left by an earlier run: sweeping them", busy)
        _start_sweeper(ctx)
    return busy


async def schedule_propagation(ctx: MemRecContext, events: list[InteractionEvent]) -> None:
    """Hand recorded interactions to background propagation; never waits for it to finish."""
    if not events:
        return
    mode = propagation_mode()
    if mode == "external":  # durable already: a `memrec worker` process drains the queue
        return
    if mode == "server":
        try:
            await start_server_runs(ctx, events)
            _start_sweeper(ctx)
            return
        except (httpx.HTTPError, OSError, RuntimeError, ValueError, ImportError) as err:
            logger.warning(
                "could not start background propagate runs on the LangGraph server (%s); "
                "the in-process worker takes the %d job(s)",
                err,
                len(events),
            )
    runner = shared_worker(workspace_for(ctx), ctx)
    runner.min_age_s = 0.0  # this runner is the executor now, not a sweeper
    runner.start()
    runner.wake()
