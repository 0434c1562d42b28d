"""`memrec doctor` end to end: diagnose a store, repair what can be repaired, compact the audit.

:func:`diagnose` checks the files first (``services/doctor_files.py``) and opens the store
read-only only when they are sound (``services/doctor.py``). :func:`repair` takes the writer lock
and, by finding: deletes leftover temporaries; salvages a damaged event log's readable rows into a
new one (the damaged file is kept aside); sets a damaged Chroma database aside; re-runs the index
steps whose files are missing or changed (the graph is rebuilt from the catalog and replayed from
the event log on open; lost memories are rebuilt from the catalog and the audit log); re-queues
lapsed leases and parked jobs and runs every due job; restores memories behind their audit,
audits writes that lost their row, rewrites version collisions as a new version, re-embeds
memories whose vector is stale, and finishes interrupted deletions. It diagnoses again at the end.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from pydantic import BaseModel, Field

from dataio.paths import store_dir
from memory_store.events import EventLog
from memory_store.manifest import DamagedStore
from memory_store.recovery import restore_from_audit
from memory_store.retention import RetentionPolicy, apply_retention
from memory_store.salvage import salvage_event_log
from memory_store.workspace import INDEX_MARKER, NotIndexed, Workspace, open_workspace
from memory_store.writer_lock import writer_lock
from memory_store.writes import apply_write
from schemas.context import MemRecContext
from services.doctor import DoctorReport, check_workspace, vector_mismatches
from services.doctor_files import BLOCKING, check_files
from services.event_loop import run as run_async

logger = logging.getLogger(__name__)

REINDEX = frozenset(
    {"damaged_file", "missing_memories", "damaged_memories", "no_manifest", "index"}
)


class RepairReport(BaseModel):
    """What ``repair`` found and did."""

    before: DoctorReport = Field(description="the diagnosis before repairing")
    actions: list[str] = Field(default_factory=list, description="what was done, in order")
    after: DoctorReport = Field(description="the diagnosis after repairing")


def diagnose(
    dataset: str, home: str | Path | None = None, *, chroma_url: str | None = None
) -> DoctorReport:
    """Check the store's files, then (when they are sound) its contents; read-only."""
    directory = store_dir(dataset, home)
    if not (directory / INDEX_MARKER).exists():
        raise NotIndexed(
            f"dataset {dataset!r} is not indexed under {directory}; "
            f"run `memrec index --dataset {dataset}` first"
        )
    report = DoctorReport(dataset=dataset)
    check_files(directory, report, chroma_embedded=chroma_url is None)
    if report.codes() & BLOCKING:
        return report
    try:
        ws = open_workspace(dataset, home=home, chroma_url=chroma_url, readonly=True)
    except DamagedStore as err:
        report.add("damaged_file", f"{err.path}: {err.reason}: `memrec doctor --repair`")
        return report
    try:
        return check_workspace(ws, report=report)
    finally:
        ws.events.close()


def repair(
    ctx: MemRecContext,
    *,
    data_dir: str | Path | None = None,
    new_event_log: bool = False,
) -> RepairReport:
    """Repair what can be repaired in the store ``ctx`` names (see the module docstring)."""
    before = diagnose(ctx.dataset, ctx.home, chroma_url=ctx.chroma_url)
    directory = store_dir(ctx.dataset, ctx.home)
    if ctx.chroma_url is None:
        writer_lock(directory).acquire()
    actions = _repair_files(directory, ctx, before, data_dir, new_event_log)
    if not (diagnose(ctx.dataset, ctx.home, chroma_url=ctx.chroma_url).codes() & BLOCKING):
        actions += _repair_contents(ctx, before)
    return RepairReport(
        before=before,
        actions=actions,
        after=diagnose(ctx.dataset, ctx.home, chroma_url=ctx.chroma_url),
    )


