"""A workspace: everything the graphs read and write for one indexed dataset.

``<home>/stores/<dataset>/`` holds the catalog snapshot (dataset + split), the train graph, the
rule sets, the candidate files, the memory vectors, the Chroma store and the SQLite event log.
Interactions recorded after indexing live in the event log and are replayed onto the graph when it
is opened, so the graph, the memories and the log always agree.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from dataio.candidates import candidates_path, read_candidates
from dataio.dataset import Dataset
from dataio.paths import store_dir as default_store_dir
from dataio.split import Split
from memory_store import gc_tuning, malloc_hygiene
from memory_store.cached_store import CachedMemoryStore
from memory_store.catalog import load_catalog
from memory_store.embeddings import HashingEmbedding
from memory_store.events import EventLog
from memory_store.graph import InteractionGraph, is_choice
from memory_store.hooks import run_async_hooks
from memory_store.manifest import DamagedStore, check_store_files, refresh_files
from memory_store.memories import MemoryKind, MemoryStore
from memory_store.opening import load_or_damaged, open_chroma, open_events, refuse_writes
from memory_store.privacy_epoch import PrivacyEpoch
from memory_store.privacy_log import DeletedUsers
from memory_store.ranker_index import RankerConfig, RankerIndex
from memory_store.vectors import MemoryVectors
from memory_store.workspace_guards import StoreGuards
from memory_store.writer_lock import WriterLock, writer_lock
from schemas.context import MemRecContext
from schemas.ruleset import RuleSet, generic_rules

log = logging.getLogger(__name__)

INDEX_MARKER = "index.json"
CATCH_UP_S = 1.0  # a process sharing the event log looks for others' interactions this often
CATCH_UP_LOOKBACK = 256


class NotIndexed(RuntimeError):
    """The dataset has no index yet."""


class UnknownEntity(LookupError):
    """A user or item id that the dataset does not have."""

    def __str__(self) -> str:
        return str(self.args[0])


class Workspace(StoreGuards):
    """One dataset's catalog, graph, memories, rules and event log, opened together."""

    def __init__(
        self,
        directory: Path,
        dataset: Dataset,
        split: Split,
        graph: InteractionGraph,
        memories: MemoryStore,
        events: EventLog,
        vectors: MemoryVectors,
        writer: WriterLock | None = None,
    ) -> None:
        self.directory = directory
        self.dataset = dataset
        self.split = split
        self.graph = graph
        self.memories = memories
        self.events = events
        self.vectors = vectors
        self.lock = threading.RLock()
        self._rules: dict[str, RuleSet] = {}
        self.opted_out: set[int] = set()  # user codes never curated nor patched by others
        self.deleted = DeletedUsers()  # deleted for privacy: nothing is recorded for them
        self.deleted_codes: set[int] = set()  # their catalog codes
        self.persisted_opt_outs: set[int] = set()  # opt-outs as last read from the log
        self.writer = writer  # the store's writer lock (embedded stores only)
        self.epoch = PrivacyEpoch(events.path.parent, create=not events.readonly)  # see sync()
        self._seen: tuple[int, tuple[float, ...]] | None = None
        self._candidates: dict[tuple[str, int, int], dict[int, list[int]]] = {}
        self.warm = threading.Event()  # set once the memory read cache is filled (see _warm)
        self.seen_seq = 0  # the last event log position appended onto the graph
        self.shared = False  # other processes write this store's event log (catch_up)
        self._caught_up_at = time.monotonic()
        # Objects built from this workspace (its role pair, its job runner), kept and dropped with
        # it: the cycle workspace -> derived -> role -> workspace is collected as a whole.
        self.derived: dict[str, Any] = {}

    @property
    def name(self) -> str:
        """The dataset name."""
        return self.dataset.name

    # ------------------------------------------------------------------ ids
    def user_code(self, user_id: str) -> int:
        """Code of a user id; UnknownEntity with a hint if the dataset has no such user."""
        try:
            return self.dataset.user_index[str(user_id)]
        except KeyError:
            sample = ", ".join(self.dataset.user_ids[:3])
            raise UnknownEntity(
                f"unknown user id {user_id!r} in {self.name} (ids look like {sample}, ...)"
            ) from None

    def item_code(self, item_id: str) -> int:
        """Code of an item id; UnknownEntity with a hint if the dataset has no such item."""
        try:
            return self.dataset.item_index[str(item_id)]
        except KeyError:
            sample = ", ".join(self.dataset.item_ids[:3])
            raise UnknownEntity(
                f"unknown item id {item_id!r} in {self.name} (ids look like {sample}, ...)"
            ) from None

    def has_user(self, user_id: str) -> bool:
        """Whether the dataset knows this user."""
        return str(user_id) in self.dataset.user_index

    def title(self, code: int) -> str:
        """Display title of an item code."""
        return self.dataset.item_titles[code]

    def memory_text(self, kind: MemoryKind, entity_id: str) -> str:
        """Current memory text ('' when there is none)."""
        rec = self.memories.get(kind, entity_id)
        return rec.text if rec else ""

    # ------------------------------------------------------------------ rules
    def rules(self, which: Literal["generated", "generic"] = "generated") -> RuleSet:
        """The saved rule set (generic rules when no generated set was saved).

        ``generic`` is always the paper's fixed heuristic of this version (``generic_rules``),
        whatever an older index saved.
        """
        if which == "generic":
            return self._rules.setdefault("generic", generic_rules())
        if which not in self._rules:
            path = self.directory / "rules" / f"{which}.json"
            try:
                self._rules[which] = RuleSet.load(path) if path.exists() else generic_rules()
            except ValueError as err:  # JSON or validation error: a damaged file
                raise DamagedStore(
                    path, f"the rule set is not valid ({str(err)[:160]})", self.repair_hint()
                ) from err
        return self._rules[which]

    def save_rules(self, rules: RuleSet, which: Literal["generated", "generic"]) -> Path:
        """Persist a rule set (atomically, in the manifest) and use it from now on."""
        from dataio.files import atomic_write_text

        self.acquire_writer()
        path = self.directory / "rules" / f"{which}.json"
        atomic_write_text(path, rules.model_dump_json(indent=2))
        refresh_files(self.directory, "rules", [path])
        self._rules[which] = rules
        return path

    def benchmark_lists(self) -> dict[tuple[str, int, int], dict[int, list[int]]]:
        """The candidate lists read so far (forgetting a user drops theirs)."""
        return self._candidates

    # ------------------------------------------------------------------ writes
    def on_memory_write(
        self, kind: MemoryKind, entity_id: str, text: str, vector: Any = None, version: int = 0
    ) -> None:
        """Keep the vector cache in step with a write (``MemoryVectors.refresh``; 0: unknown)."""
        code = self.user_code(entity_id) if kind == "user" else self.item_code(entity_id)
        self.vectors.refresh(kind, code, text, vector, version=version or None)

    def embedder(self) -> Callable[[list[str]], Any] | None:
        """Embeds texts once for both the memory store and the vector cache, when they agree.

        None when the store embeds with another model than the cache's local hashing.
        """
        store = getattr(self.memories, "inner", self.memories)
        function = getattr(store, "embedding_function", None)
        mine = self.vectors.embedding
        if isinstance(function, HashingEmbedding) and function.get_config() == mine.get_config():
            return mine.embed_texts
        return None

    def ranker(self) -> tuple[RankerIndex, RankerConfig]:
        """The offline ranker's index over this graph (built once, kept up to date) and config."""
        with self.lock:
            if "ranker" not in self.derived:
                config = RankerConfig.load(self.directory)
                self.derived["ranker"] = (RankerIndex(self.graph, config.params), config)
            index, config = self.derived["ranker"]
            return index.fresh(), config

    def benchmark_candidates(
        self, which: str = "test", n: int = 10, seed: int = 0
    ) -> dict[int, list[int]]:
        """The benchmark candidate lists (user code -> item codes), read once and cached."""
        key = (which, n, seed)
        if key not in self._candidates:
            path = candidates_path(self.directory, which, n, seed)  # type: ignore[arg-type]
            self._candidates[key] = read_candidates(path, self.dataset).users
        return self._candidates[key]

    def clone(self, directory: Path) -> Workspace:
        """An isolated copy (in-memory memories, a fresh event log): for tests and benches.

        Evaluation starts from the index alone (``memory_store/index_copy.py``) instead.
        """
        from memory_store.inmemory_store import InMemoryMemoryStore

        directory.mkdir(parents=True, exist_ok=True)
        events_path = directory / "events.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{events_path}{suffix}").unlink(missing_ok=True)
        ws = Workspace(
            self.directory,
            self.dataset,
            self.split,
            InteractionGraph.load(self.directory / "graph"),
            InMemoryMemoryStore.from_store(self.memories),
            EventLog(events_path, durable=False),
            MemoryVectors(self.vectors.users.copy(), self.vectors.items.copy()),
        )
        ws._rules = dict(self._rules)
        ws.opted_out = set(self.opted_out)  # kept as they are: the clone's own log has none
        ws.deleted = self.deleted.copy()
        ws.deleted_codes = set(self.deleted_codes)
        for code in self.deleted_codes:
            ws.graph.remove_user(code)
        ws._candidates = self._candidates
        return ws

    def replay_events(self, since_seq: int | None = None) -> int:
        """Append interactions recorded after indexing onto the graph; returns how many."""
        added = 0
        for row in self.events.interaction_rows(since_seq=since_seq):
            ev = row.event
            self.seen_seq = max(self.seen_seq, row.seq)
            u = self.dataset.user_index.get(ev.user_id)
            i = self.dataset.item_index.get(ev.item_id)
            if u is None or i is None:
                continue
            with self.lock:  # catch_up runs beside requests reading the graph
                if not is_choice(ev.kind):  # a dislike is no edge (see InteractionGraph)
                    self.graph.reject(u, i)
                elif self.graph.append(u, i, ev.ts):
                    added += 1
        return added

    def catch_up_due(self) -> bool:
        """Whether other processes may have recorded interactions this one has not seen yet."""
        return self.shared and time.monotonic() - self._caught_up_at > CATCH_UP_S

    def catch_up(self) -> int:
        """Append interactions other processes recorded since the last look (shared event log).

        Re-reads ``CATCH_UP_LOOKBACK`` positions before the last one seen: a transaction that
        took its position earlier may commit later (appending is idempotent).
        """
        self._caught_up_at = time.monotonic()
        return self.replay_events(since_seq=max(0, self.seen_seq - CATCH_UP_LOOKBACK))


