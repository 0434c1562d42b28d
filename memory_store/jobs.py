"""The propagation job queue of the event log: claim under a lease, complete, fail, reclaim, settle.

This is the public job API every executor uses (the in-process runner, ``memrec worker``, a
propagate graph run on the LangGraph server): a job is created with its interaction, claimed by
one owner under a lease, then completed, failed with a backoff (parked after ``max_attempts``), or
reclaimed when its owner's lease lapsed. ``settle_job`` marks done a job that ran outside a claim.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Literal, get_args

from pydantic import BaseModel, Field

from memory_store.event_db import EventDb, event_from_row
from schemas.records import InteractionEvent

logger = logging.getLogger(__name__)

JobStatus = Literal["pending", "running", "done", "failed"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)

_JOB_COLUMNS = (
    "j.interaction_id, j.status, j.attempts, j.next_attempt_at, j.lease_owner, "
    "j.lease_expires_at, j.last_error, j.created_at, j.updated_at"
)


class JobRow(BaseModel):
    """One propagation job as stored."""

    interaction_id: str = Field(description="the interaction this job propagates")
    status: JobStatus = Field(description="pending, running, done or failed (parked)")
    attempts: int = Field(description="how many times a worker claimed it")
    next_attempt_at: float = Field(description="unix time before which it is not claimed")
    lease_owner: str | None = Field(None, description="the worker holding it while running")
    lease_expires_at: float | None = Field(None, description="when a running lease lapses")
    last_error: str | None = Field(None, description="the error of the last failed attempt")
    created_at: float = Field(description="unix time the job was created")
    updated_at: float = Field(description="unix time of the last status change")


class JobQueue(EventDb):
    """The job operations of :class:`EventLog`."""

    def claim_job(self, owner: str, lease_s: float = 60) -> InteractionEvent | None:
        """Atomically move the oldest due pending job to running under ``owner``'s lease."""
        if lease_s <= 0:
            raise ValueError(f"claim_job: lease_s must be > 0 seconds, got {lease_s}")
        now = self._clock()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT i.* FROM jobs j JOIN interactions i USING (interaction_id) "
                "WHERE j.status='pending' AND j.next_attempt_at<=? ORDER BY i.seq LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET status='running', attempts=attempts+1, lease_owner=?,"
                " lease_expires_at=?, updated_at=? WHERE interaction_id=?",
                (owner, now + lease_s, now, row["interaction_id"]),
            )
        return event_from_row(row)

    def complete_job(self, interaction_id: str, owner: str) -> bool:
        """Mark a job done; False (and nothing changes) when ``owner`` no longer holds it."""
        with self._tx() as conn:
            changed = conn.execute(
                "UPDATE jobs SET status='done', lease_owner=NULL, lease_expires_at=NULL,"
                " updated_at=? WHERE interaction_id=? AND status='running' AND lease_owner=?",
                (self._clock(), interaction_id, owner),
            ).rowcount
        if not changed:
            logger.warning("complete_job: %s does not hold job %s; ignored", owner, interaction_id)
        return bool(changed)

    def fail_job(
        self,
        interaction_id: str,
        owner: str,
        error: str,
        *,
        max_attempts: int = 5,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
    ) -> JobRow | None:
        """Send a failed attempt back to pending after a jittered exponential backoff.

        After ``max_attempts`` claims the job is parked as ``failed`` (visible, retryable with
        ``retry_failed``). Returns the updated job, or None when ``owner`` no longer holds it.
        """
        if max_attempts < 1:
            raise ValueError(f"fail_job: max_attempts must be >= 1, got {max_attempts}")
        now = self._clock()
        with self._tx() as conn:
            job = self._held_job(conn, interaction_id, owner)
            if job is None:
                logger.warning("fail_job: %s does not hold job %s; ignored", owner, interaction_id)
                return None
            parked = job.attempts >= max_attempts
            delay = min(max_backoff_s, base_backoff_s * 2 ** (job.attempts - 1))
            delay *= 1 + 0.5 * self._rng.random()
            conn.execute(
                "UPDATE jobs SET status=?, next_attempt_at=?, lease_owner=NULL,"
                " lease_expires_at=NULL, last_error=?, updated_at=? WHERE interaction_id=?",
                ("failed" if parked else "pending", now + delay, error, now, interaction_id),
            )
            if parked:
                logger.error(
                    "job %s parked after %d attempts: %s", interaction_id, job.attempts, error
                )
            return self._job(conn, interaction_id)

    def reclaim_expired(self, now: float | None = None, *, max_attempts: int | None = None) -> int:
        """Return running jobs whose lease lapsed to pending (their worker died); returns how many.

        With ``max_attempts``, a job that already used them all is parked as failed instead, so a
        job that kills its worker every time cannot loop forever.
        """
        now = self._clock() if now is None else now
        with self._tx() as conn:
            if max_attempts is not None:
                conn.execute(
                    "UPDATE jobs SET status='failed', lease_owner=NULL, lease_expires_at=NULL,"
                    " last_error='lease expired on the last attempt', updated_at=?"
                    " WHERE status='running' AND lease_expires_at<=? AND attempts>=?",
                    (now, now, max_attempts),
                )
            return conn.execute(
                "UPDATE jobs SET status='pending', next_attempt_at=?, lease_owner=NULL,"
                " lease_expires_at=NULL, updated_at=?"
                " WHERE status='running' AND lease_expires_at<=?",
                (now, now, now),
            ).rowcount

    def retry_failed(self, interaction_id: str | None = None) -> int:
        """Put parked jobs (all, or one) back to pending with a fresh attempt budget."""
        now = self._clock()
        sql = (
            "UPDATE jobs SET status='pending', attempts=0, next_attempt_at=?, updated_at=?"
            " WHERE status='failed'"
        )
        params: tuple[object, ...] = (now, now)
        if interaction_id is not None:
            sql, params = sql + " AND interaction_id=?", (*params, interaction_id)
        with self._tx() as conn:
            return conn.execute(sql, params).rowcount

    def jobs(self, status: JobStatus | None = None, limit: int = 100) -> list[JobRow]:
        """Jobs in interaction order, optionally only those with ``status``."""
        if status is not None and status not in JOB_STATUSES:
            raise ValueError(
                f"jobs: unknown status {status!r}; accepted: {', '.join(JOB_STATUSES)}"
            )
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN interactions i USING (interaction_id)"
        params: tuple[object, ...] = ()
        if status is not None:
            sql, params = sql + " WHERE j.status=?", (status,)
        rows = self._read(sql + " ORDER BY i.seq LIMIT ?", (*params, limit))
        return [JobRow(**dict(r)) for r in rows]

    def get_job(self, interaction_id: str) -> JobRow | None:
        """The job of that interaction, or None."""
        with self._lock:
            return self._job(self._conn, interaction_id)

    def counts(self) -> dict[str, int]:
        """How many jobs are in each status (every status present, zeros included)."""
        rows = self._read("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
        return {status: 0 for status in JOB_STATUSES} | {r["status"]: r["n"] for r in rows}

    @staticmethod
    def _job(conn: sqlite3.Connection, interaction_id: str) -> JobRow | None:
        row = conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs j WHERE j.interaction_id=?", (interaction_id,)
        ).fetchone()
        return JobRow(**dict(row)) if row else None

    def _held_job(self, conn: sqlite3.Connection, interaction_id: str, owner: str) -> JobRow | None:
        job = self._job(conn, interaction_id)
        if job is None or job.status != "running" or job.lease_owner != owner:
            return None
        return job

    def settle_job(self, interaction_id: str) -> bool:
        """Mark a pending or parked job done after its propagation ran outside a claim.

        The propagate graph does this when it runs without a worker (a LangGraph server run, a
        direct invocation). A job a worker holds (running) is left to that worker; replays are
        harmless either way. Returns whether the job changed.
        """
        with self._tx() as conn:
            changed = conn.execute(
                "UPDATE jobs SET status='done', lease_owner=NULL, lease_expires_at=NULL,"
                " updated_at=? WHERE interaction_id=? AND status IN ('pending', 'failed')",
                (self._clock(), interaction_id),
            ).rowcount
        return bool(changed)

    def busy_jobs(self) -> int:
        """Jobs still to do now: running, or pending and already due."""
        now = self._clock()
        rows = self._read(
            "SELECT COUNT(*) AS n FROM jobs WHERE status='running'"
            " OR (status='pending' AND next_attempt_at<=?)",
            (now,),
        )
        return int(rows[0]["n"])
