"""The dev server's leaked checkpoint data of deleted threads is swept (langgraph #8054)."""

from __future__ import annotations

from collections import defaultdict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from nodes.forget_threads import belongs_to, sweep


class _State(TypedDict):
    text: str


def _graph(saver: InMemorySaver):  # type: ignore[no-untyped-def]
    builder = StateGraph(_State)
    builder.add_node("echo", lambda s: {"text": s["text"] + "!"})
    builder.add_edge(START, "echo")
    builder.add_edge("echo", END)
    return builder.compile(checkpointer=saver)


def _runtime_delete(saver: InMemorySaver, thread_id: str) -> None:
    """What langgraph-runtime-inmem's thread deletion does: storage and writes, not blobs."""
    del saver.storage[thread_id]
    saver.writes = defaultdict(dict, {k: v for k, v in saver.writes.items() if k[0] != thread_id})


def test_sweep_drops_what_a_runtime_deletion_leaves_and_keeps_live_threads() -> None:
    saver = InMemorySaver()
    graph = _graph(saver)
    for thread in ("gone", "kept"):
        graph.invoke({"text": f"secret-{thread}"}, {"configurable": {"thread_id": thread}})
    _runtime_delete(saver, "gone")
    assert any(k[0] == "gone" for k in saver.blobs)  # the leak
    assert sweep(saver) > 0
    assert not any(k[0] == "gone" for k in saver.blobs)
    assert "secret-gone" not in repr(dict(saver.blobs))
    state = graph.get_state({"configurable": {"thread_id": "kept"}})
    assert state.values["text"] == "secret-kept!"  # a live thread is untouched
    assert sweep(saver) == 0


def test_a_thread_belongs_to_its_owner_or_the_user_it_names() -> None:
    assert belongs_to({"metadata": {"owner": "u 'x'"}}, "u 'x'")
    assert belongs_to({"metadata": {"user_id": "u1"}, "values": None}, "u1")
    assert belongs_to({"metadata": {}, "values": {"user_id": "u1"}}, "u1")
    assert not belongs_to({"metadata": {"owner": "u2"}, "values": {"user_id": "u3"}}, "u1")