def open_workspace(
    dataset: str,
    *,
    home: str | Path | None = None,
    chroma_url: str | None = None,
    memories: MemoryStore | None = None,
    readonly: bool = False,
) -> Workspace:
    """Open an indexed dataset (``memrec index`` builds it).

    ``readonly`` opens it for a command that only reads: it never takes the writer lock nor
    SQLite's write lock, and any write raises ReadOnlyLog. Otherwise the first write takes the
    store's writer lock (embedded stores). A missing or damaged file raises DamagedStore.
    """
    directory = default_store_dir(dataset, home)
    if not (directory / INDEX_MARKER).exists():
        raise NotIndexed(
            f"dataset {dataset!r} is not indexed under {directory}; "
            f"run `memrec index --dataset {dataset}` first"
        )
    embedded = chroma_url is None and memories is None
    check_store_files(directory, dataset, chroma_embedded=embedded)
    lock = writer_lock(directory) if embedded else None
    before_write = refuse_writes(directory) if readonly else (lock.acquire if lock else None)
    ds, split = load_or_damaged(directory / "catalog.pkl", dataset, lambda: load_catalog(directory))
    graph = load_or_damaged(
        directory / "graph", dataset, lambda: InteractionGraph.load(directory / "graph")
    )
    vectors = load_or_damaged(
        directory / "vectors_users.npy", dataset, lambda: MemoryVectors.load(directory)
    )
    if memories is None:
        named = directory / "chroma" / ("chroma.sqlite3" if chroma_url is None else "")
        chroma = load_or_damaged(named, dataset, lambda: open_chroma(directory, chroma_url))
        # One writer per embedded store; against a shared server, reads may lag 5 s at most.
        memories = CachedMemoryStore(
            chroma, ttl_s=5.0 if chroma_url else None, before_write=before_write
        )
    events = open_events(directory, dataset, readonly, before_write)
    ws = Workspace(directory, ds, split, graph, memories, events, vectors, writer=lock)
    ws.shared = bool(chroma_url or os.environ.get("MEMREC_DATABASE_URL"))
    ws.replay_events()
    ws.sync()
    return ws


