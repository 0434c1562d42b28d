"""`memrec doctor`: check that the graph, the memories and the event log of a workspace agree.

Checks (each failure is a :class:`Problem` with a code and what to do):

- ``index``: the catalog, graph, vectors and one memory per user and item are all there;
- ``interaction_not_in_graph``: every logged interaction is an edge of the graph;
- ``interaction_of_deleted_user``: a deleted user has no logged interaction left;
- ``interaction_without_job``: every logged interaction has its propagation job;
- ``done_job_without_audit``: a done job's writes are audited (its user rewrite at least);
- ``expired_lease``: no job is still running under a lease that lapsed (a dead worker);
- ``applied_twice``: no cause wrote the same memory twice;
- ``version_mismatch`` / ``unaudited_write``: every memory's version is its latest audited one.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field

from memory_store.memories import MemoryKind
from memory_store.privacy_log import read_privacy
from memory_store.workspace import Workspace

logger = logging.getLogger(__name__)

WARMUP = "warmup"


class Problem(BaseModel):
    """One inconsistency found."""

    code: str = Field(description="what kind of problem (see the module docstring)")
    detail: str = Field(description="what was found and what to do about it")


class DoctorReport(BaseModel):
    """The result of a consistency check."""

    dataset: str = Field(description="the checked dataset")
    counts: dict[str, int] = Field(default_factory=dict, description="what the store holds")
    problems: list[Problem] = Field(default_factory=list, description="empty when consistent")

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems

    def add(self, code: str, detail: str, *, limit: int = 20) -> None:
        """Record a problem (at most ``limit`` per code; the count keeps growing)."""
        self.counts[f"problem:{code}"] = self.counts.get(f"problem:{code}", 0) + 1
        if self.counts[f"problem:{code}"] <= limit:
            self.problems.append(Problem(code=code, detail=detail))


def check_workspace(ws: Workspace, *, now: float | None = None) -> DoctorReport:
    """Run every check on an open workspace (read-only)."""
    report = DoctorReport(dataset=ws.name)
    _check_index(ws, report)
    deleted = read_privacy(ws.events.path).deleted
    report.counts["deleted_users"] = len(deleted)
    report.counts["opted_out_users"] = len(ws.opted_out)
    _check_interactions(ws, report, deleted)
    _check_jobs(ws, report, time.time() if now is None else now)
    _check_audit(ws, report, deleted)
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
            f"{ds.n_users} users and {ds.n_items} items: re-run `memrec index`",
        )
    if len(ws.vectors.users) != ds.n_users or len(ws.vectors.items) != ds.n_items:
        report.add("index", "memory vectors do not match the catalog: re-run `memrec index`")
    if report.counts["memories_item"] < ds.n_items:
        missing = ds.n_items - report.counts["memories_item"]
        report.add("index", f"{missing} items have no memory: re-run `memrec index`")


def _check_interactions(ws: Workspace, report: DoctorReport, deleted: set[str]) -> None:
    rows = ws.events.interactions()
    report.counts["interactions_logged"] = len(rows)
    with_job = _ids_with_job(ws.events.path)
    for ev in rows:
        u = ws.dataset.user_index.get(ev.user_id)
        i = ws.dataset.item_index.get(ev.item_id)
        if ev.user_id in deleted:
            report.add(
                "interaction_of_deleted_user",
                f"{ev.interaction_id}: user {ev.user_id} was deleted; re-run "
                f"`memrec privacy delete-user --user {ev.user_id}`",
            )
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
                "lapsed: start a worker (`memrec worker`) to reclaim it",
            )
    for job in ws.events.jobs("done", limit=1_000_000):
        event = ws.events.get_interaction(job.interaction_id)
        if event is not None and not ws.events.applied(job.interaction_id, "user", event.user_id):
            report.add(
                "done_job_without_audit",
                f"job {job.interaction_id} is done but its user rewrite is not audited",
            )


def _check_audit(ws: Workspace, report: DoctorReport, deleted: set[str]) -> None:
    rows = _audit_rows(ws.events.path)
    report.counts["audit_rows"] = len(rows)
    per_cause: Counter[tuple[str, str, str]] = Counter()
    latest: dict[tuple[str, str], int] = {}
    for kind, entity, version, cause in rows:
        if not cause.startswith("rollback:"):
            per_cause[(cause, kind, entity)] += 1
        latest[(kind, entity)] = max(version, latest.get((kind, entity), 0))
    for (cause, kind, entity), n in per_cause.items():
        if n > 1:
            report.add("applied_twice", f"{cause} wrote {kind}:{entity} {n} times")
    for kind in ("user", "item"):
        _check_versions(ws, report, kind, latest, deleted)  # type: ignore[arg-type]


def _audit_rows(events_path: Path) -> list[tuple[str, str, int, str]]:
    conn = sqlite3.connect(f"file:{events_path}?mode=ro", uri=True, timeout=10.0)
    try:
        return list(conn.execute("SELECT kind, entity_id, version, cause FROM audit"))
    finally:
        conn.close()


def _check_versions(
    ws: Workspace,
    report: DoctorReport,
    kind: MemoryKind,
    latest: dict[tuple[str, str], int],
    deleted: set[str],
) -> None:
    ids = ws.dataset.user_ids if kind == "user" else ws.dataset.item_ids
    records = ws.memories.get_many(kind, ids)
    for entity in ids:
        rec = records.get(entity)
        audited = latest.get((kind, entity))
        if rec is None:
            if kind == "user" and entity not in deleted:
                report.add("index", f"user {entity} has no memory: re-run `memrec index`")
            if audited is not None:
                report.add("version_mismatch", f"{kind}:{entity} is audited but has no memory")
            continue
        if audited is None:
            if rec.version > 1 or rec.source != WARMUP:
                report.add(
                    "unaudited_write",
                    f"{kind}:{entity} v{rec.version} by {rec.source} has no audit row: re-run "
                    "its job (apply_write repairs the audit)",
                )
        elif rec.version != audited:
            code = "unaudited_write" if rec.version > audited else "version_mismatch"
            report.add(
                code,
                f"{kind}:{entity} is at v{rec.version} but the audit's latest is v{audited}",
            )
