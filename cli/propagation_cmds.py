"""`memrec feedback`, `memrec jobs`, `memrec memory show|history|rollback`, `memrec worker`.

The write path from the command line: record an interaction durably, run (or queue) its
propagation, look at the job queue, read and restore memory versions, and run a worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from cli.options import DATASET, HOME, ITEM, USER, model_options, user_errors
from roles.notices import fallback_notice
from schemas.context import MemRecContext
from services.event_loop import run as run_async

if TYPE_CHECKING:
    from memory_store.memories import MemoryKind, MemoryRecord
    from memory_store.workspace import Workspace

# The job statuses of memory_store/jobs.py (tests/test_cli.py checks they agree), written out so
# `--help` does not import the store.
JOB_STATUSES = ("pending", "running", "done", "failed")

logger = logging.getLogger(__name__)
console = Console(width=140)
T = TypeVar("T")


LMMemOpt = typer.Option(None, "--lmmem", help="LMMem model spec (default: the preset's)")


def _open(dataset: str, home: str | None, *, readonly: bool = True) -> Workspace:
    """The store, opened on its own; read-only commands never take a write lock."""
    from memory_store.workspace import open_workspace

    ws = open_workspace(dataset, home=home, readonly=readonly)
    if not readonly:
        ws.acquire_writer()  # a second writer is refused now, before anything is printed
    return ws


def _open_for(ctx: MemRecContext) -> Workspace:
    """The store a command writes and propagates in: the one the graphs resolve ``ctx`` to."""
    from memory_store.workspace import workspace_for

    ws = workspace_for(ctx)
    ws.acquire_writer()
    return ws


def _context(dataset: str, home: str | None, lmmem: str | None) -> MemRecContext:
    return MemRecContext(dataset=dataset, home=home, lmmem=lmmem)


def _target(user: str | None, item: str | None) -> tuple[MemoryKind, str]:
    if (user is None) == (item is None):
        raise ValueError("give exactly one of --user ID or --item ID")
    return ("user", user) if user is not None else ("item", str(item))


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _short(text: str | None, n: int = 160) -> str:
    if text is None:
        return "-"
    return text if len(text) <= n else text[: n - 1] + "\u2026"


# --------------------------------------------------------------------------------- feedback


@model_options
def feedback(
    user: str = typer.Option(..., "--user", help="the user who interacted"),
    item: str = typer.Option(..., "--item", help="the item"),
    kind: str = typer.Option("positive", "--kind", help="positive, negative, click, rating:<n>"),
    wait: bool = typer.Option(False, "--wait", help="keep draining until this job is settled"),
    propagate: bool = typer.Option(
        True, "--propagate/--no-propagate", help="run the propagation here (else a worker does)"
    ),
    timeout_s: float = typer.Option(
        60.0, "--wait-timeout", help="with --wait: give up after this many seconds"
    ),
    idempotency_key: str | None = typer.Option(
        None, "--idempotency-key", help="retrying with the same key records the interaction once"
    ),
    dataset: str = DATASET,
    home: str | None = HOME,
    lmmem: str | None = LMMemOpt,
) -> None:
    """Record an interaction durably, then propagate it in-process and show the memory diff.

    "recorded" is printed only once the interaction and its job are committed and fsync'd; a
    failure after that (propagation on a full disk, a model error) leaves the job queued and is
    reported as a warning with exit status 0, so a client never retries a recorded interaction.
    """
    from memory_store.interactions import keyed_interaction_id
    from nodes.record import record_interaction

    with user_errors(LookupError, ValueError):
        ctx = _context(dataset, home, lmmem)
        ws = _open_for(ctx)
        targets: list[tuple[MemoryKind, str]] = [("user", user), ("item", item)]
        before = {k: ws.memories.get(k, e) for k, e in targets}
        iid = keyed_interaction_id(f"cli:{idempotency_key}", user, 0) if idempotency_key else None
        event = record_interaction(ws, user, item, kind, interaction_id=iid)
    console.print(f"recorded interaction [bold]{event.interaction_id}[/bold]")
    if not propagate:
        console.print("propagation queued (run `memrec worker` to apply it)")
        return
    try:
        job = run_async(_drain_for(ws, ctx, event.interaction_id, wait, timeout_s))
        console.print(f"job {event.interaction_id}: {job}")
        usage = ws.events.calls_of([event.interaction_id]).get(event.interaction_id)
        notice = fallback_notice("propagate", usage) if usage is not None else None
        if notice:
            console.print(f"[yellow]note:[/] {notice}", highlight=False)
        for kind_, entity in targets:
            _show_diff(ws, kind_, entity, before[kind_])
    except (OSError, RuntimeError, LookupError, ValueError) as err:
        _after_record_failure(event.interaction_id, err)


def _after_record_failure(interaction_id: str, err: BaseException) -> None:
    """The interaction is durable; what failed afterwards is a warning, not a failed command."""
    from rich.console import Console as _Console

    _Console(stderr=True).print(
        f"[yellow]warning:[/] interaction {interaction_id} is recorded and its job queued, but "
        f"propagation did not finish here ({type(err).__name__}: {err}); `memrec worker` or "
        "`memrec doctor --repair` applies it. Do not send the feedback again.",
        highlight=False,
    )


async def _drain_for(
    ws: Workspace, ctx: MemRecContext, interaction_id: str, wait: bool, timeout_s: float
) -> str:
    """Drain due jobs (this one included); with ``wait`` keep going through its backoffs."""
    from services.worker import PropagationWorker

    worker = PropagationWorker(ws, ctx, base_backoff_s=0.5)
    await worker.reclaim()
    deadline = time.monotonic() + timeout_s
    while True:
        await worker.drain()
        job = ws.events.get_job(interaction_id)
        status = job.status if job else "missing"
        if not wait or status in ("done", "failed") or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.2)


def _show_diff(ws: Workspace, kind: MemoryKind, entity: str, before: MemoryRecord | None) -> None:
    after = ws.memories.get(kind, entity)
    if after is None:
        return
    if before is not None and before.version == after.version:
        console.print(f"{kind}:{entity} unchanged (version {after.version})")
        return
    table = Table(title=f"{kind}:{entity}", show_lines=True)
    table.add_column("version")
    table.add_column("text")
    table.add_row(str(before.version) if before else "-", before.text if before else "-")
    table.add_row(str(after.version), after.text)
    console.print(table)


# --------------------------------------------------------------------------------- jobs


def jobs(
    status: str | None = typer.Option(
        None, "--status", help=f"only jobs in this status: {', '.join(JOB_STATUSES)}"
    ),
    retry: bool = typer.Option(False, "--retry", help="put parked (failed) jobs back in the queue"),
    limit: int = typer.Option(50, "--limit", help="rows to show"),
    dataset: str = DATASET,
    home: str | None = HOME,
) -> None:
    """Show the propagation job queue (counts per status, then the jobs)."""
    with user_errors(LookupError, ValueError):
        if status is not None and status not in JOB_STATUSES:
            raise ValueError(f"unknown --status {status!r}; accepted: {', '.join(JOB_STATUSES)}")
        ws = _open(dataset, home, readonly=not retry)
        if retry:
            n = ws.events.retry_failed()
            console.print(f"{n} failed job(s) back in the queue")
        counts = ws.events.counts()
        console.print("  ".join(f"{s}: {counts[s]}" for s in JOB_STATUSES))
        table = Table(title="propagation jobs")
        for col in ("interaction", "user", "item", "status", "attempts", "updated", "last error"):
            table.add_column(col)
        for job in ws.events.jobs(status, limit=limit):  # type: ignore[arg-type]
            event = ws.events.get_interaction(job.interaction_id)
            table.add_row(
                job.interaction_id,
                event.user_id if event else "-",
                event.item_id if event else "-",
                job.status,
                str(job.attempts),
                _when(job.updated_at),
                _short(job.last_error, 60),
            )
        console.print(table)


# --------------------------------------------------------------------------------- memory

memory_app = typer.Typer(help="Read a memory, its audited history, or restore a version.")


@memory_app.command("show")
def memory_show(
    user: str | None = USER,
    item: str | None = ITEM,
    dataset: str = DATASET,
    home: str | None = HOME,
) -> None:
    """Show a memory's current text, version, time and what wrote it."""
    with user_errors(LookupError, ValueError):
        kind, entity = _target(user, item)
        ws = _open(dataset, home)
        _check_known(ws, kind, entity)
        rec = ws.memories.get(kind, entity)
        if rec is None:
            from memory_store.writes import UnknownMemory

            raise UnknownMemory(kind, entity)
        console.print(
            f"[bold]{kind}:{entity}[/bold] version {rec.version}, {_when(rec.updated_at)}, "
            f"written by {rec.source}"
        )
        console.print(rec.text, highlight=False)


