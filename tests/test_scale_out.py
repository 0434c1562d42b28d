"""Scale-out deployment (docs/SCALE_OUT.md): memories on a Chroma server, checkpoints on Postgres.

The recommend graph served from a Chroma server (``chroma run`` on 127.0.0.1) must answer exactly
as the embedded default does. The Postgres checkpointer test runs only where
``langgraph-checkpoint-postgres`` is installed and the PostgreSQL server binaries are present.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.recommend import build_recommend_graph
from graph.recommend import graph as recommend_graph
from memory_store.cached_store import CachedMemoryStore
from memory_store.chroma_store import ChromaMemoryStore
from memory_store.workspace import Workspace, open_workspace, register_workspace
from schemas.context import MemRecContext
from services.index import build_index
from tests.support.chroma_server import chroma_server, free_port
from tests.support.fixtures import DATASET, base_workspace, copy_store, data_dir

pytestmark = pytest.mark.integration

USERS = ["1", "42", "305", "718"]


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with chroma_server(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


@pytest.fixture(scope="module")
def server_workspace(chroma_url: str, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """ml-100k indexed with its memories on the Chroma server (catalog/graph files local)."""
    home = copy_store(tmp_path_factory.mktemp("server-home"))
    report = build_index(
        DATASET, data_dir=data_dir(), home=home, memories=ChromaMemoryStore(url=chroma_url)
    )
    assert report.memories_created == report.users + report.items  # all of them went to the server
    memories = CachedMemoryStore(ChromaMemoryStore(url=chroma_url), ttl_s=5.0)
    return open_workspace(DATASET, home=home, memories=memories)


def _ctx(home: str) -> MemRecContext:
    return MemRecContext(
        dataset=DATASET,
        home=home,
        chroma_url=None,
        roles="offline",
        lmmem="offline",
        llmrec="offline",
    )


def _answer(out: dict) -> tuple:
    ranking = [(r.item_id, round(r.score, 6), r.rationale) for r in out["ranking"]]
    facets = [(f.name, round(f.confidence, 6), tuple(f.evidence)) for f in out.get("facets") or []]
    neighbours = [(n.ref, round(n.score, 6)) for n in out.get("neighbours") or []]
    return ranking, facets, neighbours


async def test_recommend_on_chroma_server_equals_embedded(
    server_workspace: Workspace, tmp_path: Path
) -> None:
    register_workspace(base_workspace(), DATASET, home=str(tmp_path / "embedded"))
    register_workspace(server_workspace, DATASET, home=str(tmp_path / "server"))
    for user in USERS:
        mine, theirs = base_workspace().memories, server_workspace.memories
        assert server_workspace.memory_text("user", user) == base_workspace().memory_text(
            "user", user
        )
        assert mine is not theirs
        embedded = await recommend_graph.ainvoke(
            {"user_id": user}, context=_ctx(str(tmp_path / "embedded"))
        )
        served = await recommend_graph.ainvoke(
            {"user_id": user}, context=_ctx(str(tmp_path / "server"))
        )
        assert len(embedded["ranking"]) == 10
        assert embedded["neighbours"], f"user {user} should have curated neighbours"
        assert _answer(served) == _answer(embedded), f"user {user}: server answer differs"


def test_server_memories_are_shared_between_clients(
    server_workspace: Workspace, chroma_url: str
) -> None:
    """What makes the scale-out work: a write by one process is read by another."""
    other = ChromaMemoryStore(url=chroma_url)
    assert other.count("user") == 943 and other.count("item") == 1682
    before = other.get("item", "1")
    assert before is not None
    embedded = base_workspace().memories.get("item", "1")
    assert embedded is not None and before.text == embedded.text
    written = server_workspace.memories.put(
        "item", "1", before.text + " Shared note.", expected_version=before.version, source="test"
    )
    try:
        after = other.get("item", "1")
        assert after is not None and after.version == written.version == before.version + 1
        assert after.text.endswith("Shared note.")
    finally:  # the other tests compare answers with the embedded store: put the text back
        server_workspace.memories.put(
            "item", "1", before.text, expected_version=written.version, source="test"
        )


async def test_chroma_url_in_the_run_context(chroma_url: str, tmp_path: Path) -> None:
    """The documented configuration: build_index(chroma_url=) and MemRecContext(chroma_url=)."""
    home = copy_store(tmp_path / "home")
    build_index(DATASET, data_dir=data_dir(), home=home, chroma_url=chroma_url)
    ctx = MemRecContext(
        dataset=DATASET,
        home=str(home),
        chroma_url=chroma_url,
        roles="offline",
        lmmem="offline",
        llmrec="offline",
    )
    register_workspace(base_workspace(), DATASET, home=str(tmp_path / "embedded"))
    served = await recommend_graph.ainvoke({"user_id": "1"}, context=ctx)
    embedded = await recommend_graph.ainvoke(
        {"user_id": "1"}, context=_ctx(str(tmp_path / "embedded"))
    )
    assert _answer(served) == _answer(embedded)


# ------------------------------------------------------------------ Postgres checkpointer

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _pg_tool(name: str) -> str | None:
    found = shutil.which(name)
    return found or (str(PG_BIN / name) if (PG_BIN / name).exists() else None)


def _missing_for_postgres() -> list[str]:
    missing = []
    if importlib.util.find_spec("langgraph.checkpoint.postgres") is None:
        missing.append("the langgraph-checkpoint-postgres package (uv sync installs it)")
    if not (_pg_tool("initdb") and _pg_tool("pg_ctl")):
        missing.append("the PostgreSQL server binaries initdb / pg_ctl (apt install postgresql)")
    return missing


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb refuses to run as root: run the server tools as the postgres user then."""
    if os.geteuid() == 0 and shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _start_cluster(root: Path) -> tuple[str, list[str]]:
    """A throwaway cluster on 127.0.0.1; returns (connection string, stop command)."""
    port = free_port()
    data = root / "data"
    root.chmod(0o777)
    init = [_pg_tool("initdb") or "initdb", "-D", str(data), "-A", "trust", "-U", "memrec"]
    subprocess.run(_as_postgres(init), check=True, capture_output=True)
    ctl = _pg_tool("pg_ctl") or "pg_ctl"
    options = f"-h 127.0.0.1 -p {port} -k {root}"
    start = [ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]
    subprocess.run(_as_postgres(start), check=True, capture_output=True)
    stop = _as_postgres([ctl, "-D", str(data), "-m", "fast", "-w", "stop"])
    return f"postgresql://memrec@127.0.0.1:{port}/postgres", stop


@pytest.mark.skipif(bool(_missing_for_postgres()), reason="; ".join(_missing_for_postgres()))
async def test_recommend_checkpoints_on_postgres(tmp_path: Path) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    register_workspace(base_workspace(), DATASET, home=str(tmp_path / "embedded"))
    root = Path(tempfile.mkdtemp(prefix="memrec-pg-"))
    conn, stop = _start_cluster(root)
    try:
        async with AsyncPostgresSaver.from_conn_string(conn) as saver:
            await saver.setup()
            graph = build_recommend_graph().compile(checkpointer=saver)
            config = {"configurable": {"thread_id": "user-1"}}
            out = await graph.ainvoke(
                {"user_id": "1"}, config=config, context=_ctx(str(tmp_path / "embedded"))
            )
            state = await graph.aget_state(config)
            assert [r.item_id for r in state.values["ranking"]] == [
                r.item_id for r in out["ranking"]
            ]
    finally:
        subprocess.run(stop, check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
