"""The propagation job queue of the event log: one claim protocol for every executor.

This is the public job API every executor uses (the in-process runner, ``memrec worker``, a
propagate graph run on the LangGraph server): a job is created with its interaction, claimed by
one owner under a lease, then completed, failed with a backoff (parked after ``max_attempts``), or
reclaimed when its owner's lease lapsed.

A runner claims the oldest due job (``claim_job``) and hands the claim to the propagate graph; a
graph run started without one (a LangGraph server background run, a replayed run, a direct call)
claims its own interaction's job by id (``claim``): whoever does not get the claim does nothing.
Under the claim, the job keeps what must not change between attempts: the fan-out chosen the first
time (``save_fanout``) and the model's answer (``save_result``), each first-writer-wins, so a
retried or replayed job writes the same patches to the same records, each once (the writes
themselves are idempotent per cause, ``memory_store/writes.py``).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from memory_store.event_db import EventDb, event_from_row
from schemas.records import InteractionEvent

logger = logging.getLogger(__name__)

JobStatus = Literal["pending", "running", "done", "failed"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
# What ``claim`` found: claimed now, already held by the caller, held by another live lease,
# already done, parked as failed, or no job at all for that interaction.
ClaimOutcome = Literal["claimed", "held", "busy", "done", "failed", "missing"]

_JOB_COLUMNS = (
    "j.interaction_id, j.status, j.attempts, j.next_attempt_at, j.lease_owner, "
    "j.lease_expires_at, j.last_error, j.created_at, j.updated_at, j.fanout, j.result"
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
    fanout: list[tuple[str, float]] | None = Field(
        None, description="the neighbours (ref, score) chosen once for this job"
    )
    result: dict[str, Any] | None = Field(
        None, description="the model's answer, kept so a retry never asks again"
    )

    @classmethod
    def from_row(cls, row: Any) -> JobRow:
        """A job from a database row (JSON columns decoded)."""
        values = dict(row)
        for key in ("fanout", "result"):
            if isinstance(values.get(key), str):
                values[key] = json.loads(values[key])
        return cls(**values)


class JobQueue(EventDb):
    """The job operations of :class:`EventLog`."""

    def claim_job(
        self, owner: str, lease_s: float = 60, *, min_age_s: float = 0.0
    ) -> InteractionEvent | None:
        """Atomically move the oldest due pending job to running under ``owner``'s lease.

        ``min_age_s`` > 0 leaves younger jobs to the executor they were handed to (a sweeper
        of orphaned jobs on the LangGraph server).
        """
        claimed = self.claim_jobs(owner, 1, lease_s, min_age_s=min_age_s)
        return claimed[0] if claimed else None

    def claim_jobs(
        self, owner: str, n: int, lease_s: float = 60, *, min_age_s: float = 0.0
    ) -> list[InteractionEvent]:
        """Claim up to ``n`` due pending jobs, oldest first, in one transaction."""
        if lease_s <= 0 or n < 1:
            raise ValueError(f"claim_jobs: need lease_s > 0 and n >= 1, got {lease_s}, {n}")
        now = self._clock()
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT i.* FROM jobs j JOIN interactions i USING (interaction_id) "
                "WHERE j.status='pending' AND j.next_attempt_at<=? AND j.created_at<=? "
                f"ORDER BY i.seq LIMIT ?{self.claim_lock}",
                (now, now - min_age_s, n),
            ).fetchall()
            for row in rows:
                conn.execute(
                    "UPDATE jobs SET status='running', attempts=attempts+1, lease_owner=?,"
                    " lease_expires_at=?, updated_at=? WHERE interaction_id=?",
                    (owner, now + lease_s, now, row["interaction_id"]),
                )
        return [event_from_row(row) for row in rows]

    def claim(self, interaction_id: str, owner: str, lease_s: float = 60) -> ClaimOutcome:
        """Claim (or confirm and renew) the job of one interaction for ``owner``.

        ``claimed``: it was pending, or running under a lapsed lease, and is ``owner``'s now;
        ``held``: ``owner`` holds it already (its lease is renewed). Anything else means the
        caller must not run it: ``busy`` (another live lease), ``done``, ``failed`` (parked;
        ``retry_failed`` releases it) or ``missing`` (no job for that interaction).
        """
        if lease_s <= 0:
            raise ValueError(f"claim: lease_s must be > 0 seconds, got {lease_s}")
        now = self._clock()
        with self._tx() as conn:
            job = self._job_in(conn, interaction_id, lock=True)
            if job is None:
                return "missing"
            if job.status in ("done", "failed"):
                return job.status
            held = job.status == "running" and job.lease_owner == owner
            lapsed = job.status == "running" and (job.lease_expires_at or 0.0) <= now
            if job.status == "running" and not held and not lapsed:
                return "busy"
            conn.execute(
                "UPDATE jobs SET status='running', attempts=attempts+?, lease_owner=?,"
                " lease_expires_at=?, updated_at=? WHERE interaction_id=?",
                (0 if held else 1, owner, now + lease_s, now, interaction_id),
            )
        return "held" if held else "claimed"

    def save_fanout(
        self, interaction_id: str, owner: str, fanout: list[tuple[str, float]]
    ) -> list[tuple[str, float]] | None:
        """Keep the job's fan-out (first writer wins); the fan-out the job has, or None.

        None means ``owner`` does not hold the job (nothing is stored).
        """
        return self._save_once(interaction_id, owner, "fanout", [list(p) for p in fanout])

    def save_result(
        self, interaction_id: str, owner: str, result: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Keep the model's answer for the job (first writer wins); the answer it has, or None."""
        return self._save_once(interaction_id, owner, "result", result)

    def _save_once(self, interaction_id: str, owner: str, column: str, value: Any) -> Any:
        assert column in ("fanout", "result")
        with self._tx() as conn:
            conn.execute(
                f"UPDATE jobs SET {column}=? WHERE interaction_id=? AND status='running'"
                f" AND lease_owner=? AND {column} IS NULL",
                (json.dumps(value), interaction_id, owner),
            )
            job = self._job_in(conn, interaction_id)
        if job is None or job.status != "running" or job.lease_owner != owner:
            return None
        stored = getattr(job, column)
        if column == "fanout" and stored is not None:
            return [(str(ref), float(score)) for ref, score in stored]
        return stored

    def complete_job(self, interaction_id: str, owner: str) -> bool:
        """Mark a job done; True also when it is done already, False when another holds it."""
        with self._tx() as conn:
            changed = conn.execute(
                "UPDATE jobs SET status='done', lease_owner=NULL, lease_expires_at=NULL,"
                " updated_at=? WHERE interaction_id=? AND status='running' AND lease_owner=?",
                (self._clock(), interaction_id, owner),
            ).rowcount
            job = None if changed else self._job_in(conn, interaction_id)
        if changed or (job is not None and job.status == "done"):
            return True
        logger.warning("complete_job: %s does not hold job %s; ignored", owner, interaction_id)
        return False

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
                " lease_expires_at=NULL, last_error=?, updated_at=? WHERE interaction_id=?"
                " AND lease_owner=?",
                ("failed" if parked else "pending", now + delay, error, now, interaction_id, owner),
            )
            if parked:
                logger.error(
                    "job %s parked after %d attempts: %s", interaction_id, job.attempts, error
                )
            return self._job_in(conn, interaction_id)

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
        return [JobRow.from_row(r) for r in rows]

    def get_job(self, interaction_id: str) -> JobRow | None:
        """The job of that interaction, or None."""
        rows = self._read(
            f"SELECT {_JOB_COLUMNS} FROM jobs j WHERE j.interaction_id=?", (interaction_id,)
        )
        return JobRow.from_row(rows[0]) if rows else None

    def counts(self) -> dict[str, int]:
        """How many jobs are in each status (every status present, zeros included)."""
        rows = self._read("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
        return {status: 0 for status in JOB_STATUSES} | {r["status"]: r["n"] for r in rows}

    def _job_in(self, conn: Any, interaction_id: str, *, lock: bool = False) -> JobRow | None:
        row = conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs j WHERE j.interaction_id=?"
            f"{self.row_lock if lock else ''}",
            (interaction_id,),
        ).fetchone()
        return JobRow.from_row(row) if row else None

    def _held_job(self, conn: Any, interaction_id: str, owner: str) -> JobRow | None:
        job = self._job_in(conn, interaction_id, lock=True)
        if job is None or job.status != "running" or job.lease_owner != owner:
            return None
        return job

    def busy_jobs(self) -> int:
        """Jobs still to do now: running, or pending and already due."""
        now = self._clock()
        rows = self._read(
            "SELECT COUNT(*) AS n FROM jobs WHERE status='running'"
            " OR (status='pending' AND next_attempt_at<=?)",
            (now,),
        )
        return int(rows[0]["n"])