@memory_app.command("history")
def memory_history(
    user: str | None = USER,
    item: str | None = ITEM,
    dataset: str = DATASET,
    home: str | None = HOME,
) -> None:
    """Every audited write of a memory: version, cause, time, previous -> new text."""
    with user_errors(LookupError, ValueError):
        kind, entity = _target(user, item)
        ws = _open(dataset, home)
        _check_known(ws, kind, entity)
        rows = ws.events.history(kind, entity)
        table = Table(title=f"history of {kind}:{entity}", show_lines=True)
        for col in ("version", "cause", "writer", "time", "previous", "new"):
            table.add_column(col)
        for row in rows:
            table.add_row(
                str(row.version),
                row.cause,
                ws.events.writer_of(row.cause),  # the model, or the offline fallback and why
                _when(row.at),
                _short(row.previous_text),
                _short(row.new_text) if row.new_text or row.previous_text else "(pruned)",
            )
        console.print(table)
        if not rows:
            console.print("no audited writes yet (only the indexed version)")


@memory_app.command("rollback")
def memory_rollback(
    version: int = typer.Option(..., "--version", help="the version whose text to restore"),
    user: str | None = USER,
    item: str | None = ITEM,
    dataset: str = DATASET,
    home: str | None = HOME,
) -> None:
    """Restore a past version's text as a new version (history is never rewritten)."""
    from memory_store.facet_cache import facet_cache_for
    from memory_store.writes import rollback

    with user_errors(LookupError, ValueError):
        kind, entity = _target(user, item)
        ws = _open(dataset, home, readonly=False)
        _check_known(ws, kind, entity)
        rec = rollback(ws.memories, ws.events, kind, entity, version)
        ws.on_memory_write(kind, entity, rec.text, version=rec.version)
        facet_cache_for(ws).invalidate(kind, entity)
        console.print(f"{kind}:{entity} restored version {version} as version {rec.version}")


