"""Durable event log, propagation job queue and memory-write audit trail, in one SQLite file.

An interaction and its propagation job are committed in one transaction before the request that
recorded them returns; a worker claims jobs under a lease, so a job whose worker died is picked up
again after ``reclaim_expired``. Every memory write is audited (previous text, new text, cause,
version), which makes writes idempotent per cause and lets any past version be restored.

Durability: the database runs in WAL mode with ``synchronous=NORMAL`` (a commit survives a crash of
the process; only an OS crash or power loss can drop the last commits), except the commit of an
interaction, which runs with ``synchronous=FULL`` (fsync of the WAL on commit): an interaction is
the one thing we promise to the caller and cannot recompute, whereas a lost job transition or
audit row is repaired by re-running the idempotent job.

Threading: one connection per ``EventLog`` guarded by a lock. SQLite serializes writers anyway and
reads take microseconds; a single connection avoids leaking per-thread connections from the thread
pools of asyncio (``to_thread``) and of request handlers. Several ``EventLog`` objects (or
processes) on the same file coordinate through SQLite's own locks (``BEGIN IMMEDIATE`` plus
``busy_timeout``).
"""

from __future__ import annotations

from memory_store.audit import AuditLog, AuditRow
from memory_store.call_log import CallLog
from memory_store.event_db import SCHEMA_VERSION, ReadOnlyLog, SchemaMismatch, StoreBusy
from memory_store.interactions import InteractionConflict, InteractionLog, InteractionRow
from memory_store.jobs import JOB_STATUSES, JobQueue, JobRow, JobStatus

__all__ = [
    "JOB_STATUSES",
    "SCHEMA_VERSION",
    "AuditRow",
    "EventLog",
    "InteractionConflict",
    "InteractionRow",
    "JobRow",
    "JobStatus",
    "ReadOnlyLog",
    "SchemaMismatch",
    "StoreBusy",
]


class EventLog(InteractionLog, JobQueue, AuditLog, CallLog):
    """Interactions, jobs, the audit of memory writes and the model calls behind them."""
