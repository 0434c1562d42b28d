"""Chaos: damaged or missing store files, stuck jobs and bad writes, and a full disk.

``damaged_files``: each fault is injected into its own copy of the store; `memrec doctor` must
flag it by its code, a command that reads the store must name the file and the repair command
(for the file faults), and `memrec doctor --repair` must leave the store consistent.

``full_disk``: the store is copied into a small tmpfs mounted here (root only; the disk is filled
with a filler file). `memrec feedback` must not print "recorded" and must exit with a clear error
naming the file; after space is freed, the same `--id` records the interaction once. `memrec
index` into a full disk fails clearly and, once space is freed, completes and leaves a consistent
store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.chaos_common import Row, account, copy_home, memrec
from dataio.paths import store_dir
from memory_store.events import EventLog
from memory_store.memories import MemoryRecord
from memory_store.workspace import open_workspace
from memory_store.writer_lock import writer_lock
from memory_store.writes import apply_write


def _store(dataset: str, home: Path) -> Path:
    return store_dir(dataset, home)


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = len(data) // 3
    data[start : start + 4096] = b"\xff" * min(4096, len(data) - start)
    path.write_bytes(bytes(data))


def _with_ws(dataset: str, home: Path, act: Callable[[Any], None]) -> None:
    ws = open_workspace(dataset, home=home)
    try:
        act(ws)
    finally:
        ws.events.close()
        writer_lock(ws.directory).release()  # this process is done writing: `memrec` may


def _collision(ws: Any) -> None:
    user = ws.dataset.user_ids[5]
    rec = apply_write(ws.memories, ws.events, "user", user, "audited text", cause="chaos")
    ws.memories.inner.restore(
        [MemoryRecord(**{**rec.model_dump(), "text": "another writer's text"})]
    )


def _stale_vector(ws: Any) -> None:
    item = ws.dataset.item_ids[3]
    text = ws.memories.get("item", item).text
    dim = len(ws.memories.embeddings("item", [item])[item])
    ws.memories.inner._collections["item"].upsert(
        ids=[item], documents=[text], embeddings=[[1.0] + [0.0] * (dim - 1)]
    )


def _unaudited(ws: Any) -> None:
    user = ws.dataset.user_ids[6]
    rec = ws.memories.get("user", user)
    ws.memories.put("user", user, "no audit row", expected_version=rec.version, source="chaos")


def _stuck(folder: Path) -> None:
    now = time.time()
    with EventLog(folder / "events.sqlite", clock=lambda: now - 3600) as log:
        log.record_interaction(_first_user(folder), _first_item(folder))


def _lapsed(folder: Path) -> None:
    with EventLog(folder / "events.sqlite") as log:
        log.record_interaction(_first_user(folder), _first_item(folder, 1))
        log.claim_job("killed-server", lease_s=0.01)
    time.sleep(0.05)


def _first_user(folder: Path) -> str:
    from memory_store.catalog import load_catalog

    return load_catalog(folder)[0].user_ids[10]


def _first_item(folder: Path, k: int = 0) -> str:
    from memory_store.catalog import load_catalog

    ds, _ = load_catalog(folder)
    return ds.item_ids[-1 - k]


# fault -> (what it does to a store folder / workspace, the doctor code, a file it damages)
FAULTS: dict[str, tuple[Callable[[str, Path, Path], None], str, str | None]] = {
    "graph file deleted": (
        lambda d, h, f: (f / "graph" / "attributes.txt").unlink(),
        "damaged_file",
        "graph/attributes.txt",
    ),
    "candidate file truncated": (
        lambda d, h, f: (f / "candidates-test-n10-s0.json").write_text("{"),
        "damaged_file",
        "candidates-test-n10-s0.json",
    ),
    "rules file corrupt": (
        lambda d, h, f: (f / "rules" / "generated.json").write_text("[1, 2"),
        "damaged_file",
        "rules/generated.json",
    ),
    "catalog corrupt": (lambda d, h, f: _garble(f / "catalog.pkl"), "damaged_file", "catalog.pkl"),
    "event log deleted": (
        lambda d, h, f: (f / "events.sqlite").unlink(),
        "missing_event_log",
        "events.sqlite",
    ),
    "event log corrupt": (
        lambda d, h, f: _garble(f / "events.sqlite"),
        "damaged_event_log",
        "events.sqlite",
    ),
    "chroma deleted": (
        lambda d, h, f: shutil.rmtree(f / "chroma"),
        "missing_memories",
        "chroma",
    ),
    "chroma corrupt": (
        lambda d, h, f: _garble(f / "chroma" / "chroma.sqlite3"),
        "damaged_memories",
        "chroma.sqlite3",
    ),
    "interrupted write (temp file)": (
        lambda d, h, f: (f / "graph" / ".ui_ts.npz.4242.tmp").write_bytes(b"half"),
        "leftover_temp",
        None,
    ),
    "job of a killed server (lapsed lease)": (lambda d, h, f: _lapsed(f), "expired_lease", None),
    "job nobody runs (pending 1 h)": (lambda d, h, f: _stuck(f), "stuck_pending", None),
    "version collision": (lambda d, h, f: _with_ws(d, h, _collision), "version_collision", None),
    "text with another text's vector": (
        lambda d, h, f: _with_ws(d, h, _stale_vector),
        "vector_mismatch",
        None,
    ),
    "unaudited write": (lambda d, h, f: _with_ws(d, h, _unaudited), "unaudited_write", None),
}


def damaged_files(dataset: str, base_home: Path, scratch: Path) -> list[dict[str, Any]]:
    """One row per fault: flagged by doctor, error names the file, repaired."""
    rows = []
    for n, (fault, (inject, code, damaged)) in enumerate(FAULTS.items()):
        home = copy_home(base_home, scratch / f"fault-{n}")
        folder = _store(dataset, home)
        inject(dataset, home, folder)
        doctor = memrec(["doctor", "-d", dataset, "--home", str(home), "--json"])
        flagged = f'"code": "{code}"' in doctor.stdout
        named = None
        if damaged is not None:
            used = memrec(  # a read-only command that opens every part of the store
                ["recommend", "-d", dataset, "--home", str(home), "--user", "1"]
            )
            message = used.stdout + used.stderr
            named = (
                damaged in message and "doctor --repair" in message and "Traceback" not in message
            )
            if not named and used.returncode == 0:
                named = "ran"  # the command never read the damaged part
        extra = ["--new-event-log"] if code == "missing_event_log" else []
        repair = memrec(
            ["doctor", "--repair", "-d", dataset, "--home", str(home), *extra], timeout=900
        )
        rows.append(
            {
                "fault": fault,
                "doctor flag": code if flagged else f"MISSED ({code})",
                "error names file + repair": "-"
                if named is None
                else named
                if isinstance(named, str)
                else ("yes" if named else "NO"),
                "repaired": "yes" if repair.returncode == 0 else f"NO (exit {repair.returncode})",
            }
        )
        shutil.rmtree(home, ignore_errors=True)
    return rows


@contextmanager
def tmpfs(size_mb: int) -> Any:
    """A fresh tmpfs of ``size_mb`` MB (root only); unmounted afterwards."""
    mount = Path(tempfile.mkdtemp(prefix="memrec-full-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)


def _fill(mount: Path, leave_bytes: int = 0) -> Path:
    filler = mount / "filler"
    stat = os.statvfs(mount)
    free = stat.f_bavail * stat.f_frsize - leave_bytes
    with open(filler, "wb") as fh:
        try:
            fh.write(b"\0" * max(0, free))
        except OSError:
            pass
    return filler


def full_disk(dataset: str, base_home: Path, data_dir: Path) -> Row:
    """`memrec feedback` and `memrec index` on a full tmpfs, then after freeing space."""
    row = Row("full disk (tmpfs, root)")
    if os.geteuid() != 0:
        row.notes.append("skipped: mounting a tmpfs needs root")
        return row
    from bench.chaos_writers import unseen_pairs

    size = sum(p.stat().st_size for p in base_home.rglob("*") if p.is_file()) // 1_000_000 + 24
    ((user, item),) = unseen_pairs(dataset, base_home, 1)
    with tmpfs(size) as mount:
        home = copy_home(base_home, mount / "home")
        filler = _fill(mount)
        args = ["feedback", "-d", dataset, "--home", str(home), "--user", user, "--item", item]
        first = memrec([*args, "--idempotency-key", "full-disk-1"])
        printed = "recorded" in first.stdout
        row.sent = 2
        row.notes.append(
            f"on a full disk: exit {first.returncode}, printed 'recorded': {printed}, "
            f"says: {(first.stderr.strip().splitlines() or ['-'])[-1][:120]}"
        )
        filler.unlink()
        again = memrec([*args, "--idempotency-key", "full-disk-1"])
        row.notes.append(f"after freeing space: exit {again.returncode}")
        account(row, dataset, home)
    with tmpfs(size) as mount:
        home = mount / "index-home"
        _fill(mount, leave_bytes=150_000)  # room for the first steps only
        failed = memrec(["index", "-d", dataset, "--home", str(home), "--data-dir", str(data_dir)])
        (mount / "filler").unlink()
        done = memrec(["index", "-d", dataset, "--home", str(home), "--data-dir", str(data_dir)])
        doctor = memrec(["doctor", "-d", dataset, "--home", str(home)])
        row.notes.append(
            f"index on a full disk: exit {failed.returncode} "
            f"({(failed.stderr.strip().splitlines() or ['-'])[-1][:100]}); after freeing space: "
            f"exit {done.returncode}, doctor exit {doctor.returncode}"
        )
    return row
