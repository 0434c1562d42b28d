"""Audit retention: keep the last N versions of every memory and everything younger than T.

The audit log holds the full previous and new text of every memory write (about 11 KB per
interaction), so without a policy it grows without bound. Older rows keep their cause, version and
time (writes stay idempotent per cause, ``doctor`` still sees every job's writes) but lose their
texts: ``memory history`` shows them as pruned and ``memory rollback`` refuses them. The worker
applies the policy periodically (``services/worker.py``); ``memrec doctor --compact`` applies it
and vacuums the file so the disk space is returned.

Configuration: ``MEMREC_AUDIT_KEEP_VERSIONS`` (default 20) and ``MEMREC_AUDIT_KEEP_DAYS``
(default 30). A row is pruned only when it is beyond both limits.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from memory_store.audit import AuditLog

logger = logging.getLogger(__name__)

VERSIONS_ENV = "MEMREC_AUDIT_KEEP_VERSIONS"
DAYS_ENV = "MEMREC_AUDIT_KEEP_DAYS"
PRUNED = ""  # the new_text of a pruned row (its previous_text is NULL)


@dataclass(frozen=True)
class RetentionPolicy:
    """How much audit text to keep."""

    keep_versions: int = 20
    keep_days: float = 30.0

    def __post_init__(self) -> None:
        if self.keep_versions < 1 or self.keep_days < 0:
            raise ValueError(
                f"audit retention: keep_versions must be >= 1 and keep_days >= 0; got "
                f"{self.keep_versions} and {self.keep_days} ({VERSIONS_ENV}, {DAYS_ENV})"
            )

    @classmethod
    def from_env(cls) -> RetentionPolicy:
        """The policy of ``MEMREC_AUDIT_KEEP_VERSIONS`` / ``MEMREC_AUDIT_KEEP_DAYS``."""
        versions, days = os.environ.get(VERSIONS_ENV), os.environ.get(DAYS_ENV)
        try:
            return cls(
                keep_versions=int(versions) if versions else cls.keep_versions,
                keep_days=float(days) if days else cls.keep_days,
            )
        except ValueError as err:
            raise ValueError(
                f"audit retention: {VERSIONS_ENV}={versions!r} / {DAYS_ENV}={days!r}: {err}"
            ) from err


def apply_retention(
    log: AuditLog, policy: RetentionPolicy, *, now: float | None = None, batch: int = 5000
) -> int:
    """Prune the texts of audit rows beyond the policy; returns how many rows were pruned."""
    before = (time.time() if now is None else now) - policy.keep_days * 86400.0
    pruned = 0
    while True:
        n = log.prune_texts(policy.keep_versions, before, limit=batch)
        pruned += n
        if n < batch:
            break
    if pruned:
        logger.info("audit retention pruned the texts of %d rows", pruned)
    return pruned


def is_pruned(previous_text: str | None, new_text: str) -> bool:
    """Whether an audit row's texts were pruned by retention."""
    return previous_text is None and new_text == PRUNED
