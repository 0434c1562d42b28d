"""Chaos: the LangGraph server records feedback, CLI writers try the same store, the server dies.

Recommend requests with one feedback each (and an ``idempotency_key``, so a client retry is the
same request) go to the dev server at a small concurrency; meanwhile `memrec feedback` processes
try to write the same embedded store (the server holds its writer lock: they must be refused
clearly, naming it). Half-way the server is SIGKILLed and restarted; the requests that failed are
sent again with the same key. Then the job queue must drain (nothing pending or running).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from langgraph_sdk import get_client

from bench.chaos_common import LOCKED_MESSAGE, Row, account, spawn_memrec
from bench.chaos_server import DevServer
from bench.chaos_writers import unseen_pairs
from bench.common import BenchOptions
from dataio.paths import store_dir

DRAIN_S = 180.0


async def _send(url: str, dataset: str, batch: list[tuple[int, str, str]]) -> list[int]:
    """Send feedback requests (4 in flight); the numbers of those that failed."""
    client = get_client(url=url, timeout=60)
    gate = asyncio.Semaphore(4)
    failed: list[int] = []

    async def one(n: int, user: str, item: str) -> None:
        async with gate:
            try:
                await client.runs.wait(
                    None,
                    "recommend",
                    input={
                        "user_id": user,
                        "feedback": [{"item_id": item, "kind": "positive"}],
                        "idempotency_key": f"chaos-server-{n}",
                    },
                    context={"dataset": dataset},
                )
            except Exception:  # noqa: BLE001 - the server was killed under it: retried later
                failed.append(n)

    await asyncio.gather(*(one(*b) for b in batch))
    return failed


def _busy(events: Path) -> int:
    conn = sqlite3.connect(f"file:{events}?mode=ro", uri=True, timeout=30)
    try:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'running')"
            ).fetchone()[0]
        )
    finally:
        conn.close()


def _cli_writers(dataset: str, home: Path, pairs: list[tuple[str, str]]) -> list[Any]:
    return [
        spawn_memrec(
            ["feedback", "-d", dataset, "--home", str(home), "--user", u, "--item", i],
            env={"MEMREC_LOCK_WAIT_S": "2"},
        )
        for u, i in pairs
    ]


def server_and_cli(dataset: str, home: Path, opts: BenchOptions) -> Row:
    """The scenario of the module docstring."""
    row = Row("server + CLI writers; server SIGKILLed, restarted")
    n = opts.size(60, 30, 8)
    pairs = unseen_pairs(dataset, home, n + 3, seed=21)
    plan = [(k, u, i) for k, (u, i) in enumerate(pairs[:n])]
    server = DevServer(home, home.parent / f"{home.name}-server")
    server.start()
    try:
        first = asyncio.run(_send(server.url, dataset, plan[: n // 2]))
        writers = _cli_writers(dataset, home, pairs[n:])
        rest = plan[n // 2 :]
        loop_task = asyncio.run(_send_and_kill(server, dataset, rest))
        retry = [p for p in plan if p[0] in set(first) | set(loop_task)]
        server.restart()
        still = asyncio.run(_send(server.url, dataset, retry))
        for proc in writers:
            _, err = proc.communicate(timeout=120)
            row.refused_clearly += int(proc.returncode == 2 and LOCKED_MESSAGE in err)
        row.sent = n + len(writers)
        row.notes.append(
            f"{len(first) + len(loop_task)} requests failed with the kill and were retried "
            f"({len(still)} failed again); {len(writers)} CLI feedbacks tried meanwhile"
        )
        events = store_dir(dataset, home) / "events.sqlite"
        deadline = time.monotonic() + DRAIN_S
        while _busy(events) and time.monotonic() < deadline:
            time.sleep(2)
    finally:
        server.stop()
    return account(row, dataset, home)


async def _send_and_kill(
    server: DevServer, dataset: str, batch: list[tuple[int, str, str]]
) -> list[int]:
    """Send ``batch`` and SIGKILL the server while it is busy with it."""
    sending = asyncio.create_task(_send(server.url, dataset, batch))
    await asyncio.sleep(2.0)
    server.kill()
    return await sending
