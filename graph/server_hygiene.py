"""Housekeeping for the LangGraph dev server's in-memory runtime, started on its event loop.

Every stateless run (``runs.wait(None, ...)``, the background ``propagate`` runs) gets a temporary
thread that the runtime deletes afterwards, but ``langgraph-runtime-inmem`` deletes only the
thread's checkpoints and pending writes, not its channel values (langchain-ai/langgraph #8054):
they pile up in memory (and in ``.langgraph_api``) for ever. A task on the server's loop drops,
every ``MEMREC_CHECKPOINT_SWEEP_S`` seconds (default 30; 0 disables), the channel values and
writes of threads that have no checkpoint left. It runs on the loop, between the runtime's own
(synchronous) updates of those dicts, so it never sees one half done.
"""

from __future__ import annotations

import asyncio
import logging
import os

from memory_store.hooks import add_async_hook
from nodes.forget_threads import inmem_saver, sweep

logger = logging.getLogger(__name__)

SWEEP_ENV = "MEMREC_CHECKPOINT_SWEEP_S"
_loops: set[int] = set()


async def _sweep_forever(every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        saver = inmem_saver()
        if saver is not None:
            dropped = sweep(saver)
            if dropped:
                logger.debug("dropped %d checkpoint entries of deleted threads", dropped)


def start_sweeper() -> None:
    """Start the sweep on the running loop, once per loop (a no-op outside `langgraph dev`)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if id(loop) in _loops or inmem_saver() is None:
        return
    _loops.add(id(loop))
    every_s = float(os.environ.get(SWEEP_ENV) or 30)
    if every_s > 0:
        task = loop.create_task(_sweep_forever(every_s), name="memrec-checkpoint-sweep")
        _TASKS.append(task)


_TASKS: list[asyncio.Task[None]] = []
add_async_hook(start_sweeper)