def _repair_files(
    directory: Path,
    ctx: MemRecContext,
    report: DoctorReport,
    data_dir: str | Path | None,
    new_event_log: bool,
) -> list[str]:
    from dataio.files import leftover_temporaries

    actions = []
    codes = report.codes()
    for temporary in leftover_temporaries(directory):
        temporary.unlink(missing_ok=True)
        actions.append(f"removed {temporary}")
    events = directory / "events.sqlite"
    if "missing_event_log" in codes:
        if new_event_log:
            EventLog(events, dataset=ctx.dataset).close()
            actions.append(f"created a new, empty event log {events} (--new-event-log)")
        else:
            actions.append(
                f"NOT repaired: {events} is missing; restore it from a backup, or run again "
                "with --new-event-log to accept the loss"
            )
    if "damaged_event_log" in codes:
        counts = salvage_event_log(events, ctx.dataset)
        actions.append(f"salvaged the damaged event log into a new one: {counts}")
    if "damaged_memories" in codes:
        aside = directory / f"chroma.damaged-{int(time.time())}"
        shutil.move(str(directory / "chroma"), aside)
        actions.append(f"set the damaged Chroma store aside as {aside}")
    if codes & REINDEX or "damaged_memories" in codes:
        from services.index import build_index

        report_ = build_index(
            ctx.dataset, data_dir=data_dir, home=ctx.home, chroma_url=ctx.chroma_url
        )
        actions.append(
            f"re-ran the index steps whose files were missing or changed "
            f"({report_.memories_created} memories restored or created)"
        )
    return actions


def _repair_contents(ctx: MemRecContext, report: DoctorReport) -> list[str]:
    from memory_store.workspace import workspace_for

    ws = workspace_for(ctx)
    actions = []
    reclaimed = ws.events.reclaim_expired()
    retried = ws.events.retry_failed()
    if reclaimed or retried:
        actions.append(f"re-queued {reclaimed} lapsed and {retried} parked job(s)")
    restored = restore_from_audit(ws.memories, ws.events)
    if restored:
        actions.append(f"restored {restored} memories behind their audit log")
    actions += _fix_versions(ws)
    actions += _finish_deletions(ws)
    done = _drain(ws, ctx)
    if done:
        actions.append(f"ran {done} due propagation job(s)")
    return actions


def _fix_versions(ws: Workspace) -> list[str]:
    audited = collisions = embedded = 0
    for kind in ("user", "item"):
        ids = ws.dataset.user_ids if kind == "user" else ws.dataset.item_ids
        records = ws.memories.get_many(kind, ids)
        for rec in records.values():
            text = ws.events.version_text(kind, rec.entity_id, rec.version)
            history = ws.events.history(kind, rec.entity_id)
            latest = max((r.version for r in history), default=0)
            if rec.version > latest and (history or rec.version > 1 or rec.source != "warmup"):
                previous = ws.events.version_text(kind, rec.entity_id, rec.version - 1)
                ws.events.audit_write(
                    kind,
                    rec.entity_id,
                    rec.version,
                    previous,
                    rec.text,
                    rec.source,
                    at=rec.updated_at,
                )
                audited += 1
            elif text is not None and text != rec.text:
                apply_write(
                    ws.memories,
                    ws.events,
                    rec.kind,
                    rec.entity_id,
                    rec.text,
                    cause=f"repair:collision:v{rec.version}",
                )
                collisions += 1
        stale = vector_mismatches(ws, kind, list(records.values()))
        if stale:
            ws.memories.restore([records[i] for i in stale])  # type: ignore[attr-defined]
        embedded += len(stale)
    out = []
    if audited:
        out.append(f"audited {audited} write(s) that had lost their audit row")
    if collisions:
        out.append(f"rewrote {collisions} version collision(s) as a new, audited version")
    if embedded:
        out.append(f"re-embedded {embedded} memories whose vector was stale")
    return out


def _finish_deletions(ws: Workspace) -> list[str]:
    from memory_store.deletion import delete_user
    from memory_store.privacy_log import read_privacy

    privacy = read_privacy(ws.events.path)
    users = {ev.user_id for ev in ws.events.interactions() if privacy.is_deleted(ev.user_id)}
    for user_id in sorted(users):
        delete_user(ws, user_id)
    return [f"finished {len(users)} interrupted deletion(s)"] if users else []


def _drain(ws: Workspace, ctx: MemRecContext) -> int:
    from services.worker import PropagationWorker

    async def go() -> int:
        return await PropagationWorker(ws, ctx).drain()

    return run_async(go())


def compact(ctx: MemRecContext, policy: RetentionPolicy | None = None) -> dict[str, float]:
    """Apply the audit retention policy, then checkpoint and vacuum the event log."""
    ws = open_workspace(ctx.dataset, home=ctx.home, chroma_url=ctx.chroma_url)
    try:
        ws.acquire_writer()
        path = ws.events.path
        size_before = path.stat().st_size + _wal_size(path)
        pruned = apply_retention(ws.events, policy or RetentionPolicy.from_env())
        ws.events.checkpoint()
        ws.events.vacuum()
        ws.events.checkpoint()
        size_after = path.stat().st_size + _wal_size(path)
    finally:
        ws.events.close()
    return {"rows_pruned": pruned, "bytes_before": size_before, "bytes_after": size_after}


def _wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0
