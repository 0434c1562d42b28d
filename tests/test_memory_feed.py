"""A serving process's memory cache kept fresh from the audit log (services/memory_feed.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from memory_store.cached_store import CachedMemoryStore
from memory_store.inmemory_store import InMemoryMemoryStore
from memory_store.pg_events import PgEventLog
from services import memory_feed
from services.http_api import _start_feed
from services.memory_feed import BACKSTOP_TTL_S, MemoryFeed
from tests.support.postgres import (
    fresh_dataset_name,
    pg_url,  # noqa: F401 (a fixture)
)

pytestmark = pytest.mark.slow  # a throwaway Postgres cluster


class CountingStore(InMemoryMemoryStore):
    """Counts reads that reach the store (cache misses)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, kind: Any, entity_id: str) -> Any:
        self.reads += 1
        return super().get(kind, entity_id)


def _write(store: InMemoryMemoryStore, log: PgEventLog, entity: str, text: str) -> int:
    """Another process's audited write (memory_store/writes.py: compare-and-set, then audit)."""
    current = store.get("user", entity)
    version = current.version if current else 0
    record = store.put("user", entity, text, expected_version=version, source="elsewhere")
    log.audit_write("user", entity, record.version, current.text if current else None, text, "c")
    return record.version


def _cached(url: str, inner: InMemoryMemoryStore) -> tuple[str, PgEventLog, CachedMemoryStore]:
    """A fresh dataset's event log on Postgres and a 5 s cache in front of ``inner``."""
    dataset = fresh_dataset_name("feed")
    return dataset, PgEventLog(url, dataset), CachedMemoryStore(inner, ttl_s=5.0)


def test_an_audited_write_evicts_the_older_cached_record_only(pg_url: str) -> None:  # noqa: F811
    inner = CountingStore()
    dataset, log, cache = _cached(pg_url, inner)
    _write(inner, log, "1", "likes noir")
    _write(inner, log, "2", "likes musicals")
    feed = MemoryFeed(cache, pg_url, dataset)
    feed.start()
    assert cache.ttl_s == BACKSTOP_TTL_S  # the feed answers for freshness; expiry is a backstop
    assert cache.get("user", "1").text == "likes noir"  # type: ignore[union-attr]
    assert cache.get("user", "2").text == "likes musicals"  # type: ignore[union-attr]
    assert cache.get("user", "3") is None  # a cached absence

    _write(inner, log, "1", "likes noir and westerns")
    _write(inner, log, "3", "new here")
    reads = inner.reads
    assert feed.poll() == 2  # user 1 (older version) and the cached absence of user 3
    assert cache.get("user", "1").text == "likes noir and westerns"  # type: ignore[union-attr]
    assert cache.get("user", "3").text == "new here"  # type: ignore[union-attr]
    assert cache.get("user", "2").text == "likes musicals"  # type: ignore[union-attr]
    assert inner.reads == reads + 2  # user 2 was not audited again: still served from the cache
    assert feed.poll() == 0  # rows seen again (look-back, re-check) evict nothing up to date
    feed.close()
    assert cache.ttl_s == 5.0
    log.close()


def test_a_read_that_raced_a_write_is_evicted_at_the_next_poll(pg_url: str) -> None:  # noqa: F811
    """A read begun before a write can cache the old record after the audit row was seen."""
    inner = InMemoryMemoryStore()
    dataset, log, cache = _cached(pg_url, inner)
    _write(inner, log, "1", "old")
    old = inner.get("user", "1")
    feed = MemoryFeed(cache, pg_url, dataset)
    feed.start()
    _write(inner, log, "1", "new")
    feed.poll()
    cache._keep("user", "1", old)  # the slow read lands now, with the version before the write
    assert feed.poll() == 1
    assert cache.get("user", "1").text == "new"  # type: ignore[union-attr]
    feed.close()
    log.close()


def test_the_cache_expires_on_its_own_again_when_the_feed_stalls(
    pg_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset = fresh_dataset_name("feed")
    PgEventLog(pg_url, dataset).close()
    cache = CachedMemoryStore(InMemoryMemoryStore(), ttl_s=5.0)
    feed = MemoryFeed(cache, pg_url, dataset)
    feed.start()
    feed.fall_back()
    assert cache.ttl_s == BACKSTOP_TTL_S  # polled a moment ago
    monkeypatch.setattr(memory_feed, "STALE_AFTER_S", -1.0)
    feed.fall_back()
    assert cache.ttl_s == 5.0
    feed.close()


async def test_the_serving_app_starts_a_feed_for_a_chroma_server_cache_only(
    pg_url: str,  # noqa: F811
) -> None:
    dataset = fresh_dataset_name("feed")
    PgEventLog(pg_url, dataset).close()
    embedded = SimpleNamespace(memories=CachedMemoryStore(InMemoryMemoryStore()), name=dataset)
    assert await _start_feed(embedded, pg_url) is None  # type: ignore[arg-type]
    server = SimpleNamespace(memories=CachedMemoryStore(InMemoryMemoryStore(), 5.0), name=dataset)
    assert await _start_feed(server, None) is None  # type: ignore[arg-type]
    started = await _start_feed(server, pg_url)  # type: ignore[arg-type]
    assert started is not None
    feed, task = started
    assert feed.store is server.memories and server.memories.ttl_s == BACKSTOP_TTL_S
    task.cancel()
    feed.close()
