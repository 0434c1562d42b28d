"""A generic runner of the event log's jobs: claim under a lease, run a handler, settle (asyncio).

A job is claimed under a lease and handed to the runner's handler (an async callable of the
:class:`InteractionEvent` and the lease owner, injected by whoever builds the runner:
``graph/background.py`` hands it "run the propagate graph under this claim"); then it is
completed. Up to ``in_flight`` jobs run at once (claimed together, one transaction), so a worker
waiting on a model keeps several calls in flight. A job whose handler calls
:func:`release_model_slot` (the propagate graph does, once its model call is over and only its
writes are left) hands its slot to the next job while it writes: ``in_flight`` then bounds the
model calls, and up to ``in_flight`` more jobs may be writing behind them, so the writes of jobs
that finish close together share one store commit (``memory_store/group_commit.py``) instead of
holding the model slots while they queue for it. An error sends it back with a jittered
exponential backoff, and after ``max_attempts`` it is parked as failed (``memrec jobs --status
failed``), its interaction kept. A permanent error (unknown ids, an interaction that vanished)
parks it at once. On start the runner returns jobs whose lease lapsed (their process was killed)
to the queue, so nothing is lost; the handler being idempotent per interaction, re-running a
half-done job finishes it without applying anything twice.

``shared_runner(ws, handler)`` is the one in-process runner per workspace; it is kept on the
workspace (``Workspace.derived``), so it lives and dies with it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel, Field

from memory_store.events import EventLog
from memory_store.workspace import UnknownEntity, Workspace
from memory_store.writes import UnknownMemory
from schemas.records import InteractionEvent

logger = logging.getLogger(__name__)

# (event, lease owner): the handler runs the job under the runner's claim
Handler = Callable[[InteractionEvent, str], Awaitable[Any]]
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (UnknownEntity, UnknownMemory, LookupError)
RESULTS_KEPT = 100
_SHARED_KEY = "job-runner"
_ALL_SHARED: weakref.WeakSet[JobRunner] = weakref.WeakSet()


# The slot of the job whose handler runs in this context (set by the runner per job task).
_MODEL_SLOT: ContextVar[_Slot | None] = ContextVar("memrec_model_slot", default=None)


class _Slot:
    """A job's model slot: taken for its model call, released once (after it, or at the end).

    ``gate`` bounds the model calls of a runner: a job holds one of its ``in_flight`` places
    from :func:`acquire_model_slot` (just before the call) to the release.
    """

    __slots__ = ("released", "_freed", "_gate", "_held")

    def __init__(self, freed: asyncio.Event, gate: asyncio.Semaphore | None = None) -> None:
        self.released = False
        self._freed = freed
        self._gate = gate
        self._held = False

    async def acquire(self) -> None:
        # also after a release: a second model call of the job (a node run again) is bounded too
        if self._gate is not None and not self._held:
            await self._gate.acquire()
            self._held = True

    def release(self) -> None:
        if self._held and self._gate is not None:
            self._held = False
            self._gate.release()
        if not self.released:
            self.released = True
            self._freed.set()


async def acquire_model_slot() -> None:
    """Wait for one of the runner's ``in_flight`` model places before this job's model call.

    A job prepares (claim, context) before it waits here, so a model place never waits for
    them; a job run outside a runner, or that makes no model call, never waits.
    """
    slot = _MODEL_SLOT.get()
    if slot is not None:
        await slot.acquire()


def release_model_slot() -> None:
    """Tell the runner of this job (if any) that its model call is over: only writes are left.

    Called on the event loop thread. The runner may then start another job's model call while
    this one writes (see the module docstring); a job run outside a runner is unaffected.
    """
    slot = _MODEL_SLOT.get()
    if slot is not None:
        slot.release()


class RunnerStats(BaseModel):
    """What a runner has done since it was created."""

    claimed: int = Field(default=0, description="jobs claimed")
    done: int = Field(default=0, description="jobs completed")
    retried: int = Field(default=0, description="failed attempts sent back with a backoff")
    parked: int = Field(default=0, description="jobs parked as failed")
    reclaimed: int = Field(default=0, description="jobs of dead workers returned to the queue")
    last_error: str | None = Field(default=None, description="the last error seen")


def default_owner() -> str:
    """A runner identity unique across processes: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobRunner:
    """Claims the jobs of one event log and runs ``handler`` on each; ``drain`` or ``start``."""

    def __init__(
        self,
        events: EventLog,
        handler: Handler,
        owner: str | None = None,
        *,
        lease_s: float = 60.0,
        max_attempts: int = 5,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
        poll_s: float = 0.5,
        stats: RunnerStats | None = None,
        in_flight: int = 1,
        min_age_s: float = 0.0,
    ) -> None:
        if lease_s <= 0 or poll_s <= 0 or max_attempts < 1 or in_flight < 1:
            raise ValueError(
                f"{type(self).__name__}: lease_s and poll_s must be > 0, max_attempts and "
                f"in_flight >= 1; got lease_s={lease_s}, poll_s={poll_s}, "
                f"max_attempts={max_attempts}, in_flight={in_flight}"
            )
        self.events = events
        self.handler = handler
        self.owner = owner or default_owner()
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_s = poll_s
        self.in_flight = in_flight
        self.min_age_s = min_age_s  # > 0: leave younger jobs to the executor they were given to
        self.stats = stats if stats is not None else RunnerStats()
        self.results: list[Any] = []  # the handler's latest results, for callers and tests
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False

    # ----------------------------------------------------------------------------- one job

    async def _claim(self, n: int) -> list[InteractionEvent]:
        events = await asyncio.to_thread(
            self.events.claim_jobs, self.owner, n, self.lease_s, min_age_s=self.min_age_s
        )
        self.stats.claimed += len(events)
        return events

    async def run_one(self) -> bool:
        """Claim one due job and run it; False when no job is due."""
        events = await self._claim(1)
        if not events:
            return False
        await self._run(events[0])
        return True

    async def _run(self, event: InteractionEvent, slot: _Slot | None = None) -> None:
        if slot is not None:
            _MODEL_SLOT.set(slot)  # this task's own context: the handler's nodes inherit it
        try:
            await self._run_job(event)
        finally:
            if slot is not None:
                slot.release()

    async def _run_job(self, event: InteractionEvent) -> None:
        iid = event.interaction_id
        try:
            result = await self.handler(event, self.owner)
        except PERMANENT_ERRORS as err:
            await self._fail(iid, f"{type(err).__name__}: {err}", permanent=True)
            return
        except Exception as err:  # noqa: BLE001 - a runner outlives any one job; the error is kept
            logger.warning("job %s failed: %s", iid, err, exc_info=True)
            await self._fail(iid, f"{type(err).__name__}: {err}", permanent=False)
            return
        self.results = [*self.results[-(RESULTS_KEPT - 1) :], result]
        if await asyncio.to_thread(self.events.complete_job, iid, self.owner):
            self.stats.done += 1

    async def _fail(self, iid: str, error: str, *, permanent: bool) -> None:
        self.stats.last_error = error
        job = await asyncio.to_thread(
            self.events.fail_job,
            iid,
            self.owner,
            error,
            max_attempts=1 if permanent else self.max_attempts,
            base_backoff_s=self.base_backoff_s,
            max_backoff_s=self.max_backoff_s,
        )
        if job is not None and job.status == "failed":
            self.stats.parked += 1
        elif job is not None:
            self.stats.retried += 1

    # ----------------------------------------------------------------------------- draining

    async def reclaim(self) -> int:
        """Return jobs whose lease lapsed (dead runners) to the queue; returns how many."""
        n = await asyncio.to_thread(self.events.reclaim_expired, max_attempts=self.max_attempts)
        if n:
            logger.info("runner %s: %d job(s) of dead runners back in the queue", self.owner, n)
        self.stats.reclaimed += n
        return n

    async def drain(self, max_jobs: int | None = None) -> int:
        """Run due jobs, ``in_flight`` at a time, until none is due (or ``max_jobs`` were claimed).

        While some jobs run, new ones are claimed into the free slots when the runner is woken,
        a slot is released (a job's model call is over, see :func:`release_model_slot`) or every
        ``poll_s``. At most ``in_flight`` jobs are in their model call
        (:func:`acquire_model_slot`), ``2 * in_flight`` before its end (so up to ``in_flight``
        prepare while the others wait on the model) and ``3 * in_flight`` run at all (the rest
        write). Returns how many ran.
        """
        started = 0
        running: dict[asyncio.Task[None], _Slot] = {}
        freed = asyncio.Event()
        gate = asyncio.Semaphore(self.in_flight)
        try:
            while True:
                freed.clear()  # a release from here on wakes the wait below
                holding = sum(not slot.released for slot in running.values())
                room = min(2 * self.in_flight - holding, 3 * self.in_flight - len(running))
                if max_jobs is not None:
                    room = min(room, max_jobs - started)
                claimed = await self._claim(room) if room > 0 and not self._stopping else []
                started += len(claimed)
                for event in claimed:
                    slot = _Slot(freed, gate)
                    running[asyncio.create_task(self._run(event, slot))] = slot
                if not running:
                    return started
                await self._wait_for_room(set(running), freed, can_claim=room > len(claimed))
                running = {task: slot for task, slot in running.items() if not task.done()}
        finally:
            if running:  # cancelled: the jobs in flight finish (or their leases lapse)
                await asyncio.gather(*running, return_exceptions=True)

    async def _wait_for_room(
        self, running: set[asyncio.Task[None]], freed: asyncio.Event, *, can_claim: bool
    ) -> None:
        """Until a job finishes or releases its slot, or (free slots) a wake-up or ``poll_s``."""
        waiters: set[asyncio.Future[Any]] = set(running)
        released = asyncio.ensure_future(freed.wait())
        waiters.add(released)
        wake = None
        if can_claim and self._wake is not None:
            wake = asyncio.ensure_future(self._wake.wait())
            waiters.add(wake)
        await asyncio.wait(
            waiters,
            timeout=self.poll_s if can_claim else None,
            return_when=asyncio.FIRST_COMPLETED,
        )
        released.cancel()
        if wake is not None:
            if wake.done() and self._wake is not None:
                self._wake.clear()
            wake.cancel()

    # ----------------------------------------------------------------------------- background

    @property
    def running(self) -> bool:
        """Whether the background loop is alive (in a loop that still runs)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the background loop in the running event loop (no-op when already running)."""
        loop = asyncio.get_running_loop()
        if self.running and self._task is not None and self._task.get_loop() is loop:
            self.wake()
            return
        self._stopping = False
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._loop(), name=f"job-runner:{self.owner}")

    def wake(self) -> None:
        """Tell the loop new jobs are there (it also polls every ``poll_s``)."""
        if self._wake is not None:
            self._wake.set()

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Let the job in flight finish, then end the loop (cancel it after ``timeout_s``)."""
        task = self._task
        if task is None:
            return
        self._stopping = True
        self.wake()
        if task.get_loop() is asyncio.get_running_loop():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout_s)
            except TimeoutError:
                task.cancel()
        self._task = None

    async def wait_idle(self, timeout_s: float = 30.0, interval_s: float = 0.02) -> bool:
        """Wait until no job is pending-and-due or running; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not await asyncio.to_thread(self.events.busy_jobs):
                return True
            await asyncio.sleep(interval_s)
        return False

    async def _loop(self) -> None:
        assert self._wake is not None
        await self.reclaim()
        last_reclaim = time.monotonic()
        while not self._stopping:
            await self.drain()
            if time.monotonic() - last_reclaim > self.lease_s:
                await self.reclaim()
                last_reclaim = time.monotonic()
            if self._stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                pass
            self._wake.clear()


def busy_jobs(events: EventLog) -> int:
    """Jobs still to do now: running, or pending and already due."""
    return events.busy_jobs()


def shared_runner(ws: Workspace, handler: Handler) -> JobRunner:
    """The in-process runner of a workspace (created once; runs the latest ``handler``)."""
    with ws.lock:
        runner = ws.derived.get(_SHARED_KEY)
        if runner is None:
            runner = ws.derived[_SHARED_KEY] = JobRunner(ws.events, handler)
            _ALL_SHARED.add(runner)
        else:
            runner.handler = handler
    assert isinstance(runner, JobRunner)
    return runner


def wake_shared_runner(ws: Workspace, handler: Handler) -> JobRunner:
    """Start (or wake) the shared runner in the running loop; never waits for its jobs."""
    runner = shared_runner(ws, handler)
    runner.start()
    runner.wake()
    return runner


async def stop_shared_runners(timeout_s: float = 30.0) -> None:
    """Stop every shared runner running in this loop (tests, process shutdown)."""
    for runner in list(_ALL_SHARED):
        await runner.stop(timeout_s)
