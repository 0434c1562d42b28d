"""Crash safety: SIGKILL at random points of indexing and of propagation, repeated.

Indexing: a zygote process (this module run as ``python -m tests.test_crash_safety <data> <home>``)
imports once and forks one ``build_index`` per command; the test kills each at a random point
(after a random number of progress lines, plus a random delay), then lets one run finish: the index
is complete and `doctor` finds nothing. Propagation: the forking worker host of
tests/support/kill_worker.py drains recorded interactions and is killed repeatedly; after a final
drain nothing is lost, nothing applied twice, and `doctor` reports no problem. (Evaluation writes
nothing durable: it ranks in an in-memory clone of the store.)
"""

from __future__ import annotations

import csv
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

from memory_store.events import EventLog
from memory_store.workspace import open_workspace
from services.doctor import check_workspace
from tests.support.fixtures import base_workspace, copy_store
from tests.support.line_process import LineProcess
from tests.test_worker import Zygote

# SIGKILL loops against subprocesses.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
N_USERS, N_ITEMS, PER_USER = 300, 400, 12


def _write_dataset(folder: Path) -> None:
    folder.mkdir(parents=True)
    rng = random.Random(3)
    with open(folder / "items.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item_id", "title", "description", "genres"])
        for i in range(N_ITEMS):
            genres = "|".join(rng.sample(["a", "b", "c", "d", "e", "f"], 2))
            writer.writerow([f"i{i}", f"Title {i}", f"Description of item {i}.", genres])
    with open(folder / "interactions.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "item_id", "timestamp"])
        for u in range(N_USERS):
            for ts, i in enumerate(rng.sample(range(N_ITEMS), PER_USER)):
                writer.writerow([f"u{u}", f"i{i}", 1_000_000 + ts])


class IndexZygote(LineProcess):
    """Drives the indexing zygote below: ``run`` forks a build, ``reap`` collects it."""

    def __init__(self, data: Path, home: Path) -> None:
        self.last_progress = "start"
        super().__init__("tests.test_crash_safety", str(data), str(home))
        self.expect("zygote-ready", 120)

    def on_line(self, line: str) -> None:
        """Remember how far the current build got."""
        if line.startswith("progress"):
            self.last_progress = line
        elif line.startswith("pid"):
            self.last_progress = "start"


def _build(zygote: IndexZygote, home: Path) -> None:
    zygote.send(f"run {home}")
    pid = int(zygote.expect("pid", 30).split()[1])
    zygote.send(f"reap {pid}")
    assert int(zygote.expect(f"reaped {pid}", 60).split()[2]) == 0


@pytest.mark.timeout(120)
def test_index_survives_sigkill_at_random_points(tmp_path: Path) -> None:
    data, home = tmp_path / "crash-data", tmp_path / "home"
    _write_dataset(data)
    rng = random.Random(11)
    zygote = IndexZygote(data, home)
    killed_at: list[str] = []
    try:
        started = time.monotonic()
        _build(zygote, tmp_path / "timing-home")  # how long one uninterrupted build takes
        full_s = time.monotonic() - started
        while len(killed_at) < 6:
            zygote.send("run")
            pid = int(zygote.expect("pid", 30).split()[1])
            time.sleep(rng.uniform(0.0, full_s))
            os.kill(pid, signal.SIGKILL)
            zygote.send(f"reap {pid}")
            status = int(zygote.expect(f"reaped {pid}", 30).split()[2])
            if status:  # the build was killed (not already finished)
                killed_at.append(zygote.last_progress)
        zygote.send("run")
        pid = int(zygote.expect("pid", 30).split()[1])
        zygote.send(f"reap {pid}")
        assert int(zygote.expect(f"reaped {pid}", 60).split()[2]) == 0, killed_at
    finally:
        zygote.close()
    sys.stderr.write(f"\nindex kills at: {killed_at}\n")
    ws = open_workspace(str(data), home=home)
    try:
        report = check_workspace(ws)
        assert report.ok, (report.problems, killed_at)
        assert report.counts["memories_user"] == N_USERS
        assert report.counts["memories_item"] == N_ITEMS
        assert ws.graph.n_interactions == len(ws.split.train)
    finally:
        ws.events.close()


@pytest.mark.timeout(120)
def test_propagation_survives_sigkill_and_doctor_agrees(tmp_path: Path) -> None:
    home = copy_store(tmp_path)
    events_path = home / "stores" / "ml-100k" / "events.sqlite"
    base = base_workspace()
    plan = []
    for user in map(str, range(20, 24)):
        seen = set(base.graph.user_items(base.user_code(user)).tolist())
        free = [i for i in range(500, base.dataset.n_items) if i not in seen][:3]
        plan += [(user, base.dataset.item_ids[i]) for i in free]
    with EventLog(events_path) as log:
        recorded = [log.record_interaction(u, i) for u, i in plan]
    rng = random.Random(99)
    zygote = Zygote(home, write_sleep_s=0.01)
    try:
        for _ in range(6):
            pid = zygote.spawn("forever")
            time.sleep(rng.uniform(0.05, 0.3))
            os.kill(pid, signal.SIGKILL)
            assert zygote.reap(pid) == signal.SIGKILL
        pid = zygote.spawn("until-empty")
        assert zygote.reap(pid, timeout_s=90) == 0
    finally:
        zygote.close()
    ws = open_workspace("ml-100k", home=home)
    try:
        assert ws.events.interactions() == recorded  # nothing lost
        report = check_workspace(ws)
        assert report.ok, report.problems  # no applied_twice, no unaudited write, no stuck job
        assert report.counts["jobs_done"] == len(recorded)
        for event in recorded:
            assert ws.events.applied(event.interaction_id, "user", event.user_id)
            assert ws.graph.has(ws.user_code(event.user_id), ws.item_code(event.item_id))
    finally:
        ws.events.close()


def _zygote(data: str, home: str) -> None:
    """Fork one ``build_index`` per ``run`` line; ``reap <pid>`` waits for it."""
    from services.index import build_index

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    say("zygote-ready")
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "run":
            target = arg or home
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    build_index(
                        data, home=target, progress=lambda s, d, t: say(f"progress {s} {d}/{t}")
                    )
                    code = 0
                finally:
                    sys.stdout.flush()
                    os._exit(code)
            say(f"pid {pid}")
        elif cmd == "reap":
            _, status = os.waitpid(int(arg), 0)
            say(f"reaped {arg} {status}")
        elif cmd == "quit":
            return


if __name__ == "__main__":
    _zygote(sys.argv[1], sys.argv[2])
