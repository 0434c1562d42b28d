"""A per-workspace cache of synthesized facets, keyed by the versions of what they were made from.

The key holds the user id, the user memory version, the (ref, version) of every packed neighbour,
the rule set, tau, n_facets, the LMMem spec and the request, so any write to one of those memories
changes the key and a stale entry can never be served. Propagation also drops the entries that
used a memory it wrote (``invalidate``), so dead entries do not pile up.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable

from schemas.context import env_count
from schemas.records import Facet

ENTRIES_ENV = "MEMREC_FACET_CACHE_ENTRIES"
# a few KB an entry: the default bounds the cache to a few MB, reached within hours of serving
MAX_ENTRIES = env_count(ENTRIES_ENV, 1024)

FacetKey = tuple[Hashable, ...]


def copy_facet(facet: Facet) -> Facet:
    """``facet.model_copy(deep=True)``, about 4x cheaper.

    A Facet's only mutable field is its list of evidence refs (``tests/test_facet_cache.py``
    checks the fields).
    """
    copied = facet.model_copy()
    copied.__dict__["evidence"] = list(facet.evidence)  # not an assignment: fields set unchanged
    return copied


class FacetCache:
    """LRU map from a facet key to facets, with a reverse index from memory ref to keys."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError(f"FacetCache: max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[FacetKey, list[Facet]] = OrderedDict()
        self._by_ref: dict[str, set[FacetKey]] = {}
        self._refs: dict[FacetKey, tuple[str, ...]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: FacetKey) -> list[Facet] | None:
        """Cached facets (copies) for ``key``, or None."""
        with self._lock:
            facets = self._entries.get(key)
            if facets is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return [copy_facet(f) for f in facets]

    def put(self, key: FacetKey, facets: list[Facet], refs: tuple[str, ...]) -> None:
        """Store facets made from the memories ``refs`` ('user:<id>' / 'item:<id>')."""
        with self._lock:
            self._drop(key)
            self._entries[key] = [copy_facet(f) for f in facets]
            self._refs[key] = refs
            for ref in refs:
                self._by_ref.setdefault(ref, set()).add(key)
            while len(self._entries) > self.max_entries:
                self._drop(next(iter(self._entries)))

    def latest_for(self, ref: str) -> list[Facet] | None:
        """The most recently used facets built with the memory ``ref`` (copies), or None.

        Propagation hands a user's latest facets (M_collab) to its one call without a second
        model call; stale entries were dropped by ``invalidate``.
        """
        with self._lock:
            keys = self._by_ref.get(ref)
            if not keys:
                return None
            latest = max(keys, key=list(self._entries).index)
            return [copy_facet(f) for f in self._entries[latest]]

    def invalidate(self, kind: str, entity_id: str) -> int:
        """Drop every entry built from that memory; returns how many went."""
        with self._lock:
            keys = list(self._by_ref.get(f"{kind}:{entity_id}", ()))
            for key in keys:
                self._drop(key)
            return len(keys)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
            self._by_ref.clear()
            self._refs.clear()

    def snapshot(self) -> list[tuple[tuple[str, ...], list[Facet]]]:
        """Every entry as (the memory refs it was built from, its facets): for leak checks."""
        with self._lock:
            return [(self._refs.get(k, ()), list(v)) for k, v in self._entries.items()]

    def _drop(self, key: FacetKey) -> None:
        self._entries.pop(key, None)
        for ref in self._refs.pop(key, ()):
            keys = self._by_ref.get(ref)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_ref[ref]


_CACHES: weakref.WeakKeyDictionary[object, FacetCache] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def facet_cache_for(ws: object) -> FacetCache:
    """The facet cache of a workspace (created on first use, gone with the workspace)."""
    with _LOCK:
        cache = _CACHES.get(ws)
        if cache is None:
            cache = _CACHES[ws] = FacetCache()
        return cache
