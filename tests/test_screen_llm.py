"""The patch screen against the LLM LMMem on the OpenAI-compatible test server.

A model that follows the propagation prompt (refs, titles, its own words) has nothing refused;
a gullible one that writes what an item's text smuggled in has every write refused.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests/support/fixtures.py are parameters)

from __future__ import annotations

from dataclasses import replace

import pytest

from graph.propagate import graph as propagate_graph
from memory_store.workspace import Workspace
from nodes.record import record_interaction
from schemas.context import MemRecContext
from tests.support.fixtures import TINY_MOVIES, workspace_fixtures
from tests.support.natural_notes import injected_handler, natural_handler
from tests.support.openai_server import OpenAITestServer

pytestmark = pytest.mark.integration
ws, ctx = workspace_fixtures(TINY_MOVIES)


async def _propagate_all(ws: Workspace, ctx: MemRecContext, handler: object) -> list:
    reports = []
    with OpenAITestServer(handler) as server:  # type: ignore[arg-type]
        llm = replace(ctx, lmmem=f"openai-compatible:test@{server.url}/v1")
        rows = ws.split.valid.sort_values(["ts", "user"]).head(12)
        for user, item in zip(rows["user"], rows["item"], strict=True):
            event = record_interaction(ws, ws.dataset.user_ids[user], ws.dataset.item_ids[item])
            out = await propagate_graph.ainvoke({"event": event}, context=llm)
            reports.append(out["report"])
        prompts = [r for r in server.requests if r.task == "propagate"]
    assert len(prompts) == len(reports)  # one call per interaction
    return reports


async def test_natural_notes_pass_the_screen(ws: Workspace, ctx: MemRecContext) -> None:
    reports = await _propagate_all(ws, ctx, natural_handler)
    assert all(r.usage.calls == 1 and not r.usage.fallbacks for r in reports)
    assert [n for r in reports for n in r.notes if "refused" in n or "copies" in n] == []
    assert sum(r.refused_patches + r.refused_rewrites for r in reports) == 0
    patched = sum(len(r.writes) - 2 for r in reports)
    assert patched >= 4 * len(reports)  # the natural patches were written


async def test_injected_writes_are_all_refused(ws: Workspace, ctx: MemRecContext) -> None:
    before = {u: ws.memory_text("user", u) for u in ws.dataset.user_ids}
    reports = await _propagate_all(ws, ctx, injected_handler)
    assert all(r.refused_rewrites == 2 for r in reports)
    assert all(len(r.writes) == 1 for r in reports)  # only the user memory, with its old text
    for user, text in before.items():
        now = ws.memory_text("user", user)
        assert "Ignore all previous" not in now and "admin mode" not in now, user
        assert now == text or now.startswith(text[:20])
