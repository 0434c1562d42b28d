"""Hostile-client support: a token table, per-tenant HTTP clients, and a byte-level fingerprint.

The fingerprint of a user is everything the server keeps for them, read as bytes: their memory
rows in Chroma's SQLite file and its write log, their rows in the event log (interactions, jobs,
audit, privacy), and, through the admin token, the raw JSON of each of their threads (thread,
state with subgraphs, history, runs, crons), the ids of every thread they own, and their store
items and namespaces. Two fingerprints compare equal only if nothing of theirs changed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from memory_store.chroma_client import TEXT_KEY

ALICE, BOB, ADMIN = "tok-alice-0001-secret", "tok-bob-0002-secret", "tok-admin-0003-secret"
TOKENS: dict[str, Any] = {ALICE: "1", BOB: "2", ADMIN: {"identity": "ops", "admin": True}}
ALICE_ID, BOB_ID = "1", "2"
DATASET = "ml-100k"

Fingerprint = dict[str, Any]


def client(
    url: str, token: str | None = None, *, header: str = "bearer", **headers: str
) -> httpx.Client:
    """An HTTP client sending ``token`` as ``Authorization: Bearer`` or as ``x-api-key``."""
    if token and header == "bearer":
        headers["Authorization"] = f"Bearer {token}"
    elif token:
        headers["x-api-key"] = token
    return httpx.Client(base_url=url, headers=headers, timeout=120)


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def memory_rows(store: Path, user_id: str) -> list[tuple[Any, ...]]:
    """The user's memory in Chroma's SQLite file: metadata rows and every queued write, as bytes."""
    with _ro(store / "chroma" / "chroma.sqlite3") as conn:
        (collection,) = conn.execute(
            "SELECT id FROM collections WHERE name LIKE '%user_memories'"
        ).fetchone()
        rows = conn.execute(
            "SELECT m.key, m.string_value, m.int_value, m.float_value, m.bool_value "
            "FROM embeddings e JOIN embedding_metadata m ON m.id = e.id "
            "JOIN segments s ON s.id = e.segment_id "
            "WHERE s.collection = ? AND e.embedding_id = ? ORDER BY m.key",
            (collection, user_id),
        ).fetchall()
        queued = conn.execute(
            "SELECT seq_id, operation, vector, encoding, metadata FROM embeddings_queue "
            "WHERE topic LIKE ? AND id = ? ORDER BY seq_id",
            (f"%{collection}", user_id),
        ).fetchall()
    return [("row", *r) for r in rows] + [("queued", *q) for q in queued]


def memory_text(store: Path, user_id: str) -> str:
    """The user's current memory text (in the metadata, or the document of an older store)."""
    for row in memory_rows(store, user_id):
        if row[0] == "row" and row[1] in (TEXT_KEY, "chroma:document"):
            return str(row[2])
    raise LookupError(f"user {user_id} has no memory in {store}")


def event_rows(store: Path, user_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """The user's event-log rows: interactions, their jobs, audit of their memory, privacy."""
    with _ro(store / "events.sqlite") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        out = {
            "interactions": conn.execute(
                "SELECT * FROM interactions WHERE user_id = ? ORDER BY seq", (user_id,)
            ).fetchall(),
            "jobs": conn.execute(
                "SELECT j.* FROM jobs j JOIN interactions i USING (interaction_id) "
                "WHERE i.user_id = ? ORDER BY j.interaction_id",
                (user_id,),
            ).fetchall(),
            "audit": conn.execute(
                "SELECT * FROM audit WHERE kind = 'user' AND entity_id = ? ORDER BY id",
                (user_id,),
            ).fetchall(),
        }
        if "privacy" in tables:
            out["privacy"] = conn.execute(
                "SELECT * FROM privacy WHERE user_id = ?", (user_id,)
            ).fetchall()
    return out


def _ok(response: httpx.Response) -> bytes:
    if response.status_code >= 400:
        raise AssertionError(f"admin read failed: {response.request.url} {response.text[:300]}")
    return response.content


def server_view(admin: httpx.Client, user_id: str, threads: Iterable[str]) -> dict[str, Any]:
    """The raw JSON the admin sees of the user's threads, runs, crons and store items."""
    view: dict[str, Any] = {}
    owned = admin.post("/threads/search", json={"metadata": {"owner": user_id}, "limit": 1000})
    view["owned_thread_ids"] = sorted(t["thread_id"] for t in json.loads(_ok(owned)))
    for tid in sorted(set(threads) | set(view["owned_thread_ids"])):
        view[f"thread {tid}"] = _ok(admin.get(f"/threads/{tid}"))
        view[f"state {tid}"] = _ok(admin.get(f"/threads/{tid}/state", params={"subgraphs": True}))
        view[f"history {tid}"] = _ok(admin.post(f"/threads/{tid}/history", json={"limit": 1000}))
        view[f"runs {tid}"] = _ok(admin.get(f"/threads/{tid}/runs", params={"limit": 1000}))
        view[f"crons {tid}"] = _ok(
            admin.post("/runs/crons/search", json={"thread_id": tid, "limit": 1000})
        )
    view["store items"] = _ok(
        admin.post("/store/items/search", json={"namespace_prefix": [user_id], "limit": 1000})
    )
    view["store namespaces"] = _ok(
        admin.post("/store/namespaces", json={"prefix": [user_id], "limit": 1000})
    )
    return view


@dataclass
class Tenant:
    """One user's known data on the server: their threads (ids) and their store folder."""

    user_id: str
    store: Path
    threads: list[str] = field(default_factory=list)

    def fingerprint(self, admin: httpx.Client) -> Fingerprint:
        """Everything of theirs, as bytes (see the module docstring)."""
        return {
            "memory": memory_rows(self.store, self.user_id),
            **{f"events.{k}": v for k, v in event_rows(self.store, self.user_id).items()},
            **server_view(admin, self.user_id, self.threads),
        }


def changed_parts(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Names of the fingerprint parts that differ."""
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def wait_for_run(c: httpx.Client, thread_id: str, run_id: str, timeout_s: float = 60) -> dict:
    """Join a run (the server blocks until it is done) and return its final run record."""
    joined = c.get(f"/threads/{thread_id}/runs/{run_id}/join", timeout=timeout_s)
    assert joined.status_code == 200, joined.text
    return c.get(f"/threads/{thread_id}/runs/{run_id}").json()
