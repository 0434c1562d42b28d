"""Chroma embedded against a Chroma server on loopback: memory store operation latency.

Both stores are ``memory_store.chroma_store.ChromaMemoryStore`` (the class the workspace uses),
filled with the same synthetic item memories: an embedded ``PersistentClient`` in a temporary
folder, and ``HttpClient`` against ``chroma run`` on 127.0.0.1
(``tests/support/chroma_server.py``). Operations: ``get`` (one id), ``get_many`` (16 ids),
``search`` (k=20, the query embedded locally) and a compare-and-set ``put`` (read the version,
write version + 1). The read-through cache in front of the store (``CachedMemoryStore``) is
deliberately not used: these are the store's own costs.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import BenchOptions, BenchResult, finish, new_result, summary
from bench.synthetic import WORDS
from memory_store.chroma_store import ChromaMemoryStore
from tests.support.chroma_server import chroma_server

NAME = "chroma"
METHOD = (
    "ChromaMemoryStore over an embedded PersistentClient vs HttpClient to `chroma run` on "
    "127.0.0.1 (same machine, same data). Each operation timed with perf_counter over N "
    "repetitions on random ids after 10 warm-up calls; p50/p99 in ms."
)


def _texts(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    words = rng.integers(0, len(WORDS), size=(n, 12))
    return [(f"i{i}", " ".join(WORDS[w] for w in row)) for i, row in enumerate(words)]


def _time(op: Callable[[int], object], reps: int) -> list[float]:
    for n in range(10):
        op(n)
    out = []
    for n in range(reps):
        started = time.perf_counter()
        op(n)
        out.append((time.perf_counter() - started) * 1000.0)
    return out


def _measure(store: ChromaMemoryStore, n_items: int, reps: int) -> dict[str, list[float]]:
    rng = np.random.default_rng(1)
    ids = [f"i{i}" for i in rng.integers(0, n_items, size=(reps + 10) * 16)]
    queries = [" ".join(WORDS[w] for w in rng.integers(0, len(WORDS), 6)) for _ in range(reps + 10)]

    def put(n: int) -> object:
        current = store.get("item", ids[n])
        assert current is not None
        return store.put(
            "item", ids[n], current.text + " x", expected_version=current.version, source="bench"
        )

    return {
        "get": _time(lambda n: store.get("item", ids[n]), reps),
        "get_many(16)": _time(lambda n: store.get_many("item", ids[n * 16 : n * 16 + 16]), reps),
        "search(k=20)": _time(lambda n: store.search("item", queries[n], 20), reps),
        "CAS put": _time(put, reps),
    }


def run(opts: BenchOptions) -> BenchResult:
    """Run the Chroma benchmark and write ``chroma.json``."""
    n_items = opts.size(20_000, 5_000, 300)
    reps = opts.size(300, 100, 10)
    result = new_result(NAME, opts, METHOD, items=n_items, repetitions=reps)
    pairs = _texts(n_items)
    with tempfile.TemporaryDirectory() as tmp:
        embedded = ChromaMemoryStore(path=Path(tmp) / "embedded")
        with chroma_server(Path(tmp)) as url:
            remote = ChromaMemoryStore(url=url)
            for label, store in (("embedded", embedded), ("server", remote)):
                started = time.perf_counter()
                store.bulk_init("item", pairs, "bench")
                fill_s = time.perf_counter() - started
                for op, values in _measure(store, n_items, reps).items():
                    s = summary(values)
                    result.rows.append(
                        {
                            "store": label,
                            "operation": op,
                            "p50_ms": s["p50"],
                            "p99_ms": s["p99"],
                            "mean_ms": s["mean"],
                            "n": s["n"],
                            "fill_s": round(fill_s, 2),
                        }
                    )
            remote.close()
        embedded.close()
    finish(result, opts)
    return result
