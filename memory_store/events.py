"""Durable event log, propagation job queue, memory-write audit and model-call log, in one file.

``EventLog`` composes the operations (``interactions``, ``jobs``, ``audit``, ``call_log``) over the
SQLite storage of ``memory_store/event_db.py``, whose docstring says how durability and threading
work; ``memory_store/pg_events.py`` composes the same operations over Postgres.
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
