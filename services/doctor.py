"""`memrec doctor`: check that the graph, the memories and the event log of a workspace agree.

Checks of the store's files (:func:`check_files`, run before anything is opened):

- ``no_manifest``: a store indexed before manifests existed (re-index writes one);
- ``damaged_file``: a file the manifest lists is missing, truncated or changed;
- ``missing_event_log`` / ``damaged_event_log``: the event log is gone or fails SQLite's check;
- ``missing_memories`` / ``damaged_memories``: the embedded Chroma database is gone or damaged;
- ``leftover_temp``: temporary files of interrupted writes.

Checks of the open workspace (:func:`check_workspace`; each failure is a :class:`Problem` with a
code and what to do; ``services/repair.py`` fixes what can be fixed):

- ``index``: the catalog, graph, vectors and one memory per user and item are all there;
- ``interaction_not_in_graph``: every logged interaction is an edge of the graph;
- ``interaction_of_deleted_user``: a deleted user has no logged interaction left;
- ``interaction_without_job``: every logged interaction has its propagation job;
- ``done_job_without_audit``: a done job's writes are audited (its user rewrite at least);
- ``expired_lease``: no job is still running under a lease that lapsed (a dead worker);
- ``stuck_pending``: no job is due for longer than ``STUCK_AFTER_S`` without an executor;
- ``parked_job``: no job was parked as failed after its last attempt;
- ``version_collision``: a memory's text is the text audited for its version;
- ``vector_mismatch``: a memory's stored embedding is the embedding of its text;
- ``applied_twice``: no cause wrote the same memory twice;
- ``version_mismatch`` / ``unaudited_write``: every memory's version is its latest audited one.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from memory_store.embeddings import embed_documents
from memory_store.memories import MemoryKind, MemoryRecord
from memory_store.privacy_log import PrivacyState, is_placeholder, read_privacy
from memory_store.retention import is_pruned
from memory_store.workspace import Workspace

logger = logging.getLogger(__name__)

WARMUP = "warmup"
STUCK_AFTER_S = 120.0  # a due job nobody claimed for this long has no executor
REPAIR = "`memrec doctor --repair`"


class Problem(BaseModel):
    """One inconsistency found."""

    code: str = Field(description="what kind of problem (see the module docstring)")
    detail: str = Field(description="what was found and what to do about it")


class DoctorReport(BaseModel):
    """The result of a consistency check."""

    dataset: str = Field(description="the checked dataset")
    counts: dict[str, int] = Field(default_factory=dict, description="what the store holds")
    problems: list[Problem] = Field(default_factory=list, description="empty when consistent")
    notes: list[str] = Field(default_factory=list, description="facts that are not problems")

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems

    def codes(self) -> set[str]:
        """The codes of the problems found."""
        return {p.code for p in self.problems}

    def add(self, code: str, detail: str, *, limit: int = 20) -> None:
        """Record a problem (at most ``limit`` per code; the count keeps growing)."""
        self.counts[f"problem:{code}"] = self.counts.get(f"problem:{code}", 0) + 1
        if self.counts[f"problem:{code}"] <= limit:
            self.problems.append(Problem(code=code, detail=detail))


def check_workspace(
    ws: Workspace, *, now: float | None = None, report: DoctorReport | None = None
) -> DoctorReport:
    """Run every check on an open workspace (read-only)."""
    report = report or DoctorReport(dataset=ws.name)
    _check_index(ws, report)
    privacy = read_privacy(ws.events.path)
    report.counts["deleted_users"] = len(privacy.deleted)
    report.counts["opted_out_users"] = len(ws.opted_out)
    _check_interactions(ws, report, privacy)
    _check_jobs(ws, report, time.time() if now is None else now)
    _check_audit(ws, report)
    return report


def _check_index(ws: Workspace, report: DoctorReport) -> None:
    ds = ws.dataset
    report.counts |= {
        "users": ds.n_users,
        "items": ds.n_items,
        "graph_edges": ws.graph.n_interactions,
        "memories_user": ws.memories.count("user"),
        "memories_item": ws.memories.count("item"),
    }
    if (ws.graph.n_users, ws.graph.n_items) != (ds.n_users, ds.n_items):
        report.add(
            "index",
            f"graph is {ws.graph.n_users}x{ws.graph.n_items} but the catalog has "
            f"{ds.n_users} users and {ds.n_items} items: {REPAIR}",
        )
    if len(ws.vectors.users) != ds.n_users or len(ws.vectors.items) != ds.n_items:
        report.add("index", f"memory vectors do not match the catalog: {REPAIR}")
    if report.counts["memories_item"] < ds.n_items:
        missing = ds.n_items - report.counts["memories_item"]
        report.add("index", f"{missing} items have no memory: {REPAIR}")


def _check_interactions(ws: Workspace, report: DoctorReport, privacy: PrivacyState) -> None:
    rows = ws.events.interactions()
    report.counts["interactions_logged"] = len(rows)
    with_job = _ids_with_job(ws.events.path)
    for ev in rows:
        u = ws.dataset.user_index.get(ev.user_id)
        i = ws.dataset.item_index.get(ev.item_id)
        if privacy.is_deleted(ev.user_id):
            report.add(
                "interaction_of_deleted_user",
                f"{ev.interaction_id}: its user was deleted; {REPAIR} finishes the deletion",
            )
            continue
        if u is None or i is None:
            report.add(
                "interaction_not_in_graph",
                f"{ev.interaction_id}: unknown user {ev.user_id!r} or item {ev.item_id!r}",
            )
        elif not ws.graph.has(u, i):
            report.add(
                "interaction_not_in_graph",
                f"{ev.interaction_id}: ({ev.user_id}, {ev.item_id}) is logged but not in the "
                "graph; reopen the workspace to replay the log",
            )
        if ev.interaction_id not in with_job:
            report.add("interaction_without_job", f"{ev.interaction_id} has no propagation job")


def _ids_with_job(events_path: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{events_path}?mode=ro", uri=True, timeout=10.0)
    try:
        return {r[0] for r in conn.execute("SELECT interaction_id FROM jobs")}
    finally:
        conn.close()


def _check_jobs(ws: Workspace, report: DoctorReport, now: float) -> None:
    counts = ws.events.counts()
    report.counts |= {f"jobs_{status}": n for status, n in counts.items()}
    for job in ws.events.jobs("running", limit=1_000_000):
        if job.lease_expires_at is not None and job.lease_expires_at <= now:
            report.add(
                "expired_lease",
                f"job {job.interaction_id} is running under {job.lease_owner}'s lease that "
                f"lapsed (its worker died): {REPAIR} re-queues and runs it, or start "
                "`memrec worker`",
            )
    for job in ws.events.jobs("pending", limit=1_000_000):
        waited = now - job.next_attempt_at
        if waited > STUCK_AFTER_S:
            report.add(
                "stuck_pending",
                f"job {job.interaction_id} has been due for {waited:.0f} s and no executor "
                f"claimed it: start `memrec worker`, or {REPAIR} runs it",
            )
    for job in ws.events.jobs("failed", limit=1_000_000):
        report.add(
            "parked_job",
            f"job {job.interaction_id} was parked after {job.attempts} attempts "
            f"({(job.last_error or '')[:100]}): {REPAIR} or `memrec jobs --retry` retries it",
        )
    for job in ws.events.jobs("done", limit=1_000_000):
        event = ws.events.get_interaction(job.interaction_id)
        if event is not None and not ws.events.applied(job.interaction_id, "user", event.user_id):
            report.add(
                "done_job_without_audit",
                f"job {job.interaction_id} is done but its user rewrite is not audited",
            )


def _check_audit(ws: Workspace, report: DoctorReport) -> None:
    rows = _audit_rows(ws.events.path)
    report.counts["audit_rows"] = len(rows)
    per_cause: Counter[tuple[str, str, str]] = Counter()
    latest: dict[tuple[str, str], int] = {}
    pruned = 0
    for kind, entity, version, cause, previous, new in rows:
        if not cause.startswith("rollback:"):
            per_cause[(cause, kind, entity)] += 1
        latest[(kind, entity)] = max(version, latest.get((kind, entity), 0))
        pruned += is_pruned(previous, new)
    report.counts["audit_rows_pruned"] = pruned
    for (cause, kind, entity), n in per_cause.items():
        if n > 1:
            report.add("applied_twice", f"{cause} wrote {kind}:{entity} {n} times")
    for kind in ("user", "item"):
        _check_versions(ws, report, kind, latest)  # type: ignore[arg-type]


def _audit_rows(events_path: Path) -> list[tuple[str, str, int, str, str | None, str]]:
    conn = sqlite3.connect(f"file:{events_path}?mode=ro", uri=True, timeout=10.0)
    try:
        return list(
            conn.execute(
                "SELECT kind, entity_id, version, cause, "
                "CASE WHEN previous_text IS NULL THEN NULL ELSE '' END, "
                "CASE WHEN new_text='' THEN '' ELSE 'x' END FROM audit"
            )
        )
    finally:
        conn.close()


def _check_versions(
    ws: Workspace, report: DoctorReport, kind: MemoryKind, latest: dict[tuple[str, str], int]
) -> None:
    ids = ws.dataset.user_ids if kind == "user" else ws.dataset.item_ids
    records = ws.memories.get_many(kind, ids)
    for entity in ids:
        rec = records.get(entity)
        audited = latest.get((kind, entity))
        if rec is None:
            if kind == "user" and not is_placeholder(entity):
                report.add("index", f"user {entity} has no memory: {REPAIR}")
            if audited is not None:
                report.add(
                    "version_mismatch",
                    f"{kind}:{entity} is audited but has no memory: {REPAIR} restores it "
                    "from the audit log",
                )
            continue
        if audited is None:
            if rec.version > 1 or rec.source != WARMUP:
                report.add(
                    "unaudited_write",
                    f"{kind}:{entity} v{rec.version} by {rec.source} has no audit row: {REPAIR}",
                )
        elif rec.version != audited:
            code = "unaudited_write" if rec.version > audited else "version_mismatch"
            report.add(
                code,
                f"{kind}:{entity} is at v{rec.version} but the audit's latest is v{audited}: "
                f"{REPAIR}",
            )
        else:
            text = ws.events.version_text(kind, entity, rec.version)
            if text is not None and text != rec.text:
                report.add(
                    "version_collision",
                    f"{kind}:{entity} v{rec.version} holds a text other than the one audited "
                    f"for v{rec.version} (two writes made that version): {REPAIR}",
                )
    _check_vectors(ws, report, kind, list(records.values()))


def vector_mismatches(ws: Workspace, kind: MemoryKind, records: list[MemoryRecord]) -> list[str]:
    """Ids whose stored embedding is not the embedding of their text."""
    inner = getattr(ws.memories, "inner", ws.memories)
    function = getattr(inner, "embedding_function", None)
    if function is None or not records:
        return []
    stored = ws.memories.embeddings(kind, [r.entity_id for r in records])
    fresh = embed_documents(function, [r.text for r in records])
    bad = []
    for rec, vector in zip(records, fresh, strict=True):
        have = stored.get(rec.entity_id)
        if have is None:
            continue
        a, b = np.asarray(have, np.float32), np.asarray(vector, np.float32)
        denom = float(np.linalg.norm(a) * np.linalg.norm(b)) or 1.0
        if float(a @ b) / denom < 0.999:
            bad.append(rec.entity_id)
    return bad


def _check_vectors(
    ws: Workspace, report: DoctorReport, kind: MemoryKind, records: list[MemoryRecord]
) -> None:
    for entity in vector_mismatches(ws, kind, records):
        report.add(
            "vector_mismatch",
            f"{kind}:{entity}: its stored vector is not the embedding of its text (a write "
            f"interrupted between the two): {REPAIR} re-embeds it",
        )
