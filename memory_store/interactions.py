"""The interactions table of the event log: durable, idempotent recording of what users did.

An interaction and its propagation job are committed in one transaction (``synchronous=FULL``)
before the request that recorded them returns. Recording is idempotent on the interaction id; a
request that may be retried or replayed derives its ids from a request key
(:func:`keyed_interaction_id`: a client's idempotency key, or the LangGraph run id), so a retry
or a replayed run records nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from pydantic import BaseModel, Field

from memory_store.event_db import EventDb, event_from_row
from schemas.records import InteractionEvent


class InteractionConflict(ValueError):
    """An interaction id was recorded again with a different user, item or kind."""


def keyed_interaction_id(key: str, user_id: str, position: int) -> str:
    """The interaction id of the ``position``-th interaction a keyed request records for a user.

    The same request key gives the same ids, so recording it again returns the first events.
    """
    digest = hashlib.sha256(f"{key}\x1f{user_id}\x1f{position}".encode()).hexdigest()
    return f"k{digest[:31]}"


class InteractionRow(BaseModel):
    """An interaction with its position in the log."""

    seq: int = Field(description="monotonic log position; pass as since_seq to read only newer")
    recorded_at: float = Field(description="unix time the log committed it")
    event: InteractionEvent = Field(description="the interaction itself")


class InteractionLog(EventDb):
    """Record and read interactions (the part of :class:`EventLog` that owns them)."""

    def record_interaction(
        self,
        user_id: str,
        item_id: str,
        kind: str = "positive",
        ts: float | None = None,
        interaction_id: str | None = None,
    ) -> InteractionEvent:
        """Durably record an interaction and its pending propagation job in one transaction.

        Recording the same ``interaction_id`` twice returns the first event and creates no
        second job; reusing it for another user, item or kind raises InteractionConflict.
        """
        for name, value in (("user_id", user_id), ("item_id", item_id), ("kind", kind)):
            if not value:
                raise ValueError(f"record_interaction: {name} must be a non-empty string")
        now = self._clock()
        event = InteractionEvent(
            interaction_id=interaction_id or uuid.uuid4().hex,
            user_id=user_id,
            item_id=item_id,
            kind=kind,
            ts=now if ts is None else ts,
        )
        with self._durable():
            return self._insert_interaction(event, now)

    def _insert_interaction(self, event: InteractionEvent, now: float) -> InteractionEvent:
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO interactions"
                "(interaction_id, user_id, item_id, kind, ts, recorded_at) VALUES (?,?,?,?,?,?)",
                (event.interaction_id, event.user_id, event.item_id, event.kind, event.ts, now),
            )
            if cur.rowcount == 0:
                return self._existing_interaction(conn, event)
            conn.execute(
                "INSERT INTO jobs(interaction_id, status, attempts, next_attempt_at, created_at,"
                " updated_at) VALUES (?, 'pending', 0, ?, ?, ?)",
                (event.interaction_id, now, now, now),
            )
        return event

    @staticmethod
    def _existing_interaction(conn: Any, event: InteractionEvent) -> InteractionEvent:
        row = conn.execute(
            "SELECT * FROM interactions WHERE interaction_id=?", (event.interaction_id,)
        ).fetchone()
        existing = event_from_row(row)
        if (existing.user_id, existing.item_id, existing.kind) != (
            event.user_id,
            event.item_id,
            event.kind,
        ):
            raise InteractionConflict(
                f"interaction {event.interaction_id!r} is already recorded as "
                f"({existing.user_id}, {existing.item_id}, {existing.kind}); got "
                f"({event.user_id}, {event.item_id}, {event.kind}). Reuse an id only to retry "
                "the same interaction."
            )
        return existing

    def get_interaction(self, interaction_id: str) -> InteractionEvent | None:
        """The interaction with that id, or None."""
        rows = self._read("SELECT * FROM interactions WHERE interaction_id=?", (interaction_id,))
        return event_from_row(rows[0]) if rows else None

    def interaction_rows(
        self, user_id: str | None = None, since_seq: int | None = None
    ) -> list[InteractionRow]:
        """Interactions in log order with their seq, optionally one user's / after ``since_seq``."""
        sql, params = "SELECT * FROM interactions WHERE 1=1", list[object]()
        if user_id is not None:
            sql, params = sql + " AND user_id=?", [*params, user_id]
        if since_seq is not None:
            sql, params = sql + " AND seq>?", [*params, since_seq]
        rows = self._read(sql + " ORDER BY seq", tuple(params))
        return [
            InteractionRow(seq=r["seq"], recorded_at=r["recorded_at"], event=event_from_row(r))
            for r in rows
        ]

    def interactions(
        self, user_id: str | None = None, since_seq: int | None = None
    ) -> list[InteractionEvent]:
        """Interactions in log order, optionally one user's and / or only after ``since_seq``."""
        return [row.event for row in self.interaction_rows(user_id, since_seq)]

    def delete_user(self, user_id: str) -> int:
        """Remove a user's interactions and their jobs; returns how many interactions went.

        Audit rows stay (they describe memory versions); read ``writes_caused_by_user`` before
        deleting if those writes must be undone.
        """
        with self._tx() as conn:
            conn.execute(
                "DELETE FROM jobs WHERE interaction_id IN "
                "(SELECT interaction_id FROM interactions WHERE user_id=?)",
                (user_id,),
            )
            # other users' jobs keep their fan-out and model answer (memory_store/claims.py),
            # which may name this user: forget both (a retry then chooses and asks again)
            kept = conn.execute(
                "SELECT interaction_id, fanout, result FROM jobs "
                "WHERE fanout IS NOT NULL OR result IS NOT NULL"
            ).fetchall()
            for row in kept:
                if any(_names(col, user_id) for col in (row["fanout"], row["result"])):
                    conn.execute(
                        "UPDATE jobs SET fanout=NULL, result=NULL WHERE interaction_id=?",
                        (row["interaction_id"],),
                    )
            return conn.execute("DELETE FROM interactions WHERE user_id=?", (user_id,)).rowcount

    def cancel_user_jobs(self, user_id: str) -> int:
        """Drop a user's jobs that no worker holds (pending or parked): a deletion stops them."""
        with self._tx() as conn:
            return conn.execute(
                "DELETE FROM jobs WHERE status IN ('pending', 'failed') AND interaction_id IN "
                "(SELECT interaction_id FROM interactions WHERE user_id=?)",
                (user_id,),
            ).rowcount

    def running_user_jobs(self, user_id: str) -> list[str]:
        """Interaction ids of a user's jobs a worker is running now."""
        rows = self._read(
            "SELECT j.interaction_id FROM jobs j JOIN interactions i USING (interaction_id) "
            "WHERE j.status='running' AND i.user_id=?",
            (user_id,),
        )
        return [r["interaction_id"] for r in rows]


def _names(stored: str | None, user_id: str) -> bool:
    """Whether a stored JSON value (a job's fan-out or answer) holds ``user_id`` in any string."""
    if not stored:
        return False
    stack: list[Any] = [json.loads(stored)]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if user_id in value:
                return True
        elif isinstance(value, dict):
            stack.extend([*value.keys(), *value.values()])
        elif isinstance(value, list):
            stack.extend(value)
    return False
