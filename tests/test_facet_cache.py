"""The facet cache: keyed by memory versions, skips synthesis for an unchanged user."""

# ruff: noqa: F811  (pytest fixtures imported from tests/support/fixtures.py are parameters)

from __future__ import annotations

import os

import pytest

import nodes.synthesize as synthesize_node
from graph.recommend import build_recommend_graph
from memory_store.facet_cache import FacetCache, facet_cache_for
from memory_store.workspace import Workspace
from nodes.record import record_interaction
from roles.offline_roles import OfflineLMMem
from schemas.context import MemRecContext
from schemas.records import Facet, FacetSet, RoleOutput, SynthesisInput
from tests.support.fixtures import TINY_MOVIES, workspace_fixtures
from tests.support.propagation import propagate

ws, ctx = workspace_fixtures(TINY_MOVIES)


def facet(name: str) -> Facet:
    return Facet(name=name, description="d", confidence=0.5, evidence=["user:2"])


def test_lru_invalidation_and_copies() -> None:
    cache = FacetCache(max_entries=2)
    cache.put(("a",), [facet("x")], ("user:1", "user:2"))
    cache.put(("b",), [facet("y")], ("user:3",))
    got = cache.get(("a",))
    assert got is not None and got[0].name == "x"
    got[0].name = "mutated"
    assert cache.get(("a",))[0].name == "x"  # type: ignore[index]  # callers get copies
    cache.put(("c",), [facet("z")], ("user:2",))  # evicts b, the least recently used
    assert cache.get(("b",)) is None and len(cache) == 2
    assert cache.invalidate("user", "2") == 2 and len(cache) == 0
    assert cache.invalidate("user", "2") == 0
    with pytest.raises(ValueError, match="max_entries"):
        FacetCache(0)


def test_cached_facets_share_nothing_mutable_with_the_caller() -> None:
    """Stored and returned facets are independent copies, in every field a caller can mutate."""
    assert {name: f.annotation for name, f in Facet.model_fields.items()} == {
        "name": str,
        "description": str,
        "confidence": float,
        "evidence": list[str],
    }  # a new mutable field needs copy_facet to copy it too
    cache = FacetCache()
    given = facet("x")
    cache.put(("a",), [given], ("user:2",))
    given.evidence.append("user:9")  # the caller's object after put
    got = cache.get(("a",))
    assert got is not None and got[0].evidence == ["user:2"]
    got[0].evidence.append("user:8")  # a returned copy
    again = cache.get(("a",))
    assert again is not None and again[0].evidence == ["user:2"]
    assert again[0].model_fields_set == facet("x").model_fields_set


class CountingSynth:
    def __init__(self, ws: Workspace) -> None:
        self.offline = OfflineLMMem(ws)
        self.calls = 0

    async def synthesize(self, inp: SynthesisInput) -> RoleOutput[FacetSet]:
        self.calls += 1
        return await self.offline.synthesize(inp)


async def test_repeat_request_skips_synthesis_until_a_write(
    ws: Workspace, ctx: MemRecContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    role = CountingSynth(ws)
    monkeypatch.setattr(synthesize_node, "build_roles", lambda c, w: (role, None))
    graph = build_recommend_graph().compile()
    inp = {"user_id": "1", "candidates": ["7", "8", "9", "10"]}
    first = await graph.ainvoke(inp, context=ctx)
    second = await graph.ainvoke(inp, context=ctx)
    assert role.calls == 1
    assert second["usage"]["synthesize"].model == "cache"
    assert second["usage"]["synthesize"].calls == 0
    assert second["facets"] == first["facets"] and second["ranking"] == first["ranking"]
    await graph.ainvoke({**inp, "request": "something funny"}, context=ctx)
    assert role.calls == 2  # the request is part of the key
    smaller = MemRecContext(**{**ctx.__dict__, "tau": 400})
    await graph.ainvoke(inp, context=smaller)
    assert role.calls == 3  # so is the budget
    cache = facet_cache_for(ws)
    entries = len(cache)
    event = record_interaction(ws, "1", "7")
    await propagate(ws, ctx, event)  # rewrites user 1 and patches neighbours
    assert len(cache) < entries  # the entries built from those memories were dropped
    third = await graph.ainvoke(inp, context=ctx)
    assert role.calls == 4 and third["usage"]["synthesize"].model != "cache"


@pytest.mark.parametrize(
    ("variable", "module"),
    [
        ("MEMREC_FACET_CACHE_ENTRIES", "memory_store.facet_cache"),
        ("MEMREC_TOKEN_CACHE", "prompts.tokens"),
    ],
)
def test_a_bad_cache_size_names_its_variable(variable: str, module: str) -> None:
    import subprocess
    import sys

    env = {**os.environ, variable: "lots"}
    out = subprocess.run(
        [sys.executable, "-c", f"import {module}"], env=env, capture_output=True, text=True
    )
    assert out.returncode != 0 and f"{variable}='lots' is not a whole number" in out.stderr
    env[variable] = "64"
    assert subprocess.run([sys.executable, "-c", f"import {module}"], env=env).returncode == 0
