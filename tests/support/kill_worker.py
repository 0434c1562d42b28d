"""Propagation worker processes for the SIGKILL test (tests/test_worker.py).

``python -m tests.support.kill_worker <home>`` starts a *zygote*: it imports everything once (the
imports take seconds, a kill loop of 20+ restarts would spend minutes on them), prints
``zygote-ready`` and then obeys stdin commands:

- ``spawn forever`` / ``spawn until-empty``: fork a worker process; it opens the ml-100k store
  under ``<home>`` (its own Chroma client and event log, opened after the fork), prints
  ``ready <pid>`` and drains jobs (forever, or until no job is left, then exits 0);
- ``reap <pid>``: wait for that worker and print ``reaped <pid> <exit status>``.

The test SIGKILLs the worker by its pid. ``MEMREC_TEST_WRITE_SLEEP_S`` (read only here) sleeps
before every memory write, so kills land between the writes of one propagation.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import nodes.apply_patches as apply_patches
from memory_store.job_runner import busy_jobs
from memory_store.workspace import workspace_for
from schemas.context import MemRecContext
from services.worker import PropagationWorker

_real_apply_writes = apply_patches.apply_writes


def _slow_apply_writes(*args: Any, **kwargs: Any) -> Any:
    # a propagation writes in two batches (item memories, user memories): sleep before each
    store, log = args[0], args[1]
    slow = _SlowStore(store)
    return _real_apply_writes(slow, log, *args[2:], **kwargs)


class _SlowStore:
    """Sleeps before every store write, so kills land between the writes of one propagation."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put_many(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(float(os.environ.get("MEMREC_TEST_WRITE_SLEEP_S", "0")))
        return self.inner.put_many(*args, **kwargs)

    def put(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(float(os.environ.get("MEMREC_TEST_WRITE_SLEEP_S", "0")))
        return self.inner.put(*args, **kwargs)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def work(home: str, mode: str) -> int:
    """One worker process's life: open the store, drain."""
    apply_patches.apply_writes = _slow_apply_writes
    ctx = MemRecContext(dataset="ml-100k", home=home, lmmem="offline", llmrec="offline")
    ws = workspace_for(ctx)
    worker = PropagationWorker(ws, ctx, lease_s=0.5, max_attempts=1000, poll_s=0.05)
    await worker.reclaim()
    _say(f"ready {os.getpid()}")
    while True:
        await worker.drain()
        if mode == "until-empty" and busy_jobs(ws.events) == 0:
            return 0
        await asyncio.sleep(0.1)
        await worker.reclaim()


def zygote(home: str) -> None:
    """Fork workers on command (see the module docstring)."""
    _say("zygote-ready")
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "spawn":
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = asyncio.run(work(home, arg))
                finally:
                    sys.stdout.flush()
                    os._exit(code)
        elif cmd == "reap":
            _, status = os.waitpid(int(arg), 0)
            _say(f"reaped {arg} {status}")
        elif cmd == "quit":
            return


if __name__ == "__main__":
    zygote(sys.argv[1])
