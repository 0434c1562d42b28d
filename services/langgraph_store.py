"""The user and item memories as a LangGraph ``BaseStore`` (the server's custom store).

``langgraph.json`` names :func:`make_store` (``"store": {"path": ...}``): Studio's memory view,
the server's ``/store`` API and every graph's ``runtime.store`` then read MemRec's memories:

- namespace ``("memories", "user")``, key = a user id; ``("memories", "item")``, key = an item id;
  the value is ``{"text", "version", "updated_at", "source"}`` (items add ``"title"``);
- ``search(("memories", "item"), query="space adventure")`` ranks memories by similarity (the same
  Chroma search retrieval uses); without a query it lists them in id order;
- ``put(("memories", "user"), "1", {"text": ...})`` is a versioned, audited write
  (``memory_store.writes.apply_write``, the path propagation takes; cause ``store:<uuid>``); a
  memory is never deleted through the store (``memrec privacy delete-user`` does that).

Every other namespace (an agent's own notes, ...) is kept in a LangGraph ``SqliteStore`` file
beside the indexed store, with LangGraph's own semantics. Memory namespaces appear only under a
``("memories", ...)`` prefix, so a search from the root lists an agent's items, not every memory.
The memories are those of the server's dataset (``MEMREC_DATASET``, ``MEMREC_HOME``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)
from langgraph.store.sqlite import SqliteStore

from memory_store.memories import MemoryKind, MemoryRecord
from memory_store.workspace import Workspace, workspace_for
from memory_store.writes import apply_write
from schemas.context import MemRecContext

logger = logging.getLogger(__name__)

ROOT = "memories"
KINDS: tuple[MemoryKind, ...] = ("user", "item")
NAMESPACES = tuple((ROOT, kind) for kind in KINDS)


class MemoryStoreError(ValueError):
    """A store operation on a memory namespace that cannot be served; says what is accepted."""


class MemRecStore(BaseStore):
    """MemRec's memories under ``("memories", kind)``; any other namespace in ``other``."""

    supports_ttl = False

    def __init__(self, ctx: MemRecContext | None = None, other: BaseStore | None = None) -> None:
        self.ctx = ctx or MemRecContext()
        self._ws: Workspace | None = None
        self._other = other
        self._lock = threading.RLock()

    # ------------------------------------------------------------------------ plumbing

    @property
    def ws(self) -> Workspace:
        """The indexed store of the context's dataset (opened on first use)."""
        with self._lock:
            if self._ws is None:
                self._ws = workspace_for(self.ctx)
            return self._ws

    @property
    def other(self) -> BaseStore:
        """Where every non-memory namespace lives (a SQLite file beside the store by default)."""
        with self._lock:
            if self._other is None:
                self._other = _sqlite_store(self.ws.directory / "langgraph-store.sqlite")
            return self._other

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run each op on the memories or on the other store, in order."""
        return [self._one(op) for op in ops]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """The same off the event loop (Chroma and SQLite calls block)."""
        return await asyncio.to_thread(self.batch, list(ops))

    def _one(self, op: Op) -> Result:
        if isinstance(op, GetOp):
            if _kind(op.namespace) is None:
                return self.other.batch([op])[0]
            return self._get(op)
        if isinstance(op, PutOp):
            if _kind(op.namespace) is None:
                return self.other.batch([op])[0]
            self._put(op)
            return None
        if isinstance(op, SearchOp):
            if op.namespace_prefix[:1] != (ROOT,):
                return self.other.batch([op])[0]
            return self._search(op)
        if isinstance(op, ListNamespacesOp):
            return self._list_namespaces(op)
        raise TypeError(f"unknown store operation {type(op).__name__}")

    # ------------------------------------------------------------------------ memories

    def _get(self, op: GetOp) -> Item | None:
        kind = _kind(op.namespace)
        assert kind is not None
        record = self.ws.memories.get(kind, op.key)
        return None if record is None else self._item(record)

    def _put(self, op: PutOp) -> None:
        kind = _kind(op.namespace)
        assert kind is not None
        if op.value is None:
            raise MemoryStoreError(
                f"{kind} memories are not deleted through the store: use `memrec privacy "
                "delete-user` (users) or re-index (items)"
            )
        text = op.value.get("text")
        if not isinstance(text, str) or not text.strip():
            raise MemoryStoreError(
                f'a {kind} memory is written as {{"text": "<the new memory>"}}; got keys '
                f"{sorted(op.value)}"
            )
        ws = self.ws
        known = ws.dataset.user_index if kind == "user" else ws.dataset.item_index
        if op.key not in known:
            raise MemoryStoreError(f"no {kind} {op.key!r} in the {ws.name} data")
        cause = f"store:{uuid.uuid4().hex}"
        with ws.lock:
            record = apply_write(ws.memories, ws.events, kind, op.key, text.strip(), cause=cause)
            if record is not None:
                ws.on_memory_write(kind, op.key, record.text, version=record.version)

    def _search(self, op: SearchOp) -> list[SearchItem]:
        prefix = op.namespace_prefix
        kinds = [k for k in KINDS if (ROOT, k)[: len(prefix)] == prefix]
        if len(prefix) > 2:
            kinds = []
        found: list[SearchItem] = []
        want = op.offset + op.limit
        for kind in kinds:
            found += self._search_kind(kind, op.query, want if not op.filter else None)
        if op.filter:
            found = [s for s in found if _matches(s.value, op.filter)]
        if op.query:
            found.sort(key=lambda s: -(s.score or 0.0))
        return found[op.offset : op.offset + op.limit]

    def _search_kind(self, kind: MemoryKind, query: str | None, want: int | None) -> list[Any]:
        memories = self.ws.memories
        if query:
            k = want if want is not None else memories.count(kind)
            return [self._item(r, score) for r, score in memories.search(kind, query, k)]
        ids = sorted(memories.ids(kind))
        ids = ids[:want] if want is not None else ids
        records = memories.get_many(kind, ids)
        return [self._item(records[i], None) for i in ids if i in records]

    def _item(self, record: MemoryRecord, score: float | None = None) -> Any:
        value: dict[str, Any] = {
            "text": record.text,
            "version": record.version,
            "updated_at": record.updated_at,
            "source": record.source,
        }
        if record.kind == "item":
            code = self.ws.dataset.item_index.get(record.entity_id)
            if code is not None:
                value["title"] = self.ws.title(code)
        at = datetime.fromtimestamp(record.updated_at, tz=UTC)
        namespace = (ROOT, record.kind)
        if score is None:
            return Item(value=value, key=record.entity_id, namespace=namespace, created_at=at,
                        updated_at=at)  # fmt: skip
        return SearchItem(namespace, record.entity_id, value, at, at, score=round(score, 6))

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        widened = op._replace(limit=op.offset + op.limit, offset=0)
        theirs = cast(list[tuple[str, ...]], self.other.batch([widened])[0])
        ours = [
            ns[: op.max_depth] if op.max_depth is not None else ns
            for ns in NAMESPACES
            if all(_matches_condition(c, ns) for c in op.match_conditions or ())
        ]
        merged = sorted(set(theirs) | set(ours))
        return merged[op.offset : op.offset + op.limit]


def _kind(namespace: tuple[str, ...]) -> MemoryKind | None:
    """The memory kind a namespace holds; None for any other namespace."""
    if namespace[:1] != (ROOT,):
        return None
    if len(namespace) == 2 and namespace[1] in KINDS:
        return cast(MemoryKind, namespace[1])
    raise MemoryStoreError(
        f"namespace {namespace}: under {ROOT!r} only ('memories', 'user') and "
        "('memories', 'item') exist"
    )


def _matches_condition(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(path) > len(namespace):
        return False
    part = namespace[: len(path)] if condition.match_type == "prefix" else namespace[-len(path) :]
    return all(p == "*" or p == n for p, n in zip(path, part, strict=True))


def _matches(value: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Equality filters on memory values (``{"source": "warmup"}``)."""
    return all(value.get(k) == v for k, v in wanted.items())


def _sqlite_store(path: Path) -> SqliteStore:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    store = SqliteStore(conn)
    store.setup()
    return store


def make_store() -> MemRecStore:
    """The server's custom store (``langgraph.json``): the run context from the environment."""
    return MemRecStore(MemRecContext())
