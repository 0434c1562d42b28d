"""MEMREC_EMBEDDING selects an OpenAI-compatible embedding for the Chroma memories."""

from pathlib import Path

import pytest

from memory_store.workspace import open_workspace
from services.index import build_index
from tests.support.openai_server import OpenAITestServer

pytestmark = pytest.mark.integration


def _generic_dataset(folder: Path) -> Path:
    folder.mkdir()
    rows = ["user_id,item_id,timestamp"]
    for u in range(4):
        rows += [f"u{u},i{(u + j) % 6},{100 * u + j}" for j in range(4)]
    (folder / "interactions.csv").write_text("\n".join(rows) + "\n")
    titles = ["space opera", "space western", "quiet drama", "court drama", "cooking show", "chef"]
    items = ["item_id,title"] + [
        f"i{i},{t}" for i, t in enumerate(titles)
    ]  # 6: too few for 9 negatives
    (folder / "items.csv").write_text("\n".join(items) + "\n")
    return folder


def test_memories_are_embedded_by_the_configured_endpoint(tmp_path, monkeypatch) -> None:
    dataset = _generic_dataset(tmp_path / "tiny")
    with OpenAITestServer() as server:
        monkeypatch.setenv("MEMREC_EMBEDDING", f"openai-compatible:embed-test@{server.url}/v1")
        report = build_index(str(dataset), home=tmp_path / "home")
        assert "test-n10" in report.skipped_candidates  # indexed anyway, that benchmark skipped
        ws = open_workspace(str(dataset), home=tmp_path / "home")
        hits = ws.memories.search("item", "space", 2)
        embedded = [r for r in server.requests if r.path.endswith("/embeddings")]
    assert embedded, "the memories were not embedded through the endpoint"
    assert len(hits) == 2 and all(rec.kind == "item" for rec, _ in hits)
