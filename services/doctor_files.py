"""`memrec doctor`'s checks of the store folder, run before anything is opened.

A store whose files are damaged cannot be opened, so these checks read the manifest, the file
checksums and SQLite's own integrity check directly. Each finding names the file and the command
that repairs it (``services/repair.py``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dataio.files import leftover_temporaries
from memory_store.manifest import (
    CHROMA_FILE,
    EVENTS_FILE,
    DamagedStore,
    damaged_files,
    read_manifest,
)
from memory_store.writer_lock import probe
from services.doctor import REPAIR, DoctorReport

# Findings that keep the store from opening: the workspace checks are skipped until repaired.
BLOCKING = frozenset(
    {
        "damaged_file",
        "missing_event_log",
        "damaged_event_log",
        "missing_memories",
        "damaged_memories",
    }
)


def sqlite_problem(path: Path) -> str | None:
    """What SQLite's quick check finds wrong with a database file (read-only; None when sound)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
        try:
            found = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        return str(err)
    return None if found == ["ok"] else "; ".join(found[:3])


def check_files(directory: Path, report: DoctorReport, *, chroma_embedded: bool = True) -> None:
    """Add the findings about the store's files to ``report``."""
    try:
        manifest = read_manifest(directory, report.dataset)
    except DamagedStore as err:
        report.add("damaged_file", f"{err.path}: {err.reason}: {REPAIR} re-indexes")
        manifest = None
    else:
        if manifest is None:
            report.add(
                "no_manifest",
                f"{directory} was indexed before store manifests: run `memrec index` (or "
                f"{REPAIR}) to write one, so a damaged file can be told from a new store",
            )
    if manifest is not None:
        for step, rel, problem in damaged_files(directory, manifest, deep=True):
            report.add(
                "damaged_file",
                f"{directory / rel} ({step} step): {problem}: {REPAIR} rebuilds it",
            )
    _check_databases(directory, report, manifest is not None and manifest.done("events"))
    if chroma_embedded and manifest is not None:
        memories = manifest.steps.get("memories")
        if memories is not None and memories.info.get("chroma") == "embedded":
            _check_chroma(directory, report)
    for temporary in leftover_temporaries(directory):
        report.add("leftover_temp", f"{temporary}: left by an interrupted write; {REPAIR}")
    holder = probe(directory)
    if holder:
        report.notes.append(
            f"writer: pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command')})"
        )


def _check_databases(directory: Path, report: DoctorReport, events_expected: bool) -> None:
    events = directory / EVENTS_FILE
    if not events.exists():
        if events_expected:
            report.add(
                "missing_event_log",
                f"{events} is missing (every interaction recorded since indexing was in it): "
                f"restore it from a backup, or accept the loss with "
                f"`memrec doctor --repair --new-event-log`",
            )
        return
    problem = sqlite_problem(events)
    if problem is not None:
        report.add(
            "damaged_event_log",
            f"{events}: {problem}: {REPAIR} salvages its readable rows into a new log",
        )


def _check_chroma(directory: Path, report: DoctorReport) -> None:
    database = directory / CHROMA_FILE
    if not database.exists():
        report.add(
            "missing_memories",
            f"{database} is missing: {REPAIR} rebuilds the memories from the catalog and the "
            "audit log",
        )
        return
    problem = sqlite_problem(database)
    if problem is not None:
        report.add(
            "damaged_memories",
            f"{database}: {problem}: {REPAIR} sets it aside and rebuilds the memories from the "
            "catalog and the audit log",
        )
