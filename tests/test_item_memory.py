"""Ranking reads each candidate's CURRENT item memory: a memory change alters the next ranking.

The LLM ranker gets the memory in its input (and so in its prompt); the offline ranker scores it
(the ``memory`` channel of ``roles/offline_roles.py``).
"""

# ruff: noqa: F811  (pytest fixtures imported from tests/support/fixtures.py are parameters)

from __future__ import annotations

from dataclasses import replace

from graph.recommend import graph
from memory_store.ranker_index import RankerConfig, RankerIndex
from memory_store.workspace import Workspace
from memory_store.writes import apply_write
from nodes.rank import ITEM_MEMORY_BUDGET, candidate_items, ranking_input
from prompts import ranking as ranking_prompt
from prompts.blocks import extract_block
from prompts.tokens import count_tokens
from schemas.context import MemRecContext
from tests.support.fixtures import TINY_MOVIES, workspace_fixtures

ws, ctx = workspace_fixtures(TINY_MOVIES)
USER = "1"
NOTE = "Recently chosen by users who favour slow coastal dramas and lighthouses."


def _candidates(ws: Workspace) -> list[str]:
    return [ws.dataset.item_ids[i] for i in ws.benchmark_candidates()[ws.user_code(USER)]]


def _write_note(ws: Workspace, item: str, note: str) -> None:
    text = f"{ws.memory_text('item', item)} Note: {note}"
    cause = f"test-note-{note[:40]}"
    record = apply_write(ws.memories, ws.events, "item", item, text, cause=cause)
    assert record is not None
    ws.on_memory_write("item", item, record.text)


async def _state(ctx: MemRecContext, cands: list[str], ws: Workspace) -> dict:
    """The recommend graph's answer plus the working fields the rank node read."""
    return dict(
        await graph.ainvoke({"user_id": USER, "candidates": cands}, context=ctx),
        user_id=USER,
        candidates=cands,
        user_memory=ws.memory_text("user", USER) if ctx.memory != "none" else "",
    )


async def test_an_item_memory_change_alters_the_llm_rankers_input(
    ws: Workspace, ctx: MemRecContext
) -> None:
    cands = _candidates(ws)
    state = await _state(ctx, cands, ws)
    before = ranking_input(ws, state, ctx)
    _write_note(ws, cands[0], NOTE)
    after = ranking_input(ws, state, ctx)
    assert NOTE not in before.candidates[0].memory and NOTE in after.candidates[0].memory
    assert [c.memory for c in after.candidates[1:]] == [c.memory for c in before.candidates[1:]]
    block = extract_block(ranking_prompt.render(after)[1].text, "CANDIDATES")
    assert block is not None and NOTE in block
    title = ws.title(ws.item_code(cands[0]))
    assert not after.candidates[0].memory.startswith(title)  # the title is shown once, apart


async def test_vanilla_reads_catalogue_text_not_memory(ws: Workspace, ctx: MemRecContext) -> None:
    cands = _candidates(ws)
    _write_note(ws, cands[0], NOTE)
    vanilla = replace(ctx, memory="none")
    inp = ranking_input(ws, await _state(vanilla, cands, ws), vanilla)
    assert all(not c.memory and c.text for c in inp.candidates)


async def test_an_item_memory_change_alters_the_offline_score(
    ws: Workspace, ctx: MemRecContext
) -> None:
    cands = _candidates(ws)
    saved = ws.ranker()
    params = saved[1].params  # the collaborative channel plus the user-memory channel
    config = RankerConfig(params=params, weights={"knn": 1.0, "mem_user": 1.0})
    ws.derived["ranker"] = (RankerIndex(ws.graph, params), config)
    try:
        state = await _state(ctx, cands, ws)
        first = {r.item_id: r.score for r in state["ranking"]}
        profile = ws.memory_text("user", USER)  # a note that echoes the user's own profile
        _write_note(ws, cands[0], profile.split(" Note: ")[0])
        state = await _state(ctx, cands, ws)
        second = {r.item_id: r.score for r in state["ranking"]}
    finally:
        ws.derived["ranker"] = saved
    assert second[cands[0]] > first[cands[0]]
    # only that candidate's memory channel moved: the channels' scales are fixed at index time
    assert all(second[c] == first[c] for c in cands[1:])


def test_candidate_memories_keep_their_newest_notes_within_the_budget(ws: Workspace) -> None:
    item = ws.dataset.item_ids[0]
    for n in range(12):
        _write_note(ws, item, f"Note number {n} about who chose it, with some more words here.")
    ids = ws.dataset.item_ids[:40]
    shown = candidate_items(ws, ids, read_memory=True)
    assert sum(count_tokens(c.memory) for c in shown) <= ITEM_MEMORY_BUDGET
    assert "Note number 11" in shown[0].memory  # the newest note survives the cut
