"""What the chaos scenarios share: scratch copies of a store, the `memrec` CLI, store accounting."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.paths import REPO
from dataio.paths import store_dir
from services.repair import diagnose

LOCKED_MESSAGE = "being written by another process"
# Doctor codes that mean a memory write was lost or left unaudited.
LOST_CODES = ("version_mismatch", "unaudited_write", "version_collision", "vector_mismatch")


@dataclass
class Row:
    """One line of the chaos table."""

    scenario: str
    sent: int = 0
    recorded: int = 0
    propagated_once: int = 0
    duplicates: int = 0
    writes_lost: int = 0
    stuck_jobs: int = 0
    refused_clearly: int = 0
    marker_hits: int | None = None
    doctor: str = "-"
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The row for the table and the JSON."""
        return {
            "scenario": self.scenario,
            "sent": self.sent,
            "recorded": self.recorded,
            "propagated exactly once": self.propagated_once,
            "duplicates": self.duplicates,
            "memory writes lost": self.writes_lost,
            "stuck jobs": self.stuck_jobs,
            "refused clearly": self.refused_clearly,
            "marker hits": "-" if self.marker_hits is None else self.marker_hits,
            "doctor": self.doctor,
            "notes": "; ".join(self.notes),
        }


def copy_home(base_home: Path, target: Path) -> Path:
    """A scratch copy of a home folder (stores included, writer locks not)."""
    shutil.copytree(base_home, target, ignore=shutil.ignore_patterns("writer.lock"))
    return target


def memrec_executable() -> str:
    """The `memrec` script of this environment."""
    local = Path(sys.executable).with_name("memrec")
    return str(local) if local.exists() else shutil.which("memrec") or "memrec"


def memrec(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the `memrec` command line in a subprocess (as a user would)."""
    full = {**os.environ, "LANGSMITH_TRACING": "false", **(env or {})}
    return subprocess.run(
        [memrec_executable(), *args],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn_memrec(args: list[str], *, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `memrec ...` without waiting (kill loops, concurrent writers)."""
    full = {**os.environ, "LANGSMITH_TRACING": "false", **(env or {})}
    return subprocess.Popen(
        [memrec_executable(), *args],
        cwd=REPO,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def account(row: Row, dataset: str, home: Path) -> Row:
    """Fill a row from the store: recorded, propagated once, duplicates, lost, stuck, doctor."""
    import sqlite3

    events = store_dir(dataset, home) / "events.sqlite"
    conn = sqlite3.connect(f"file:{events}?mode=ro", uri=True, timeout=30)
    try:
        row.recorded = conn.execute("SELECT COUNT(*) FROM interactions").fetchone()[0]
        row.duplicates = conn.execute(
            "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM interactions "
            "GROUP BY user_id, item_id, kind HAVING n > 1)"
        ).fetchone()[0]
        user_writes = dict(
            conn.execute(
                "SELECT i.interaction_id, COUNT(a.id) FROM interactions i LEFT JOIN audit a "
                "ON a.cause=i.interaction_id AND a.kind='user' AND a.entity_id=i.user_id "
                "GROUP BY i.interaction_id"
            ).fetchall()
        )
        row.propagated_once = sum(1 for n in user_writes.values() if n == 1)
        twice = sum(1 for n in user_writes.values() if n > 1)
        row.stuck_jobs = conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'running')"
        ).fetchone()[0]
    finally:
        conn.close()
    report = diagnose(dataset, home)
    row.writes_lost = sum(report.counts.get(f"problem:{code}", 0) for code in LOST_CODES)
    applied_twice = report.counts.get("problem:applied_twice", 0)
    row.duplicates += applied_twice + twice
    row.doctor = "consistent" if report.ok else ", ".join(sorted(report.codes()))
    return row
