"""The ablation table: each row removes exactly one mechanism, and its warm-up writes accordingly.

``evaluation/methods.py`` holds the one table; the warm-up records every validation interaction
in the graph for every method, and propagation writes what the method's switches allow.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests/support/fixtures.py are parameters)

from __future__ import annotations

from dataclasses import fields

from evaluation.methods import AGENTIC_METHODS, get_method, method_context, write_switches
from evaluation.warmup import warm_up
from memory_store.workspace import Workspace
from schemas.context import MemRecContext
from tests.support.fixtures import TINY_MOVIES, workspace_fixtures

ws, ctx = workspace_fixtures(TINY_MOVIES)
DEFAULTS = MemRecContext(dataset="x", home="h", chroma_url=None, roles="offline")


def test_every_ablation_row_differs_from_memrec_in_exactly_one_switch() -> None:
    assert get_method("memrec").switches == {}
    names = {f.name for f in fields(MemRecContext)}
    rows = [get_method(m) for m in AGENTIC_METHODS if m != "memrec"]
    assert {r.name for r in rows} == {
        "memrec-no-read",
        "memrec-no-write",
        "memrec-generic-rules",
        "naive-collab",
        "isolated",
        "vanilla",
    }
    for row in rows:
        assert len(row.switches) == 1, row
        ((key, value),) = row.switches.items()
        assert key in names and getattr(DEFAULTS, key) != value, row
        changed = {
            f.name
            for f in fields(MemRecContext)
            if getattr(method_context(row, DEFAULTS), f.name) != getattr(DEFAULTS, f.name)
        }
        assert changed == {key}, row
    assert len({tuple(r.switches.items()) for r in rows}) == len(rows)  # no two rows coincide


def test_only_rows_that_write_alike_share_memrecs_warm_up() -> None:
    shared = [m for m in AGENTIC_METHODS if not write_switches(get_method(m))]
    assert shared == ["memrec", "memrec-no-read", "naive-collab"]


def _versions(ws: Workspace) -> dict[tuple[str, str], int]:
    out = {}
    for kind, ids in (("user", ws.dataset.user_ids), ("item", ws.dataset.item_ids)):
        for entity, rec in ws.memories.get_many(kind, ids).items():  # type: ignore[arg-type]
            out[(kind, entity)] = rec.version
    return out


async def _warm(ws: Workspace, ctx: MemRecContext, method: str) -> tuple[dict, dict, list[int]]:
    users = sorted(ws.split.valid["user"].tolist())[:8]
    before = _versions(ws)
    await warm_up(ws, method_context(get_method(method), ctx), ws.split, users)
    after = _versions(ws)
    return before, after, users


def _valid_pairs(ws: Workspace, users: list[int]) -> list[tuple[int, int]]:
    rows = ws.split.valid[ws.split.valid["user"].isin(users)]
    return list(zip(rows["user"].tolist(), rows["item"].tolist(), strict=True))


async def test_no_write_keeps_the_warm_up_interaction_in_the_graph(
    ws: Workspace, ctx: MemRecContext
) -> None:
    before, after, users = await _warm(ws, ctx, "memrec-no-write")
    pairs = _valid_pairs(ws, users)
    assert pairs and all(ws.graph.has(u, i) for u, i in pairs)  # the validation item is history
    logged = {(e.user_id, e.item_id) for e in ws.events.interactions()}
    ids = ws.dataset
    assert logged == {(ids.user_ids[u], ids.item_ids[i]) for u, i in pairs}
    changed = {key for key in after if after[key] != before[key]}
    assert changed == {("user", ids.user_ids[u]) for u in users}  # own memory only, no patches
    for user in users:
        rec = ws.memories.get("user", ids.user_ids[user])
        assert rec is not None and rec.source is not None  # rewritten by its own interaction


async def test_full_memrec_warm_up_patches_items_and_neighbours(
    ws: Workspace, ctx: MemRecContext
) -> None:
    before, after, users = await _warm(ws, ctx, "memrec")
    changed = {key for key in after if after[key] != before[key]}
    ids = ws.dataset
    assert {("user", ids.user_ids[u]) for u in users} < changed
    assert any(kind == "item" for kind, _ in changed)
    others = {e for k, e in changed if k == "user"} - {ids.user_ids[u] for u in users}
    assert others  # neighbour users were patched


async def test_isolated_rewrites_only_the_users_own_memory(
    ws: Workspace, ctx: MemRecContext
) -> None:
    before, after, users = await _warm(ws, ctx, "isolated")
    ids = ws.dataset
    changed = {key for key in after if after[key] != before[key]}
    assert changed == {("user", ids.user_ids[u]) for u in users}


async def test_vanilla_records_the_interactions_but_writes_no_memory(
    ws: Workspace, ctx: MemRecContext
) -> None:
    before, after, users = await _warm(ws, ctx, "vanilla")
    assert after == before
    assert all(ws.graph.has(u, i) for u, i in _valid_pairs(ws, users))
