"""Chaos: several writer processes, and SIGKILLs during `memrec index` and `memrec worker`.

- ``cli_writers``: 4 loops of `memrec feedback` processes for a bounded time, each retrying a
  refused feedback with the same ``--id`` (as a client would). One process writes an embedded
  store at a time; the others wait for the writer lock and are refused clearly after
  ``MEMREC_LOCK_WAIT_S``. Nothing may be lost or applied twice.
- ``long_writers``: 4 `memrec worker` processes started together: one runs, three are refused.
- ``index_kills``: `memrec index` SIGKILLed at random points, then run to completion.
- ``worker_kills``: `memrec worker` SIGKILLed at random points over recorded interactions, then
  `memrec doctor --repair` once the leases lapsed.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

from bench.chaos_common import LOCKED_MESSAGE, Row, account, memrec, spawn_memrec
from dataio.paths import store_dir
from memory_store.events import EventLog
from memory_store.workspace import open_workspace


def unseen_pairs(dataset: str, home: Path, n: int, seed: int = 7) -> list[tuple[str, str]]:
    """``n`` (user, item) pairs the users have not interacted with (read-only)."""
    ws = open_workspace(dataset, home=home, readonly=True)
    try:
        rng = random.Random(seed)
        pairs: list[tuple[str, str]] = []
        users = list(ws.dataset.user_ids)
        rng.shuffle(users)
        for user in users:
            seen = set(ws.graph.user_items(ws.user_code(user)).tolist())
            free = [i for i in range(ws.dataset.n_items) if i not in seen]
            pairs.append((user, ws.dataset.item_ids[rng.choice(free)]))
            if len(pairs) == n:
                break
        return pairs
    finally:
        ws.events.close()


def cli_writers(dataset: str, home: Path, seconds: float, loops: int = 4) -> Row:
    """``loops`` concurrent loops of `memrec feedback` processes for ``seconds``."""
    row = Row(f"{loops} CLI writer processes, {seconds:.0f} s")
    plan = unseen_pairs(dataset, home, 400)
    queues = [plan[k::loops] for k in range(loops)]
    env = {"MEMREC_LOCK_WAIT_S": "8"}
    running: dict[int, tuple[object, tuple[str, str], str]] = {}
    deadline = time.monotonic() + seconds
    sent_ids: set[str] = set()
    attempts = 0
    while time.monotonic() < deadline or running:
        for k in range(loops):
            if k in running or time.monotonic() >= deadline or not queues[k]:
                continue
            user, item = queues[k][0]
            key = f"chaos-{k}-{user}-{item}"
            args = ["feedback", "-d", dataset, "--home", str(home), "--user", user, "--item", item]
            proc = spawn_memrec([*args, "--idempotency-key", key], env=env)
            running[k] = (proc, (user, item), key)
            attempts += 1
        time.sleep(0.2)
        for k, (proc, _pair, key) in list(running.items()):
            if proc.poll() is None:  # type: ignore[attr-defined]
                continue
            out, err = proc.communicate()  # type: ignore[attr-defined]
            del running[k]
            if proc.returncode == 0 and "recorded interaction" in out:  # type: ignore[attr-defined]
                sent_ids.add(key)
                queues[k].pop(0)
            elif LOCKED_MESSAGE in err:
                row.refused_clearly += 1  # retried with the same id next round
            else:
                row.notes.append(f"exit {proc.returncode}: {err.strip()[-160:]}")  # type: ignore[attr-defined]
    row.sent = attempts
    account(row, dataset, home)
    row.notes.append(f"{len(sent_ids)} feedbacks accepted, {row.refused_clearly} refusals retried")
    return row


def long_writers(dataset: str, home: Path, n: int = 4) -> Row:
    """``n`` `memrec worker` processes at once: one writes, the others are refused clearly."""
    row = Row(f"{n} long-lived writers (memrec worker)")
    env = {"MEMREC_LOCK_WAIT_S": "3"}
    procs = [
        spawn_memrec(["worker", "-d", dataset, "--home", str(home)], env=env) for _ in range(n)
    ]
    deadline = time.monotonic() + 120  # start-up of n processes on a busy machine
    while sum(p.poll() is not None for p in procs) < n - 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(5)  # a writer refused late would exit within its lock wait
    alive = [p for p in procs if p.poll() is None]
    for p in procs:
        if p.poll() is not None:
            _, err = p.communicate()
            row.refused_clearly += int(LOCKED_MESSAGE in err and "pid" in err)
    for p in alive:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=20)
    row.sent = n
    row.notes.append(f"{len(alive)} kept writing")
    return account(row, dataset, home)


def index_kills(dataset: str, home: Path, kills: int, seed: int = 11) -> Row:
    """`memrec index` SIGKILLed ``kills`` times at random points, then completed."""
    row = Row(f"memrec index SIGKILLed x{kills}")
    args = ["index", "-d", dataset, "--home", str(home)]
    timing = home.parent / f"{home.name}-timing"
    started = time.monotonic()
    timed = memrec(["index", "-d", dataset, "--home", str(timing)], timeout=900)
    if timed.returncode != 0:
        raise RuntimeError(f"memrec index {dataset} failed: {timed.stderr[-500:]}")
    full_s = time.monotonic() - started
    rng = random.Random(seed)
    done = 0
    while done < kills:
        proc = spawn_memrec(args)
        time.sleep(rng.uniform(0.5, full_s))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            done += 1
        proc.wait(timeout=30)
    final = memrec(args, timeout=900)
    row.notes.append(
        f"final index exit {final.returncode} after {kills} kills ({full_s:.0f} s run)"
    )
    return account(row, dataset, home)


def worker_kills(dataset: str, home: Path, interactions: int, kills: int, seed: int = 5) -> Row:
    """`memrec worker` SIGKILLed at random points, then `doctor --repair` after the leases."""
    row = Row(f"memrec worker SIGKILLed x{kills}")
    pairs = unseen_pairs(dataset, home, interactions, seed)
    with EventLog(store_dir(dataset, home) / "events.sqlite") as log:
        for user, item in pairs:
            log.record_interaction(user, item)
    row.sent = len(pairs)
    rng = random.Random(seed)
    for _ in range(kills):
        proc = spawn_memrec(["worker", "-d", dataset, "--home", str(home)])
        time.sleep(rng.uniform(3.0, 8.0))  # start-up, then a few jobs
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    time.sleep(61)  # the killed workers' leases (60 s) lapse
    repaired = memrec(["doctor", "--repair", "-d", dataset, "--home", str(home)], timeout=900)
    row.notes.append(f"doctor --repair exit {repaired.returncode}")
    return account(row, dataset, home)
