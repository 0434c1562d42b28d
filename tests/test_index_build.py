"""The index build's shortcuts give the same store: vectors computed once, files not read back.

The build embeds every memory text once for both Chroma and the vectors file, adds the memories
on a thread while it writes the candidate files, keeps memory text out of Chroma's full-text
index, and returns candidate lists as made instead of reading them back. None of that may change
what is stored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dataio.candidates import candidates_path, make_candidates, read_candidates
from dataio.paths import store_dir
from memory_store.catalog import load_catalog
from memory_store.chroma_client import TEXT_KEY
from memory_store.chroma_store import ChromaMemoryStore
from memory_store.embeddings import HashingEmbedding
from memory_store.vectors import MemoryVectors
from services.index import build_index
from tests.support.fixtures import TINY_MOVIES


def test_index_stores_one_embedding_per_text_and_the_same_candidates(tmp_path: Path) -> None:
    report = build_index(TINY_MOVIES, home=tmp_path)
    assert report.memories_created == report.users + report.items
    directory = store_dir(TINY_MOVIES, tmp_path)
    dataset, split = load_catalog(directory)
    vectors = MemoryVectors.load(directory)
    with ChromaMemoryStore(path=directory / "chroma") as store:
        users = store.get_many("user", dataset.user_ids)
        items = store.get_many("item", dataset.item_ids)
        stored = store.embeddings("user", dataset.user_ids[:5])
        raw = store._collection("user").get(
            ids=dataset.user_ids[:3], include=["documents", "metadatas"]
        )
    embed = HashingEmbedding().embed_texts
    # the vectors file holds exactly the embeddings of the stored texts ...
    np.testing.assert_allclose(vectors.users, embed([users[u].text for u in dataset.user_ids]))
    np.testing.assert_allclose(vectors.items, embed([items[i].text for i in dataset.item_ids]))
    # ... and Chroma the same vectors, with the text in the metadata, not the documents
    for row, user in enumerate(dataset.user_ids[:5]):
        np.testing.assert_allclose(stored[user], vectors.users[row], atol=1e-6)
    assert raw["documents"] == [None, None, None]
    assert [m[TEXT_KEY] for m in raw["metadatas"]] == [users[u].text for u in raw["ids"]]
    for which in ("valid", "test"):  # the files hold what the protocol makes, read back intact
        made = make_candidates(dataset, split, which, 10, 0)
        assert read_candidates(candidates_path(directory, which, 10, 0), dataset).users == made
    again = build_index(TINY_MOVIES, home=tmp_path)  # a second run changes nothing
    assert again.memories_created == 0 and again.reused
    np.testing.assert_array_equal(MemoryVectors.load(directory).users, vectors.users)
