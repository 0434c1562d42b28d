"""A first index build's memories: the offline texts, embedded once and loaded beside the build.

``services/index.py`` starts the load (:func:`start_load`) right after the graph, writes its
candidate files and rules and tunes its ranker while it runs, and records the memories and the
vectors once it is done (``memory_store/bulk_load.py`` says how the load runs).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dataio.datasets import Dataset
from memory_store.bulk_load import BackgroundLoad, ChildLoad, shared_hashing
from memory_store.embeddings import HashingEmbedding
from memory_store.graph import InteractionGraph
from memory_store.memories import MemoryKind, MemoryStore
from memory_store.privacy_log import is_placeholder
from memory_store.summaries import user_summary
from memory_store.writer_lock import writer_lock

Progress = Callable[[str, int, int], None]  # (step, done, total)


def user_memory_texts(dataset: Dataset, graph: InteractionGraph) -> list[tuple[str, str]]:
    """Warm-up user memories (offline LMMem): a summary of each user's train history."""
    out = []
    for u in range(dataset.n_users):
        items, _ = graph.user_item_times(u)
        titles = [dataset.item_titles[i] for i in items]
        attrs = [dataset.item_attributes[i] for i in items] if dataset.item_attributes else []
        out.append((dataset.user_ids[u], user_summary(titles, attrs)))
    return out


def start_load(
    store: MemoryStore,
    dataset: Dataset,
    graph: InteractionGraph,
    lmmem: str,
    restored: int,
    progress: Progress,
    owned: bool,
    directory: Path,
) -> BackgroundLoad | None:
    """A first build's offline memories, embedded once and added beside the build (else None).

    Only for an empty store with nothing restored and no deleted user: the load's vectors are
    then exactly the vectors file, and its texts are what the ranker's tuning reads. An embedded
    Chroma store opened here (``owned``) that embeds with the same hashing is closed and loaded by
    a child process holding the writer lock with this one (``bulk_load.ChildLoad``: Chroma's add
    holds the GIL); any other store on a thread. Any other build writes what is missing
    (``_memories``) and embeds the store's current texts (``_vectors``).
    """
    empty = store.count("item") == 0 and store.count("user") == 0
    if lmmem != "offline" or restored or not empty or any(map(is_placeholder, dataset.user_ids)):
        return None
    items = list(zip(dataset.item_ids, dataset.item_texts, strict=True))
    work: list[tuple[MemoryKind, list[tuple[str, str]]]] = [
        ("item", items),
        ("user", user_memory_texts(dataset, graph)),
    ]
    embedding = HashingEmbedding()
    path = getattr(store, "path", None)
    lock = writer_lock(directory).fileno()
    if owned and path is not None and lock is not None and shared_hashing(store, embedding):
        close = getattr(store, "close", None)
        if callable(close):
            close()  # the child opens the folder; this process does not touch it meanwhile
        child = ChildLoad(store, work, embedding, progress=progress, path=path, keep_fds=(lock,))
        return child.start()
    return BackgroundLoad(store, work, embedding, progress=progress).start()
