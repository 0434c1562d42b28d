"""Chaos: deleting a user while the LangGraph server serves them, then looking for any trace.

A dataset whose user 3 has an id carrying a marker (with spaces and both quotes) is indexed; the
server records feedback for that user (with the marker in the request), holds a chat thread of
theirs with the marker in the messages, and keeps serving. `memrec privacy delete-user --server`
runs the deletion inside the server (the writer of the store) and deletes the user's threads.
Then: the marker is counted in every file of the store folder and of the server's own state folder
(``.langgraph_api``), and the server is asked for the user's threads and a recommendation.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from langgraph_sdk import get_client

from bench.chaos_common import Row, account, memrec
from bench.chaos_server import DevServer
from dataio.paths import store_dir

MARKER = "MRK7f3aQ"
MARKED_USER = f"carol {MARKER} 'o\"q"


def write_marked_dataset(folder: Path) -> str:
    """A generic-format dataset (60 users, 120 items) whose user 3 carries the marker."""
    import csv
    import random

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(3)
    with open(folder / "items.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item_id", "title", "genres"])
        for i in range(120):
            writer.writerow([f"i{i}", f"Film {i}", "|".join(rng.sample(["a", "b", "c", "d"], 2))])
    with open(folder / "interactions.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "item_id", "timestamp"])
        for u in range(60):
            user = MARKED_USER if u == 3 else f"u{u}"
            for ts, i in enumerate(rng.sample(range(120), 12)):
                writer.writerow([user, f"i{i}", 1_000_000 + 100 * u + ts])
    return str(folder)


def count_marker(root: Path) -> dict[str, int]:
    """Files under ``root`` that contain the marker (relative path -> occurrences)."""
    raw = MARKER.encode()
    found = {}
    for path in root.rglob("*"):
        if path.is_file():
            n = path.read_bytes().count(raw)
            if n:
                found[str(path.relative_to(root))] = n
    return found


async def _use_server(url: str, dataset: str) -> None:
    client = get_client(url=url)
    context = {"dataset": dataset}
    for n, item in enumerate(("i1", "i2", "i5")):
        await client.runs.wait(
            None,
            "recommend",
            input={
                "user_id": MARKED_USER,
                "request": f"like {MARKER} please",
                "feedback": [{"item_id": item, "kind": "positive"}],
                "idempotency_key": f"marker-{n}",
            },
            context=context,
        )
    thread = await client.threads.create(metadata={"user_id": MARKED_USER})
    await client.runs.wait(
        thread["thread_id"],
        "chat",
        input={"user_id": MARKED_USER, "messages": [{"role": "user", "content": f"hi {MARKER}"}]},
        context=context,
    )


async def _after(url: str, dataset: str) -> list[str]:
    client = get_client(url=url)
    problems = []
    threads = await client.threads.search(metadata={"user_id": MARKED_USER}, limit=10)
    threads += await client.threads.search(values={"user_id": MARKED_USER}, limit=10)
    if threads:
        problems.append(f"{len(threads)} thread(s) of the user still served")
    out: Any = await client.runs.wait(  # the server no longer knows them: a cold start
        None,
        "recommend",
        input={"user_id": MARKED_USER, "candidates": ["i1", "i2", "i3"]},
        context={"dataset": dataset},
    )
    answer = {k: out.get(k) for k in ("facets", "neighbours", "ranking")}  # not the echoed id
    if MARKER in str(answer):
        problems.append("a recommendation still uses the user's data")
    return problems


def deletion(scratch: Path) -> Row:
    """Delete the marked user through the running server; count the marker afterwards."""
    row = Row("delete a user while the server serves them")
    dataset = write_marked_dataset(scratch / "marked-data")
    home = scratch / "marked-home"
    built = memrec(["index", "-d", dataset, "--home", str(home)], timeout=600)
    if built.returncode != 0:
        row.notes.append(f"index failed: {built.stderr[-200:]}")
        return row
    server = DevServer(home, scratch / "marked-server", {"MEMREC_CHECKPOINT_SWEEP_S": "2"})
    server.start()
    try:
        asyncio.run(_use_server(server.url, dataset))
        time.sleep(3)  # let the background propagations run
        row.sent = 3
        before = sum(count_marker(store_dir(dataset, home)).values())
        args = ["privacy", "delete-user", "-d", dataset, "--home", str(home)]
        deleted = memrec([*args, "--user", MARKED_USER, "--server", server.url], timeout=600)
        if deleted.returncode != 0:
            row.notes.append(f"delete-user exit {deleted.returncode}: {deleted.stderr[-300:]}")
        row.notes += asyncio.run(_after(server.url, dataset))
        time.sleep(5)  # the dev server's sweep drops what its runtime leaves of deleted threads
    finally:
        server.stop()  # a clean stop: the server writes its state folder out
    hits = count_marker(store_dir(dataset, home)) | {
        f"server:{k}": v for k, v in count_marker(server.workdir / ".langgraph_api").items()
    }
    row.marker_hits = sum(hits.values())
    row.notes.append(f"marker occurrences before: {before}; after: {hits or 'none'}")
    return account(row, dataset, home)