def _check_known(ws: Workspace, kind: str, entity: str) -> None:
    (ws.user_code if kind == "user" else ws.item_code)(entity)


# --------------------------------------------------------------------------------- worker


@model_options
def worker(
    dataset: str = DATASET,
    home: str | None = HOME,
    lmmem: str | None = LMMemOpt,
    poll_s: float = typer.Option(0.5, "--poll", help="seconds between polls when idle"),
    in_flight: int = typer.Option(
        8,
        "--in-flight",
        min=1,
        help="model calls at once; as many more jobs prepare ahead, and as many write behind",
    ),
) -> None:
    """Drain the propagation queue forever (Ctrl-C to stop; a killed worker loses nothing)."""
    from services.worker import PropagationWorker

    with user_errors(LookupError, ValueError):
        ctx = _context(dataset, home, lmmem)
        ws = _open_for(ctx)
        runner = PropagationWorker(ws, ctx, poll_s=poll_s, in_flight=in_flight)
        console.print(f"worker {runner.owner} draining {ws.name}; Ctrl-C to stop")
        try:
            run_async(_forever(runner))
        except KeyboardInterrupt:
            pass
        console.print(f"stopped: {runner.stats.model_dump()}")


async def _forever(runner: Any) -> None:
    runner.start()
    last = -1
    while True:
        await asyncio.sleep(runner.poll_s)
        if runner.stats.done != last:
            last = runner.stats.done
            console.print(f"done {runner.stats.done}, parked {runner.stats.parked}")


def register(app: typer.Typer) -> None:
    """Add the write-path commands to the `memrec` app."""
    commands: list[tuple[str, Callable[..., None]]] = [
        ("feedback", feedback),
        ("jobs", jobs),
        ("worker", worker),
    ]
    for name, fn in commands:
        app.command(name)(fn)
    app.add_typer(memory_app, name="memory")
