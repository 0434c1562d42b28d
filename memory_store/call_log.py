"""The model calls behind memory writes: which model wrote (or failed and the offline role did).

Every propagation records the usage of its one LMMem call under its interaction id (the cause of
its memory writes), so the audit history can say who wrote each version (``writer_of``) and the
cost of propagation is kept (the calls, server tokens or estimates, retries, repairs, fallbacks).
Its table is part of the event log schema (``event_db``; created when an older log is opened
for writing); a read-only open of an older log reads no calls.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from memory_store.event_db import EventDb
from schemas.records import CallUsage


def writer_label(usage: CallUsage | None) -> str:
    """Who wrote: ``<model>``, ``offline fallback (<model>: <why>)`` or ``offline``."""
    if usage is None or (not usage.calls and not usage.fallbacks):
        return "offline"
    if usage.fallbacks:
        why = f": {usage.fallback_reason}" if usage.fallback_reason else ""
        return f"offline fallback ({usage.model}{why})"
    return usage.model


class CallLog(EventDb):
    """The model-call operations of :class:`EventLog`."""

    def record_call(self, cause: str, step: str, usage: CallUsage) -> None:
        """Keep the usage of ``step``'s model call for ``cause`` (a re-run replaces it)."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO model_calls(cause, step, usage, at) VALUES (?,?,?,?) "
                "ON CONFLICT (cause, step) DO UPDATE SET usage=excluded.usage, at=excluded.at",
                (cause, step, usage.model_dump_json(), self._clock()),
            )

    def calls_of(self, causes: Iterable[str], step: str = "propagate") -> dict[str, CallUsage]:
        """The recorded usage of ``step`` per cause (causes without a record are absent)."""
        wanted = sorted(set(causes))
        out: dict[str, CallUsage] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            try:
                rows = self._read(
                    f"SELECT cause, usage FROM model_calls WHERE step=? AND cause IN ({marks})",
                    (step, *chunk),
                )
            except sqlite3.OperationalError:  # an older log opened read-only: no table yet
                return out
            for row in rows:
                out[row["cause"]] = CallUsage.model_validate(json.loads(row["usage"]))
        return out

    def writer_of(self, cause: str) -> str:
        """Who wrote the memory versions caused by ``cause`` (see :func:`writer_label`)."""
        if not cause or cause in ("warmup", "index") or cause.startswith(("rollback:", "delete:")):
            return cause.split(":", 1)[0] if cause else "-"
        usage = self.calls_of([cause]).get(cause)
        return writer_label(usage) if usage is not None else "not recorded"