_OPEN: dict[tuple[str, str, str], Workspace] = {}
_OPEN_LOCK = threading.Lock()


def is_open(dataset: str, *, home: str | Path | None = None, chroma_url: str | None = None) -> bool:
    """Whether ``get_workspace`` would answer from memory, without touching the disk."""
    return (dataset, str(home or ""), chroma_url or "") in _OPEN


def get_workspace(
    dataset: str, *, home: str | Path | None = None, chroma_url: str | None = None
) -> Workspace:
    """A process-wide shared workspace per (dataset, home, chroma url)."""
    key = (dataset, str(home or ""), chroma_url or "")
    with _OPEN_LOCK:
        if key not in _OPEN:
            malloc_hygiene.start()  # a long-lived process: keep its RSS flat
            gc_tuning.tune()  # and its full collections rare (a large long-lived heap)
            ws = open_workspace(dataset, home=home, chroma_url=chroma_url)
            _OPEN[key] = ws
            if isinstance(ws.memories, CachedMemoryStore):  # a long-lived process: warm reads
                warmer = threading.Thread(target=_warm, args=(ws,), name="memrec-warm", daemon=True)
                _WARMERS.append(warmer)
                warmer.start()
        ws = _OPEN[key]
    ws.sync()  # a deletion by another process is seen before this read (I/O only then)
    return ws


