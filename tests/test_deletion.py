"""Deletion that deletes: a marker planted in a user's data is found nowhere afterwards.

The user's id carries the marker (with spaces and both quotes); so do their own memory, a note
their interaction wrote into a neighbour's memory (as an LLM could), a later write on top of that
note, and a recommend request of theirs (the facet cache key). After ``delete_user`` the marker is
in no file of the store folder (catalog, candidates, graph, vectors, rules, the event log and its
WAL, Chroma's database with its log and full-text index) and no API answers with it: every version
of the neighbour's memory is scrubbed, so a rollback cannot bring the note back. A second
workspace on the same store (another process, in effect) stops serving the user before its next
read, without a restart. (The LangGraph server path is tested in tests/test_chaos_deletion.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from graph.recommend import graph as recommend_graph
from memory_store.deletion import delete_user
from memory_store.facet_cache import facet_cache_for
from memory_store.privacy_log import read_privacy, record_deletion
from memory_store.workspace import UnknownEntity, Workspace, open_workspace, workspace_for
from memory_store.writes import apply_write
from nodes.curate import curate_neighbours
from nodes.record import record_interaction
from schemas.context import MemRecContext
from services.doctor import check_workspace
from services.index import build_index
from services.worker import PropagationWorker
from tests.support.tiny_store import MARKED_USER, MARKER, grep_tree, store_folder, tiny_store


@pytest.fixture
def setup(tmp_path: Path) -> tuple[MemRecContext, Path]:
    dataset, home = tiny_store(tmp_path / "home")
    ctx = MemRecContext(
        dataset=dataset, home=str(home), roles="offline", lmmem="offline", llmrec="offline"
    )
    return ctx, store_folder(dataset, home)


def _unseen(ws: Workspace, user: str, n: int) -> list[str]:
    seen = set(ws.graph.user_items(ws.user_code(user)).tolist())
    return [ws.dataset.item_ids[i] for i in range(ws.dataset.n_items) if i not in seen][:n]


async def _plant(ws: Workspace, ctx: MemRecContext) -> None:
    """Put the marker everywhere the user's data can go."""
    mine = [record_interaction(ws, MARKED_USER, item) for item in _unseen(ws, MARKED_USER, 2)]
    record_interaction(ws, "u1", _unseen(ws, "u1", 1)[0])
    assert await PropagationWorker(ws, ctx).drain() == 3
    cause = mine[0].interaction_id
    own = ws.memory_text("user", MARKED_USER)
    apply_write(ws.memories, ws.events, "user", MARKED_USER, f"{own} Note: {MARKER}.", cause=cause)
    neighbour = ws.memory_text("user", "u2")
    note = f"Note: a neighbour ({MARKER}) loved this."
    apply_write(ws.memories, ws.events, "user", "u2", f"{neighbour} {note}", cause=cause)
    later = ws.memory_text("user", "u2") + " Note: written later by someone else."
    apply_write(ws.memories, ws.events, "user", "u2", later, cause="someone-else")
    out = await recommend_graph.ainvoke(
        {"user_id": MARKED_USER, "request": f"something like {MARKER}"}, context=ctx
    )
    assert out["ranking"]
    assert MARKER in ws.memory_text("user", "u2")


async def test_a_planted_marker_is_found_nowhere_after_deletion(
    setup: tuple[MemRecContext, Path],
) -> None:
    ctx, folder = setup
    serving = workspace_for(ctx)  # the long-lived workspace a server would hold
    await _plant(serving, ctx)
    assert grep_tree(folder, MARKER)  # it is there before
    code = serving.user_code(MARKED_USER)
    assert len(facet_cache_for(serving)) > 0

    deleter = open_workspace(ctx.dataset, home=ctx.home)  # another process, in effect
    report = delete_user(deleter, MARKED_USER)
    deleter.events.close()
    assert report.memory_deleted and report.interactions_deleted == 2
    assert report.audit_rows_scrubbed > 0 and report.compacted["user"] > 0
    assert MARKER not in report.model_dump_json()

    assert grep_tree(folder, MARKER) == []
    assert grep_tree(folder, MARKED_USER) == []

    ws = workspace_for(ctx)  # the serving workspace, on its next read: no restart
    assert ws is serving and not ws.has_user(MARKED_USER)
    assert len(facet_cache_for(ws)) == 0
    assert code in ws.opted_out and len(ws.graph.user_items(code)) == 0
    assert MARKER not in ws.memory_text("user", "u2")  # not even from the read cache
    for row in ws.events.history("user", "u2"):
        assert MARKER not in (row.previous_text or "") + row.new_text, row.version
        text = ws.events.version_text("user", "u2", row.version)
        assert text is None or MARKER not in text  # a rollback cannot restore the note
    assert "written later by someone else" in ws.memory_text("user", "u2")
    for other in ("u1", "u4"):
        curated = curate_neighbours(ws, ws.user_code(other), ws.rules(ctx.rules), ctx)
        assert all(n.ref != f"user:{MARKED_USER}" for n in curated)
    with pytest.raises(UnknownEntity):
        record_interaction(ws, MARKED_USER, "i1")
    assert ws.events.interactions(user_id=MARKED_USER) == []
    assert ws.memories.get("user", MARKED_USER) is None
    assert check_workspace(ws).ok, check_workspace(ws).problems


async def test_a_reindex_does_not_bring_a_deleted_user_back(
    setup: tuple[MemRecContext, Path],
) -> None:
    ctx, folder = setup
    ws = open_workspace(ctx.dataset, home=ctx.home)
    delete_user(ws, MARKED_USER)
    ws.events.close()
    report = build_index(ctx.dataset, home=ctx.home)  # the source data still has the user
    assert report.reused and report.memories_created == 0
    assert grep_tree(folder, MARKER) == []
    again = open_workspace(ctx.dataset, home=ctx.home)
    assert not again.has_user(MARKED_USER)
    assert check_workspace(again).ok, check_workspace(again).problems
    again.events.close()


def test_an_interrupted_deletion_is_finished_by_running_it_again(
    setup: tuple[MemRecContext, Path],
) -> None:
    ctx, folder = setup
    ws = open_workspace(ctx.dataset, home=ctx.home)
    ws.events.record_interaction(MARKED_USER, "i1")
    code = ws.user_code(MARKED_USER)
    record_deletion(ws.events.path, MARKED_USER, code)  # then the process died
    ws.events.close()
    reopened = open_workspace(ctx.dataset, home=ctx.home)
    assert not reopened.has_user(MARKED_USER)  # the tombstone already keeps them out
    assert "interaction_of_deleted_user" in {p.code for p in check_workspace(reopened).problems}
    report = delete_user(reopened, MARKED_USER)  # resolved through the tombstone's code
    assert report.interactions_deleted == 1 and report.memory_deleted
    assert grep_tree(folder, MARKER) == []
    assert check_workspace(reopened).ok
    assert read_privacy(reopened.events.path).deleted == {report.tombstone}
    reopened.events.close()
