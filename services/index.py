"""Build a dataset's index: catalog, train graph, candidate files, memories, vectors, rules.

Every step checks what is already there and reuses it, so a second run is cheap and a run killed
half-way resumes; the ``index.json`` marker is written last.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from dataio.candidates import ProtocolError, ensure_candidates, user_histories
from dataio.datasets import Dataset, load_dataset
from dataio.paths import store_dir as default_store_dir
from dataio.split import Split, dataset_fingerprint, split_leave_one_out
from memory_store.bulk_load import BackgroundLoad
from memory_store.catalog import save_catalog
from memory_store.embeddings import HashingEmbedding
from memory_store.graph import InteractionGraph
from memory_store.memories import MemoryKind, MemoryStore
from memory_store.summaries import user_summary
from memory_store.vectors import MemoryVectors
from memory_store.workspace import INDEX_MARKER, open_chroma
from nodes.domain_stats import domain_stats
from roles.offline_rules import offline_rules
from schemas.context import MemRecContext
from schemas.records import ProfileInput
from schemas.ruleset import generic_rules
from services.profiles import ProfileRun, write_profiles
from services.ranker_tuning import ensure_ranker

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (step, done, total)


class IndexReport(BaseModel):
    """What an index run did."""

    dataset: str
    directory: str
    users: int
    items: int
    train_interactions: int
    memories_created: int
    reused: bool
    seconds: float
    skipped_candidates: list[str] = []  # candidate files the catalogue is too small for
    profiles: ProfileRun | None = None  # with an LLM LMMem: who wrote the user memories
    ranker: dict[str, Any] = {}  # the offline ranker's tuning on validation (ranker.json)


def user_memory_texts(dataset: Dataset, graph: InteractionGraph) -> list[tuple[str, str]]:
    """Warm-up user memories (offline LMMem): a summary of each user's train history."""
    out = []
    for u in range(dataset.n_users):
        items, _ = graph.user_item_times(u)
        titles = [dataset.item_titles[i] for i in items]
        attrs = [dataset.item_attributes[i] for i in items] if dataset.item_attributes else []
        out.append((dataset.user_ids[u], user_summary(titles, attrs)))
    return out


def profile_inputs(dataset: Dataset, graph: InteractionGraph) -> list[ProfileInput]:
    """What LMMem writes each user's initial memory from: the train history only."""
    out = []
    for u in range(dataset.n_users):
        items, _ = graph.user_item_times(u)
        attrs = Counter(
            a
            for i in items
            for a in (dataset.item_attributes[i] if dataset.item_attributes else [])
        )
        out.append(
            ProfileInput(
                user_id=dataset.user_ids[u],
                titles=[dataset.item_titles[i] for i in items[-40:]],
                attributes=[a for a, _ in attrs.most_common(6)],
            )
        )
    return out


def _noop(step: str, done: int, total: int) -> None:
    return None


def build_index(
    dataset_name: str,
    *,
    data_dir: str | Path | None = None,
    home: str | Path | None = None,
    memories: MemoryStore | None = None,
    chroma_url: str | None = None,
    lmmem: str = "offline",
    progress: Progress = _noop,
    model_ctx: MemRecContext | None = None,
) -> IndexReport:
    """Index a dataset (idempotent); ``lmmem`` other than offline writes the user memories.

    ``model_ctx`` carries the LMMem's endpoint and settings (base URL, timeout, concurrency).
    """
    start = time.perf_counter()
    directory = default_store_dir(dataset_name, home)
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / INDEX_MARKER
    dataset = load_dataset(dataset_name, data_dir)
    fingerprint = dataset_fingerprint(dataset)
    reused = marker.exists() and json.loads(marker.read_text())["fingerprint"] == fingerprint

    progress("split", 0, 1)
    split = split_leave_one_out(dataset)
    save_catalog(directory, dataset, split)
    graph = _graph(directory, dataset, split)
    progress("split", 1, 1)
    store = memories or open_chroma(directory, chroma_url)
    profiles: list[ProfileRun] = []
    ctx = model_ctx or MemRecContext(roles="offline", lmmem=lmmem)
    load = _start_load(directory, store, dataset, graph, lmmem, progress)  # on a thread
    skipped = _candidate_files(directory, dataset, split)
    _rules(directory, dataset, graph)
    created = _finish_load(load, directory, store, dataset, graph, progress, (lmmem, ctx, profiles))
    progress("ranker", 0, 1)
    ranker = ensure_ranker(directory, dataset, split, graph, store)
    progress("ranker", 1, 1)
    _write_marker(marker, dataset, fingerprint, split)
    return IndexReport(
        dataset=dataset.name,
        directory=str(directory),
        users=dataset.n_users,
        items=dataset.n_items,
        train_interactions=int(len(split.train)),
        memories_created=created,
        reused=reused and created == 0,
        skipped_candidates=skipped,
        ranker={"tuned": ranker.tuned, "weights": ranker.weights, **ranker.report},
        seconds=round(time.perf_counter() - start, 2),
        profiles=profiles[0] if profiles else None,
    )


def _candidate_files(directory: Path, dataset: Dataset, split: Split) -> list[str]:
    """Write the benchmark candidate files; the ones the catalogue is too small for are skipped."""
    skipped = []
    histories = user_histories(dataset)  # once for the four files
    for which in ("valid", "test"):
        for n in (10, 20):
            try:
                ensure_candidates(directory, dataset, split, which, n, 0, histories)
            except ProtocolError as err:  # a small catalogue: serving works, that benchmark not
                log.warning("no %s candidate file with %d candidates: %s", which, n, err)
                skipped.append(f"{which}-n{n}")
    return skipped


