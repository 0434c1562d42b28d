"""A workspace as the index left it: what an evaluation copy starts from, never the live store.

An evaluation warms up and ranks in a copy. It must not see anything the served store learnt
after indexing (a feedback, a demo click, a propagated note, a cached facet): any of those may
name a user's held-out target. So the copy is rebuilt from the index alone:

- the graph from the index's train graph file (live interactions are not replayed);
- item memories from the catalogue text (what indexing writes);
- user memories as indexing wrote them: the live record when it is still that first version,
  else the text its first rewrite replaced (kept by the audit log); a user whose initial text
  cannot be recovered gets the offline summary of their train history (counted and logged);
- the memory vectors re-embedded from those texts; a fresh event log and facet cache;
- users deleted for privacy stay deleted, opted-out users stay out.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from memory_store.events import EventLog
from memory_store.graph import InteractionGraph
from memory_store.inmemory_store import InMemoryMemoryStore
from memory_store.memories import MemoryKind, MemoryRecord
from memory_store.summaries import user_summary
from memory_store.vectors import MemoryVectors
from memory_store.workspace import Workspace

log = logging.getLogger(__name__)

INITIAL_SOURCE = "warmup"  # the source of every memory indexing writes (``bulk_init``)
_BATCH = 2000


def index_copy(served: Workspace, directory: Path) -> Workspace:
    """An isolated workspace rebuilt from ``served``'s index, its event log under ``directory``."""
    start = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    events_path = directory / "events.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{events_path}{suffix}").unlink(missing_ok=True)
    graph = InteractionGraph.load(served.directory / "graph")
    ds = served.dataset
    users, rebuilt = initial_user_memories(served, graph)
    items = dict(zip(ds.item_ids, ds.item_texts, strict=True))
    store = InMemoryMemoryStore(getattr(served.memories, "embedding_function", None))
    now = time.time()
    kinds: tuple[tuple[MemoryKind, dict[str, str]], ...] = (("user", users), ("item", items))
    store.restore(
        [
            MemoryRecord(
                kind=kind, entity_id=i, text=t, version=1, updated_at=now, source=INITIAL_SOURCE
            )
            for kind, texts in kinds
            for i, t in texts.items()
        ]
    )
    vectors = MemoryVectors(np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32))
    vectors.users = vectors.embedding.embed_texts([users.get(u, "") for u in ds.user_ids])
    vectors.items = vectors.embedding.embed_texts(ds.item_texts)
    ws = Workspace(
        served.directory,
        ds,
        served.split,
        graph,
        store,
        EventLog(events_path, durable=False),
        vectors,
    )
    ws.opted_out = set(served.opted_out)
    ws.deleted = served.deleted.copy()  # tombstones only: no deleted id is kept (privacy_log)
    ws.deleted_codes = set(served.deleted_codes)
    for code in served.deleted_codes:
        ws.graph.remove_user(code)
    ws._candidates = served._candidates
    log.info(
        "evaluation copy of %s from its index: %d user memories (%d rebuilt from train) in %.1f s",
        ds.name,
        len(users),
        rebuilt,
        time.perf_counter() - start,
    )
    return ws


def initial_user_memories(served: Workspace, graph: InteractionGraph) -> tuple[dict[str, str], int]:
    """Each user's memory as indexing wrote it, and how many had to be rebuilt from train."""
    ds = served.dataset
    out: dict[str, str] = {}
    rebuilt = 0
    ids = [u for u in ds.user_ids if u not in served.deleted]
    for start in range(0, len(ids), _BATCH):
        chunk = ids[start : start + _BATCH]
        live = served.memories.get_many("user", chunk)
        for user_id in chunk:
            text = _initial_text(served, live.get(user_id))
            if text is None:
                text = _train_summary(served, graph, user_id)
                rebuilt += 1
            out[user_id] = text
    return out, rebuilt


def _initial_text(served: Workspace, record: MemoryRecord | None) -> str | None:
    if record is None:
        return None
    if record.version == 1:
        return record.text if record.source == INITIAL_SOURCE else None
    first = [r for r in served.events.history("user", record.entity_id) if r.version == 2]
    if first and first[0].previous_text is not None:
        return first[0].previous_text
    return None


def _train_summary(served: Workspace, graph: InteractionGraph, user_id: str) -> str:
    """The offline writer's summary of the user's train history (what offline indexing writes)."""
    ds = served.dataset
    items, _ = graph.user_item_times(ds.user_index[user_id])
    attrs = [ds.item_attributes[i] for i in items] if ds.item_attributes else []
    return user_summary([ds.item_titles[i] for i in items], attrs)
