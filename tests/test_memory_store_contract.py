"""One contract suite for every MemoryStore: in-memory, embedded Chroma, Chroma over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memory_store.cached_store import CachedMemoryStore
from memory_store.chroma_client import HNSW_SETTINGS, metadata_for
from memory_store.chroma_store import ChromaMemoryStore
from memory_store.embeddings import HashingEmbedding
from memory_store.inmemory_store import InMemoryMemoryStore
from memory_store.memories import MemoryRecord, MemoryStore, VersionConflict
from memory_store.writer_lock import writer_lock
from tests.support.chroma_server import chroma_server

DOCS = [
    ("g1", "open world fantasy role playing game with dragons and magic"),
    ("g2", "racing simulator with realistic cars and tracks"),
    ("g3", "puzzle platformer for kids with colorful levels"),
    ("g4", "first person shooter multiplayer war game"),
]

_counter = iter(range(1_000_000))


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with chroma_server(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


@pytest.fixture(
    params=[
        "inmemory",
        "chroma-embedded",
        "chroma-embedded-writer",
        pytest.param("chroma-http", marks=pytest.mark.integration),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryStore]:
    if request.param == "inmemory":
        yield InMemoryMemoryStore()
        return
    lock = None
    if request.param.startswith("chroma-embedded"):
        chroma = ChromaMemoryStore(path=tmp_path / "chroma")
        if request.param == "chroma-embedded-writer":  # the writer lock held: versions kept
            lock = writer_lock(tmp_path)
            lock.acquire()
    else:
        # one server for the session: a fresh prefix gives each test its own collections
        url = request.getfixturevalue("chroma_url")
        chroma = ChromaMemoryStore(url=url, prefix=f"t{next(_counter)}")
    try:
        yield chroma
    finally:
        chroma.close()
        if lock is not None:
            lock.release()


def test_store_satisfies_protocol(store: MemoryStore) -> None:
    assert isinstance(store, MemoryStore)


def test_put_get_roundtrip_with_metadata(store: MemoryStore) -> None:
    before = time.time()
    written = store.put("user", "u1", "likes strategy games", expected_version=0, source="warmup")
    got = store.get("user", "u1")
    assert got == written
    assert (got.kind, got.entity_id, got.text, got.version, got.source) == (
        "user",
        "u1",
        "likes strategy games",
        1,
        "warmup",
    )
    assert before <= got.updated_at <= time.time()
    assert store.get("item", "u1") is None  # kinds are separate namespaces
    assert store.get("user", "missing") is None


def test_versions_increase_by_one_per_write(store: MemoryStore) -> None:
    for version in range(3):
        record = store.put(
            "item", "i1", f"text {version}", expected_version=version, source=f"ev{version}"
        )
        assert record.version == version + 1
    current = store.get("item", "i1")
    assert (current.version, current.text, current.source) == (3, "text 2", "ev2")


def test_cas_conflict_raises_and_leaves_record_unchanged(store: MemoryStore) -> None:
    store.put("user", "u1", "first", expected_version=0, source="a")
    store.put("user", "u1", "second", expected_version=1, source="b")
    with pytest.raises(VersionConflict) as info:
        store.put("user", "u1", "stale write", expected_version=1, source="c")
    assert (info.value.expected, info.value.actual) == (1, 2)
    current = store.get("user", "u1")
    assert (current.text, current.version, current.source) == ("second", 2, "b")


def test_create_on_existing_record_conflicts(store: MemoryStore) -> None:
    store.put("item", "i1", "original", expected_version=0, source="a")
    with pytest.raises(VersionConflict):
        store.put("item", "i1", "duplicate create", expected_version=0, source="b")
    with pytest.raises(VersionConflict):
        store.put("item", "absent", "update of nothing", expected_version=1, source="b")
    assert store.get("item", "i1").text == "original"
    assert store.get("item", "absent") is None


def test_put_many_writes_what_holds_and_reports_conflicts(store: MemoryStore) -> None:
    store.bulk_init("item", DOCS, source="warmup")
    store.put("item", "g2", "racing, now with notes", expected_version=1, source="other")
    out = store.put_many(
        "item",
        [("g1", "dragons v2", 1), ("g2", "stale write", 1), ("g3", "puzzles v2", 1)],
        source="job-1",
    )
    assert set(out.written) == {"g1", "g3"} and out.conflicts == {"g2": 2}
    assert [out.written[i].version for i in ("g1", "g3")] == [2, 2]
    assert store.get("item", "g1") == out.written["g1"]
    assert store.get("item", "g2").text == "racing, now with notes"  # the conflict wrote nothing
    got = store.get_many("item", ["g1", "g3"])
    assert {i: (r.text, r.source) for i, r in got.items()} == {
        "g1": ("dragons v2", "job-1"),
        "g3": ("puzzles v2", "job-1"),
    }
    hits = store.search("item", "dragons v2", k=1)
    assert hits[0][0].entity_id == "g1"  # the new text was embedded and indexed


def test_bulk_init_is_idempotent(store: MemoryStore) -> None:
    store.put("item", "g2", "already written", expected_version=0, source="earlier")
    ticks: list[int] = []
    created = store.bulk_init("item", DOCS, source="warmup", progress=ticks.append)
    assert created == 3
    assert sum(ticks) == len(DOCS)
    assert store.get("item", "g2").text == "already written"  # existing record untouched
    assert store.get("item", "g1").version == 1
    assert store.get("item", "g1").source == "warmup"
    assert store.bulk_init("item", DOCS, source="warmup") == 0
    assert {r.version for r in store.get_many("item", [d[0] for d in DOCS]).values()} == {1}
    assert store.count("item") == 4


def test_bulk_init_keeps_first_text_of_repeated_id(store: MemoryStore) -> None:
    assert store.bulk_init("user", [("u1", "first"), ("u1", "second")], source="w") == 1
    assert store.get("user", "u1").text == "first"


def test_get_many_skips_missing_ids(store: MemoryStore) -> None:
    store.bulk_init("item", DOCS, source="warmup")
    got = store.get_many("item", ["g1", "nope", "g3", "g1"])
    assert set(got) == {"g1", "g3"}
    assert got["g3"].text == DOCS[2][1]
    assert store.get_many("item", []) == {}


def test_search_ranks_closest_first_and_honours_exclude(store: MemoryStore) -> None:
    store.bulk_init("item", DOCS, source="warmup")
    hits = store.search("item", "fantasy role playing with dragons", k=2)
    assert [r.entity_id for r, _ in hits][0] == "g1"
    assert len(hits) == 2
    assert hits[0][1] > hits[1][1]
    assert all(-1.0 <= sim <= 1.0 for _, sim in hits)
    without = store.search("item", "fantasy role playing with dragons", k=10, exclude=["g1"])
    assert [r.entity_id for r, _ in without] and "g1" not in {r.entity_id for r, _ in without}
    assert len(without) == 3
    assert store.search("user", "anything", k=3) == []


def test_search_similarity_is_cosine_of_stored_vectors(store: MemoryStore) -> None:
    store.bulk_init("item", DOCS, source="warmup")
    query = "realistic racing cars"
    q = HashingEmbedding().embed_texts([query])[0]
    stored = store.embeddings("item", [d[0] for d in DOCS])
    for record, sim in store.search("item", query, k=4):
        assert sim == pytest.approx(float(np.dot(q, stored[record.entity_id])), abs=1e-4)


def test_embeddings_have_the_embedding_dim(store: MemoryStore) -> None:
    store.bulk_init("item", DOCS, source="warmup")
    vectors = store.embeddings("item", ["g1", "g2", "missing"])
    assert set(vectors) == {"g1", "g2"}
    assert all(len(v) == 256 for v in vectors.values())
    assert np.linalg.norm(vectors["g1"]) == pytest.approx(1.0, abs=1e-5)
    assert vectors["g1"] != vectors["g2"]


def test_delete_ids_and_count(store: MemoryStore) -> None:
    store.bulk_init("user", [("u1", "a b"), ("u2", "c d"), ("u3", "e f")], source="w")
    assert sorted(store.ids("user")) == ["u1", "u2", "u3"]
    assert store.count("user") == 3 and store.count("item") == 0
    store.delete("user", "u2")
    store.delete("user", "never-existed")
    assert sorted(store.ids("user")) == ["u1", "u3"]
    assert store.count("user") == 2
    assert store.get("user", "u2") is None
    assert store.put("user", "u2", "again", expected_version=0, source="w").version == 1


def test_unknown_kind_is_rejected(store: MemoryStore) -> None:
    with pytest.raises(ValueError, match="accepted: user, item"):
        store.get("users", "u1")  # type: ignore[arg-type]


def test_concurrent_cas_writers_lose_no_update(store: MemoryStore) -> None:
    store.put("user", "hot", "", expected_version=0, source="init")
    writers, writes_each = 4, 5
    successes: list[str] = []
    conflicts = [0]
    guard = threading.Lock()

    def writer(name: str) -> None:
        done = 0
        while done < writes_each:
            current = store.get("user", "hot")
            try:
                store.put(
                    "user",
                    "hot",
                    f"{current.text} {name}-{done}".strip(),
                    expected_version=current.version,
                    source=name,
                )
            except VersionConflict:
                with guard:
                    conflicts[0] += 1
                continue
            with guard:
                successes.append(f"{name}-{done}")
            done += 1

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    final = store.get("user", "hot")
    assert len(successes) == writers * writes_each
    assert final.version == 1 + len(successes)
    # every successful write's token survives: no write overwrote another it had not seen
    assert sorted(final.text.split()) == sorted(successes)


def test_chroma_embedded_reopens_persisted_data(tmp_path: Path) -> None:
    with ChromaMemoryStore(path=tmp_path / "db") as first:
        first.bulk_init("item", DOCS, source="warmup")
        first.put("item", "g1", "rewritten", expected_version=1, source="ev")
    with ChromaMemoryStore(path=tmp_path / "db") as reopened:
        assert reopened.count("item") == 4
        assert reopened.get("item", "g1").version == 2
        assert reopened.get("item", "g1").text == "rewritten"
        assert reopened.search("item", "racing cars", k=1)[0][0].entity_id == "g2"


def test_chroma_reads_a_store_written_with_documents_and_writes_over_it(tmp_path: Path) -> None:
    """Stores indexed before the text moved to the metadata keep working."""
    with ChromaMemoryStore(path=tmp_path / "db") as store:
        old = store._collection("item")  # the former layout: text in the documents
        old.add(
            ids=["g1"],
            embeddings=store.embedding_function(["dragons"]),
            documents=["dragons and magic"],
            metadatas=[{"entity_id": "g1", "version": 1, "updated_at": 1.0, "source": "warmup"}],
        )
        assert store.get("item", "g1").text == "dragons and magic"
        store.put("item", "g1", "dragons, rewritten", expected_version=1, source="ev")
        assert store.get("item", "g1").text == "dragons, rewritten"
        assert store.search("item", "dragons rewritten", k=1)[0][0].text == "dragons, rewritten"


def test_chroma_refuses_a_different_embedding_config(tmp_path: Path) -> None:
    with ChromaMemoryStore(path=tmp_path / "db") as first:
        first.put("user", "u1", "x", expected_version=0, source="w")
    with pytest.raises(ValueError, match="built with embedding"):
        ChromaMemoryStore(path=tmp_path / "db", embedding=HashingEmbedding(dim=64))


def test_chroma_rejects_bad_location() -> None:
    with pytest.raises(ValueError, match="not both"):
        ChromaMemoryStore(path=Path("x"), url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="expected http"):
        ChromaMemoryStore(url="ftp://127.0.0.1:1")


def test_inmemory_copy_is_independent() -> None:
    original = InMemoryMemoryStore()
    original.bulk_init("item", DOCS, source="warmup")
    clone = original.copy()
    clone.put("item", "g1", "changed in clone", expected_version=1, source="ev")
    clone.delete("item", "g2")
    assert original.get("item", "g1").text == DOCS[0][1]
    assert original.count("item") == 4 and clone.count("item") == 3
    assert clone.search("item", "racing cars", k=4, exclude=[])[0][0].entity_id != "g2"
    assert original.search("item", "racing cars", k=1)[0][0].entity_id == "g2"


def test_inmemory_from_store_keeps_versions(tmp_path: Path) -> None:
    with ChromaMemoryStore(path=tmp_path / "db") as source:
        source.bulk_init("item", DOCS, source="warmup")
        source.put("item", "g3", "puzzle game, now rewritten", expected_version=1, source="ev9")
        source.put("user", "u1", "likes puzzles", expected_version=0, source="w")
        copied = InMemoryMemoryStore.from_store(source)
        assert copied.get_many("item", source.ids("item")) == source.get_many(
            "item", source.ids("item")
        )
    assert copied.get("item", "g3").version == 2
    assert copied.get("user", "u1").source == "w"
    assert copied.search("item", "rewritten puzzle", k=1)[0][0].entity_id == "g3"


# -- HashingEmbedding -----------------------------------------------------------------------------


def test_hashing_embedding_is_deterministic_and_normalised() -> None:
    texts = ["Action thriller games", "", "cooking recipes for kids"]
    first = HashingEmbedding().embed_texts(texts)
    second = HashingEmbedding().embed_texts(texts)  # a fresh instance: no shared cache
    assert first.dtype == np.float32 and first.shape == (3, 256)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(HashingEmbedding(dim=64).embed_texts(texts).shape, (3, 64))


def test_hashing_embedding_similar_texts_are_closer() -> None:
    e = HashingEmbedding()
    v = e.embed_texts(
        ["thriller", "thrillers", "gardening", "a dark action thriller", "action thrillers"]
    )
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # character trigrams link word forms
    assert v[3] @ v[4] > v[3] @ v[2]
    assert float(v[3] @ v[3]) == pytest.approx(1.0, abs=1e-5)


def test_hashing_embedding_is_case_and_order_aware() -> None:
    e = HashingEmbedding()
    a, b, c = e.embed_texts(["Role Playing Game", "role playing game", "game playing role"])
    np.testing.assert_allclose(a, b)
    assert 0.5 < float(a @ c) < 0.999  # same words, different bigrams


def test_hashing_embedding_is_a_chroma_embedding_function() -> None:
    e = HashingEmbedding(dim=128)
    assert not e.is_legacy()
    rebuilt = HashingEmbedding.build_from_config(e.get_config())
    assert rebuilt.get_config() == e.get_config()
    out = e(["hello world"])
    assert isinstance(out, list) and out[0].shape == (128,)
    with pytest.raises(ValueError, match="cannot change"):
        e.validate_config_update(e.get_config(), {**e.get_config(), "dim": 256})


def test_langchain_adapter_backs_a_chroma_store(tmp_path: Path) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from memory_store.embeddings import LangChainEmbeddingFunction

    function = LangChainEmbeddingFunction(DeterministicFakeEmbedding(size=32), "fake:32")
    assert not function.is_legacy()
    with ChromaMemoryStore(path=tmp_path / "db", embedding=function) as chroma:
        chroma.bulk_init("item", DOCS, source="w")
        assert {len(v) for v in chroma.embeddings("item", ["g1", "g4"]).values()} == {32}
        # the fake embeds a text deterministically, so a stored text finds itself first
        assert chroma.search("item", DOCS[3][1], k=1)[0][0].entity_id == "g4"
    other = LangChainEmbeddingFunction(DeterministicFakeEmbedding(size=32), "fake:other")
    with pytest.raises(ValueError, match="built with embedding"):
        ChromaMemoryStore(path=tmp_path / "db", embedding=other)


# ------------------------------------------------------------- the embedded writer's write path


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[tuple[ChromaMemoryStore, Any]]:
    """An embedded store whose process holds the writer lock (its versions kept)."""
    chroma = ChromaMemoryStore(path=tmp_path / "chroma")
    lock = writer_lock(tmp_path)
    lock.acquire()
    try:
        yield chroma, lock
    finally:
        chroma.close()
        lock.release()


def _at_version_2(chroma: ChromaMemoryStore, kind: Any, entity_id: str) -> None:
    chroma.bulk_init(kind, [(entity_id, "first")], "warmup")
    chroma.put(kind, entity_id, "second", expected_version=1, source="a")


def test_the_writer_keeps_versions_and_still_refuses_a_stale_write(
    writer: tuple[ChromaMemoryStore, Any],
) -> None:
    chroma, _ = writer
    _at_version_2(chroma, "user", "u1")
    assert chroma._writer.versions["user"]["u1"] == 2
    reads = []
    real_get = chroma._collections["user"].get

    def counting_get(*args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs.get("ids"))
        return real_get(*args, **kwargs)

    chroma._collections["user"].get = counting_get  # type: ignore[method-assign]
    with pytest.raises(VersionConflict):  # stale: version 1 was overwritten
        chroma.put("user", "u1", "lost", expected_version=1, source="b")
    chroma.put("user", "u1", "third", expected_version=2, source="c")
    assert reads == []  # the compare-and-set read no version back from Chroma
    assert chroma.get("user", "u1").text == "third"  # type: ignore[union-attr]
    chroma.delete("user", "u1")  # a delete forgets the kept versions of its kind
    assert "user" not in chroma._writer.versions
    chroma.put("user", "u1", "again", expected_version=0, source="d")
    assert chroma.get("user", "u1").version == 1  # type: ignore[union-attr]


def test_versions_are_read_again_after_the_writer_lock_was_given_up(
    writer: tuple[ChromaMemoryStore, Any],
) -> None:
    """Another process may write while this one does not hold the lock: no lost update."""
    chroma, lock = writer
    _at_version_2(chroma, "item", "i1")
    lock.release()
    # another writer (the same database through its own client, as another process would)
    chroma._collections["item"].upsert(
        ids=["i1"],
        embeddings=np.eye(1, HashingEmbedding().dim, dtype=np.float32),
        metadatas=[metadata_for("i1", 3, 0.0, "other", "theirs")],
    )
    lock.acquire()
    with pytest.raises(VersionConflict):  # it expected 2, the store holds 3
        chroma.put("item", "i1", "mine", expected_version=2, source="b")
    chroma.put("item", "i1", "mine", expected_version=3, source="b")
    assert chroma.get("item", "i1").version == 4  # type: ignore[union-attr]


def test_the_first_write_sets_the_write_settings_on_a_store_built_before(tmp_path: Path) -> None:
    chroma = ChromaMemoryStore(path=tmp_path / "chroma")
    chroma.bulk_init("user", [("u1", "first")], "warmup")
    chroma._collections["user"].modify(configuration={"hnsw": {"sync_threshold": 1000}})
    chroma.close()

    def threshold(store: ChromaMemoryStore) -> int:
        return int((store._collections["user"].configuration_json or {})["hnsw"]["sync_threshold"])

    reopened = ChromaMemoryStore(path=tmp_path / "chroma")
    try:
        reopened.get("user", "u1")
        assert threshold(reopened) == 1000  # opening and reading change nothing (a reader)
        reopened.put("user", "u1", "second", expected_version=1, source="a")
        assert threshold(reopened) == HNSW_SETTINGS["sync_threshold"] == 100
    finally:
        reopened.close()


def test_a_cache_in_front_learns_a_commit_before_its_writers_do(tmp_path: Path) -> None:
    chroma = ChromaMemoryStore(path=tmp_path / "chroma")
    cached = CachedMemoryStore(chroma)
    try:
        chroma.bulk_init("user", [("u1", "first")], "warmup")
        assert cached.get("user", "u1").version == 1  # type: ignore[union-attr]
        chroma.put("user", "u1", "second", expected_version=1, source="a")  # past the cache
        assert cached.get("user", "u1").text == "second"  # type: ignore[union-attr]
        old = MemoryRecord(kind="user", entity_id="u1", text="first", version=1, updated_at=0.0,
                           source="warmup")  # fmt: skip
        cached._written("user", [old])  # a late report of an older write keeps the newer
        assert cached.get("user", "u1").version == 2  # type: ignore[union-attr]
    finally:
        chroma.close()
