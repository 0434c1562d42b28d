"""Privacy of collaborative memory: opt-out of serving as a neighbour, deleting a user."""

from __future__ import annotations

from pathlib import Path

from memory_store.privacy_log import read_privacy, tombstone_of
from memory_store.summaries import notes_of
from memory_store.workspace import Workspace, open_workspace
from nodes.curate import curate_neighbours
from nodes.record import record_interaction
from schemas.context import MemRecContext
from services.doctor import check_workspace
from services.privacy import delete_user, load_privacy, set_opt_out
from tests.support.fixtures import TINY_MOVIES, copy_store, workspace_fixtures
from tests.support.propagation import propagate

DATASET = TINY_MOVIES
ws, ctx = workspace_fixtures(DATASET)


def _user_neighbours(ws: Workspace, ctx: MemRecContext, user: str) -> list[str]:  # noqa: F811
    curated = curate_neighbours(ws, ws.user_code(user), ws.rules(ctx.rules), ctx)
    return [n.ref[5:] for n in curated if n.kind == "user"]


def _unseen_item(ws: Workspace, user: str, skip: int = 0) -> str:  # noqa: F811
    seen = set(ws.graph.user_items(ws.user_code(user)).tolist())
    free = [i for i in range(ws.dataset.n_items) if i not in seen]
    return ws.dataset.item_ids[free[skip]]


async def _interact(ws: Workspace, ctx: MemRecContext, user: str, skip: int = 0):  # noqa: F811
    event = record_interaction(ws, user, _unseen_item(ws, user, skip))
    return await propagate(ws, ctx, event)


async def test_opted_out_user_is_never_curated_nor_patched(ws, ctx) -> None:  # noqa: F811
    before = _user_neighbours(ws, ctx, "1")
    target = before[0]
    set_opt_out(ws, target)
    assert target not in _user_neighbours(ws, ctx, "1")
    version = ws.memories.get("user", target).version
    report = await _interact(ws, ctx, "1")
    assert report.writes and f"user:{target}" not in {w.ref for w in report.writes}
    assert ws.memories.get("user", target).version == version
    set_opt_out(ws, target, False)  # opting back in restores it
    assert target in _user_neighbours(ws, ctx, "1")


def test_opt_out_is_persisted_and_loaded(ws) -> None:  # noqa: F811
    set_opt_out(ws, "5")
    set_opt_out(ws, "6")
    set_opt_out(ws, "6", False)
    assert read_privacy(ws.events.path).opted_out == {"5"}
    ws.opted_out.clear()
    load_privacy(ws)
    assert ws.opted_out == {ws.user_code("5")}


def test_open_workspace_loads_opt_outs(tmp_path: Path) -> None:
    home = copy_store(tmp_path / "home", DATASET)
    first = open_workspace(DATASET, home=home)
    set_opt_out(first, "9")
    first.events.close()
    second = open_workspace(DATASET, home=home)
    assert second.opted_out == {second.user_code("9")}
    second.events.close()


async def test_delete_user_reverts_their_patches(ws, ctx) -> None:  # noqa: F811
    victim = "1"
    first = await _interact(ws, ctx, victim)
    second = await _interact(ws, ctx, victim, skip=1)
    patched = {w.ref for r in (first, second) for w in r.writes} - {f"user:{victim}"}
    caused = ws.events.writes_caused_by_user(victim)
    added_notes = {
        (row.kind, row.entity_id, note)
        for row in caused
        for note in notes_of(row.new_text)
        if note not in notes_of(row.previous_text or "")
    }
    assert added_notes
    # someone else writes after the victim into a shared neighbour: that write must survive
    other = next(u for u in _user_neighbours(ws, ctx, victim) if u != victim)
    later = await _interact(ws, ctx, other, skip=3)
    assert later.writes

    code = ws.user_code(victim)
    report = delete_user(ws, victim)
    assert report.memory_deleted and report.interactions_deleted == 2
    assert set(report.reverted) | set(report.notes_removed) <= patched
    assert ws.memories.get("user", victim) is None
    assert ws.events.interactions(user_id=victim) == []
    assert ws.events.history("user", victim) == []
    for kind, entity, note in added_notes:
        text = ws.memory_text(kind, entity)
        assert note not in text, (kind, entity)
    for write in later.writes:  # the later user's own writes are still there
        kind, entity = write.ref.split(":", 1)
        if write.ref == f"user:{victim}":
            continue  # the victim's memory is gone, with every patch it received
        assert ws.events.applied(later.interaction_id, kind, entity)
        assert ws.memories.get(kind, entity) is not None
    assert code in ws.opted_out and not ws.has_user(victim)
    assert victim not in _user_neighbours(ws, ctx, other)
    assert check_workspace(ws).ok, check_workspace(ws).problems
    again = delete_user(ws, victim)  # idempotent: nothing left to do
    assert not again.reverted and not again.notes_removed and again.interactions_deleted == 0
    assert read_privacy(ws.events.path).deleted == {tombstone_of(victim)}  # not the id itself