_WARMERS: list[threading.Thread] = []
_STOP_WARMING = threading.Event()


@atexit.register
def _stop_warming() -> None:
    """End warm-ups between two batches (a thread in native store code at shutdown crashes)."""
    _STOP_WARMING.set()
    for warmer in _WARMERS:
        warmer.join(timeout=10)


def _warm(ws: Workspace) -> None:
    """Fill the memory read cache in the background, so requests stop paying store round trips."""
    store = ws.memories
    assert isinstance(store, CachedMemoryStore)
    start = time.perf_counter()
    try:
        ws.ranker()  # the offline ranker's index, built before the first request needs it
        n = store.preload("user", ws.dataset.user_ids, stop=_STOP_WARMING)
        n += store.preload("item", ws.dataset.item_ids, stop=_STOP_WARMING)
    except (OSError, ValueError, RuntimeError) as err:  # only costs speed, never answers
        log.warning("memory cache warm-up stopped: %s", err)
        return
    ws.warm.set()
    log.info("memory cache warm: %d records in %.1f s", n, time.perf_counter() - start)


def register_workspace(ws: Workspace, dataset: str, home: str | Path | None = None) -> None:
    """Make ``get_workspace`` return ``ws`` (tests and evaluation runs use in-memory stores)."""
    with _OPEN_LOCK:
        _OPEN[(dataset, str(home or ""), "")] = ws


def workspace_for(ctx: MemRecContext | None) -> Workspace:
    """The shared workspace of the store a run context names (``get_workspace``)."""
    ctx = ctx or MemRecContext()
    return get_workspace(ctx.dataset, home=ctx.home, chroma_url=ctx.chroma_url)


async def aworkspace_for(ctx: MemRecContext | None) -> Workspace:
    """``workspace_for`` from async code: file reads (the first open, a sync) run in a thread."""
    ctx = ctx or MemRecContext()
    run_async_hooks()
    ws = _OPEN.get((ctx.dataset, str(ctx.home or ""), ctx.chroma_url or ""))
    if ws is None:
        return await asyncio.to_thread(workspace_for, ctx)
    if ws.privacy_changed():  # a deletion elsewhere: reloading reads files, off the loop
        await asyncio.to_thread(ws.sync)
    if ws.catch_up_due():  # several processes share the store: see their interactions
        await asyncio.to_thread(ws.catch_up)
    return ws
