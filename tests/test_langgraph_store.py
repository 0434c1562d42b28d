"""The memories as a LangGraph store: LangGraph's store behaviour, then what the memories add.

The contract half runs the same expectations on LangGraph's own ``InMemoryStore`` (the reference)
and on ``MemRecStore``: put / get / update / delete, search by prefix, filter, limit and offset,
list_namespaces with prefix, suffix, wildcards, depth and paging, namespace validation, async.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests/support/fixtures.py are parameters)

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.tools import ToolRuntime, tool
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.store.base import BaseStore, InvalidNamespaceError
from langgraph.store.memory import InMemoryStore

from services.langgraph_store import MemoryStoreError, MemRecStore, make_store
from tests.support.fixtures import workspace_fixtures
from tests.support.tiny_films import write_tiny_films

TINY = str(write_tiny_films(Path(tempfile.mkdtemp(prefix="memrec-store-")) / "tiny-films"))
ws, ctx = workspace_fixtures(TINY)
DOCS = [
    (("docs", "a"), "1", {"kind": "note", "n": 1}),
    (("docs", "a"), "2", {"kind": "todo", "n": 2}),
    (("docs", "b"), "3", {"kind": "note", "n": 3}),
    (("docs", "b", "v1"), "4", {"kind": "note", "n": 4}),
    (("users", "u1", "v1"), "5", {"kind": "note", "n": 5}),
]


@pytest.fixture(params=["langgraph-inmemory", "memrec"])
def store(request, ws, ctx) -> BaseStore:
    if request.param == "langgraph-inmemory":
        return InMemoryStore()
    return MemRecStore(ctx, other=InMemoryStore())


def fill(store: BaseStore) -> None:
    for namespace, key, value in DOCS:
        store.put(namespace, key, value)


def keys(items: Sequence[Any]) -> list[str]:
    return sorted(i.key for i in items)


# ------------------------------------------------------------------------- the contract


def test_put_get_update_delete(store: BaseStore) -> None:
    assert store.get(("docs", "a"), "1") is None
    store.put(("docs", "a"), "1", {"text": "first"})
    first = store.get(("docs", "a"), "1")
    assert first is not None and first.value == {"text": "first"}
    assert first.namespace == ("docs", "a") and first.key == "1"
    store.put(("docs", "a"), "1", {"text": "second"})
    second = store.get(("docs", "a"), "1")
    assert second is not None and second.value == {"text": "second"}
    assert second.updated_at >= first.updated_at
    store.delete(("docs", "a"), "1")
    assert store.get(("docs", "a"), "1") is None


def test_search_by_prefix_filter_limit_and_offset(store: BaseStore) -> None:
    fill(store)
    assert keys(store.search(("docs",), limit=10)) == ["1", "2", "3", "4"]
    assert keys(store.search(("docs", "b"), limit=10)) == ["3", "4"]
    assert keys(store.search(("docs",), filter={"kind": "note"}, limit=10)) == ["1", "3", "4"]
    page = store.search(("docs",), limit=2) + store.search(("docs",), limit=2, offset=2)
    assert keys(page) == ["1", "2", "3", "4"]
    assert store.search(("nothing",)) == []


def test_list_namespaces_prefix_suffix_depth_and_paging(store: BaseStore) -> None:
    fill(store)
    docs = store.list_namespaces(prefix=("docs",))
    assert docs == [("docs", "a"), ("docs", "b"), ("docs", "b", "v1")]
    assert store.list_namespaces(prefix=("docs",), max_depth=2) == [("docs", "a"), ("docs", "b")]
    assert store.list_namespaces(suffix=("v1",)) == [("docs", "b", "v1"), ("users", "u1", "v1")]
    assert store.list_namespaces(prefix=("*", "u1")) == [("users", "u1", "v1")]
    assert store.list_namespaces(prefix=("docs",), limit=1, offset=1) == [("docs", "b")]


@pytest.mark.parametrize("namespace", [(), ("docs.x",), ("",), ("langgraph", "x")])
def test_invalid_namespaces_are_refused(store: BaseStore, namespace: tuple[str, ...]) -> None:
    with pytest.raises(InvalidNamespaceError):
        store.put(namespace, "k", {"v": 1})


async def test_async_methods_match_the_sync_ones(store: BaseStore) -> None:
    await store.aput(("docs", "a"), "1", {"text": "async"})
    got = await store.aget(("docs", "a"), "1")
    assert got is not None and got.value == {"text": "async"}
    assert keys(await store.asearch(("docs",))) == ["1"]
    assert await store.alist_namespaces(prefix=("docs",)) == [("docs", "a")]


# ------------------------------------------------------------------------- the memories


def test_memories_are_listed_read_and_searched(ws, ctx) -> None:
    store = MemRecStore(ctx, other=InMemoryStore())
    assert {("memories", "user"), ("memories", "item")} <= set(store.list_namespaces())
    user = store.get(("memories", "user"), "1")
    assert user is not None and user.value["text"] == ws.memories.get("user", "1").text
    item = store.get(("memories", "item"), "4")
    assert item is not None and item.value["title"] == "Heat (1995)"
    hits = store.search(("memories", "item"), query="Heat Action Crime", limit=3)
    assert hits[0].key == "4" and hits[0].score is not None
    listed = store.search(("memories", "item"), limit=5, offset=1)
    assert [h.key for h in listed] == sorted(ws.memories.ids("item"))[1:6]
    assert store.search(("memories",), filter={"source": "nothing"}) == []
    assert store.get(("memories", "item"), "no-such-item") is None


def test_memory_writes_are_versioned_and_audited(ws, ctx) -> None:
    store = MemRecStore(ctx, other=InMemoryStore())
    before = ws.memories.get("user", "1")
    store.put(("memories", "user"), "1", {"text": "Loves heist films."})
    after = ws.memories.get("user", "1")
    assert (after.text, after.version) == ("Loves heist films.", before.version + 1)
    (audit,) = ws.events.history("user", "1")
    assert audit.previous_text == before.text and audit.cause.startswith("store:")
    with pytest.raises(MemoryStoreError, match="not deleted through the store"):
        store.delete(("memories", "user"), "1")
    with pytest.raises(MemoryStoreError, match='written as {"text"'):
        store.put(("memories", "user"), "1", {"memory": "x"})
    with pytest.raises(MemoryStoreError, match="no user 'nobody'"):
        store.put(("memories", "user"), "nobody", {"text": "x"})
    with pytest.raises(MemoryStoreError, match="only"):
        store.get(("memories", "facets"), "1")


def test_the_server_store_opens_the_environments_dataset(ws, ctx, monkeypatch) -> None:
    monkeypatch.setenv("MEMREC_DATASET", ctx.dataset)
    monkeypatch.setenv("MEMREC_HOME", ctx.home)
    store = make_store()
    assert store.get(("memories", "item"), "4").value["title"] == "Heat (1995)"


# ------------------------------------------------------------------------- an agent


class ScriptedModel(BaseChatModel):
    """A tool-calling chat model that plays back AI messages (a unit-test fake)."""

    script: list[AIMessage]

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        turn = sum(isinstance(m, AIMessage) for m in messages)
        return ChatResult(generations=[ChatGeneration(message=self.script[turn])])


@tool
def recall(query: str, runtime: ToolRuntime) -> str:
    """Search the item memories for ``query``; returns the best titles."""
    hits = runtime.store.search(("memories", "item"), query=query, limit=2)
    return "; ".join(h.value["title"] for h in hits)


def test_an_agent_reads_memories_through_runtime_store(ws, ctx) -> None:
    call = {"name": "recall", "args": {"query": "Heat Action Crime"}, "id": "c1"}
    model = ScriptedModel(
        script=[AIMessage(content="", tool_calls=[call]), AIMessage(content="Try Heat.")]
    )
    agent = create_agent(model, tools=[recall], store=MemRecStore(ctx, other=InMemoryStore()))
    out = agent.invoke({"messages": [{"role": "user", "content": "what is like Heat?"}]})
    (result,) = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert result.content.startswith("Heat (1995)")
    assert out["messages"][-1].content == "Try Heat."