def _rules(directory: Path, dataset: Dataset, graph: InteractionGraph) -> None:
    """The generic rule set and the offline generated one, unless they are there already."""
    rules_dir = directory / "rules"
    generic_rules().save(rules_dir / "generic.json")  # the fixed heuristic of this version
    if not (rules_dir / "generated.json").exists():
        offline_rules(domain_stats(dataset, graph)).save(rules_dir / "generated.json")


def _write_marker(marker: Path, dataset: Dataset, fingerprint: str, split: Split) -> None:
    """The ``index.json`` marker, written last: its presence means the index is complete."""
    marker.write_text(
        json.dumps(
            {
                "dataset": dataset.name,
                "fingerprint": fingerprint,
                "users": dataset.n_users,
                "items": dataset.n_items,
                "train_interactions": int(len(split.train)),
                "indexed_at": time.time(),
            },
            indent=2,
        )
    )


def _graph(directory: Path, dataset: Dataset, split: Split) -> InteractionGraph:
    gdir = directory / "graph"
    if (gdir / "ui_ts.npz").exists():
        return InteractionGraph.load(gdir)
    graph = InteractionGraph.build(
        split.train, dataset.n_users, dataset.n_items, dataset.item_attributes, dataset.has_clock
    )
    graph.save(gdir)
    return graph


def _memories(
    store: MemoryStore,
    dataset: Dataset,
    graph: InteractionGraph,
    progress: Progress,
    lmmem: str,
    ctx: MemRecContext,
    profiles: list[ProfileRun],
) -> int:
    created = 0
    total = dataset.n_users + dataset.n_items
    if store.count("item") < dataset.n_items:
        pairs = list(zip(dataset.item_ids, dataset.item_texts, strict=True))
        created += _bulk(store, "item", pairs, progress, 0, total)
    if store.count("user") < dataset.n_users:
        if lmmem == "offline":
            texts = user_memory_texts(dataset, graph)
        else:
            existing = set(store.ids("user"))
            todo = [p for p in profile_inputs(dataset, graph) if p.user_id not in existing]
            run = asyncio.run(write_profiles(store, todo, ctx, progress))  # stored as they come
            profiles.append(run)
            texts = []
            created += run.written
        created += _bulk(store, "user", texts, progress, dataset.n_items, total)
    progress("memories", total, total)
    return created


def _bulk(
    store: MemoryStore,
    kind: str,
    pairs: list[tuple[str, str]],
    progress: Progress,
    offset: int,
    total: int,
) -> int:
    created = 0
    step = 5000
    for start in range(0, len(pairs), step):
        created += store.bulk_init(kind, pairs[start : start + step], "warmup")  # type: ignore[arg-type]
        progress("memories", offset + min(start + step, len(pairs)), total)
    return created


def _vectors_complete(directory: Path, dataset: Dataset) -> bool:
    if not (directory / "vectors_users.npy").exists():
        return False
    vecs = MemoryVectors.load(directory)
    return len(vecs.users) == dataset.n_users and len(vecs.items) == dataset.n_items


def _start_load(
    directory: Path,
    store: MemoryStore,
    dataset: Dataset,
    graph: InteractionGraph,
    lmmem: str,
    progress: Progress,
) -> BackgroundLoad | None:
    """Start loading the offline memories on a thread (None: nothing to load, or LLM-written)."""
    if lmmem != "offline":
        return None
    complete = store.count("item") >= dataset.n_items and store.count("user") >= dataset.n_users
    if complete and _vectors_complete(directory, dataset):
        return None
    items = list(zip(dataset.item_ids, dataset.item_texts, strict=True))
    work: list[tuple[MemoryKind, list[tuple[str, str]]]] = [
        ("item", items),
        ("user", user_memory_texts(dataset, graph)),
    ]
    return BackgroundLoad(store, work, progress=progress).start()


def _finish_load(
    load: BackgroundLoad | None,
    directory: Path,
    store: MemoryStore,
    dataset: Dataset,
    graph: InteractionGraph,
    progress: Progress,
    model: tuple[str, MemRecContext, list[ProfileRun]],
) -> int:
    """Wait for the load and write the vectors it computed (no re-read, no second embedding).

    Without a load (an LLM LMMem, or a resumed run) the memories are written here; ``model`` is
    the LMMem spec, its context and the list the profile run is reported into.
    """
    if load is None:
        created = _memories(store, dataset, graph, progress, *model)
        _vectors(directory, store, dataset)
        return created
    created = load.join()
    MemoryVectors(load.vectors["user"], load.vectors["item"]).save(directory)
    return created


def _vectors(directory: Path, store: MemoryStore, dataset: Dataset) -> None:
    if (directory / "vectors_users.npy").exists():
        vecs = MemoryVectors.load(directory)
        if len(vecs.users) == dataset.n_users and len(vecs.items) == dataset.n_items:
            return
    emb = HashingEmbedding()
    users = store.get_many("user", dataset.user_ids)
    items = store.get_many("item", dataset.item_ids)
    user_texts = [users[u].text if u in users else "" for u in dataset.user_ids]
    item_texts = [items[i].text if i in items else "" for i in dataset.item_ids]
    MemoryVectors(
        np.asarray(emb.embed_texts(user_texts), np.float32),
        np.asarray(emb.embed_texts(item_texts), np.float32),
    ).save(directory)
