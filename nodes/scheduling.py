"""Scheduling propagation without waiting for it; the jobs are already durable in the event log.

- Library / CLI: wake the shared in-process worker of the workspace (started if needed); it runs
  in the background of the current event loop.
- LangGraph server (``langgraph dev`` / ``langgraph up``: the ``langgraph_api`` package is loaded
  in-process, or ``LANGGRAPH_API_URL`` is set): one background run of the ``propagate`` graph per
  interaction through the SDK's in-process client, not awaited. If that fails, the in-process
  worker takes the jobs instead.

``MEMREC_PROPAGATION`` = ``auto`` (default), ``worker`` or ``server`` forces one path.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Any, Literal

import httpx

from graph.context import MemRecContext, workspace_for
from nodes.roles import InteractionEvent

logger = logging.getLogger(__name__)

MODE_ENV = "MEMREC_PROPAGATION"
PROPAGATE_ASSISTANT = "propagate"
Mode = Literal["worker", "server"]


def on_langgraph_server() -> bool:
    """Whether this process serves graphs for the LangGraph API server."""
    return bool(os.environ.get("LANGGRAPH_API_URL")) or "langgraph_api" in sys.modules


def propagation_mode() -> Mode:
    """Where propagation runs from here (see the module docstring)."""
    forced = (os.environ.get(MODE_ENV) or "auto").strip().lower()
    if forced not in ("auto", "worker", "server"):
        raise ValueError(f"{MODE_ENV}={forced!r}: accepted values are auto, worker, server")
    if forced != "auto":
        return forced  # type: ignore[return-value]
    return "server" if on_langgraph_server() else "worker"


def _server_client() -> Any:
    """The LangGraph SDK client of the server this process runs in (in-process transport)."""
    from langgraph_sdk import get_client

    return get_client(url=os.environ.get("LANGGRAPH_API_URL") or None)


async def start_server_runs(ctx: MemRecContext, events: list[InteractionEvent]) -> list[str]:
    """One background ``propagate`` run per interaction (created, not awaited); run ids."""
    client = _server_client()
    context = {k: v for k, v in dataclasses.asdict(ctx).items() if v is not None}
    run_ids = []
    for event in events:
        run = await client.runs.create(
            None,
            PROPAGATE_ASSISTANT,
            input={"interaction_id": event.interaction_id},
            context=context,
        )
        run_ids.append(str(run.get("run_id", "")) if isinstance(run, dict) else str(run))
    return run_ids


async def schedule_propagation(ctx: MemRecContext, events: list[InteractionEvent]) -> None:
    """Hand recorded interactions to background propagation; never waits for it to finish."""
    if not events:
        return
    if propagation_mode() == "server":
        try:
            await start_server_runs(ctx, events)
            return
        except (httpx.HTTPError, OSError, RuntimeError, ValueError, ImportError) as err:
            logger.warning(
                "could not start background propagate runs on the LangGraph server (%s); "
                "the in-process worker takes the %d job(s)",
                err,
                len(events),
            )
    from memory_store.worker import wake_shared_worker

    wake_shared_worker(workspace_for(ctx), ctx)
