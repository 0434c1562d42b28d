"""Propagation of one interaction: one LMMem call, screened patches, idempotent audited writes."""

# ruff: noqa: F811  (pytest fixtures imported from tests/support/fixtures.py are parameters)

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graph.propagate import build_propagate_graph
from memory_store.memories import MemoryRecord
from memory_store.summaries import append_note
from memory_store.workspace import UnknownEntity, Workspace
from nodes.apply_patches import MAX_PATCH_CHARS, merge_rewrite
from nodes.load_context import load_propagation_context
from nodes.record import record_interaction
from roles.offline_roles import OfflineLMMem
from schemas.context import MemRecContext
from schemas.records import (
    CallUsage,
    InteractionEvent,
    NeighbourPatch,
    PropagationInput,
    PropagationResult,
    RoleOutput,
)
from tests.support.fixtures import TINY_MOVIES, copy_store, workspace_fixtures
from tests.support.propagation import propagate

ws, ctx = workspace_fixtures(TINY_MOVIES)
USER, ITEM = "1", "7"  # user 1 has not seen item 7 in tests/data/tiny-movies


class CountingLMMem:
    """Wraps the offline LMMem: counts propagate calls, can replace its patches."""

    def __init__(self, ws: Workspace, patches: list[NeighbourPatch] | None = None) -> None:
        self.offline = OfflineLMMem(ws)
        self.patches = patches
        self.calls = 0
        self.inputs: list[PropagationInput] = []

    async def propagate(self, inp: PropagationInput) -> RoleOutput[PropagationResult]:
        self.calls += 1
        self.inputs.append(inp)
        result = self.offline.propagation(inp)
        if self.patches is not None:
            result = result.model_copy(update={"neighbour_patches": self.patches})
        return RoleOutput(value=result, usage=CallUsage(calls=1, model="counting"))


def snapshot(ws: Workspace) -> dict[tuple[str, str], int]:
    out = {}
    for kind, ids in (("user", ws.dataset.user_ids), ("item", ws.dataset.item_ids)):
        for entity, rec in ws.memories.get_many(kind, ids).items():  # type: ignore[arg-type]
            out[(kind, entity)] = rec.version
    return out


async def test_one_call_writes_user_item_and_capped_neighbours(
    ws: Workspace, ctx: MemRecContext
) -> None:
    before_user = ws.memories.get("user", USER)
    before_vec = ws.vectors.users[ws.user_code(USER)].copy()
    event = record_interaction(ws, USER, ITEM)
    lmmem = CountingLMMem(ws)
    report = await propagate(ws, ctx, event, lmmem=lmmem)
    assert lmmem.calls == 1 and report.usage.calls == 1
    refs = [w.ref for w in report.writes]
    assert refs[-1] == f"user:{USER}" and refs[0] == f"item:{ITEM}"  # the user rewrite is last
    neighbours = refs[1:-1]
    assert 1 <= len(neighbours) <= ctx.fanout_cap == 8
    assert f"item:{ITEM}" not in neighbours and f"user:{USER}" not in neighbours
    user = ws.memories.get("user", USER)
    assert before_user is not None and user is not None
    assert user.version == before_user.version + 1 and user.source == event.interaction_id
    assert ws.title(ws.item_code(ITEM)) in user.text  # the item re-summarised into the memory
    assert "Recently chosen by" in ws.memory_text("item", ITEM)
    assert (ws.vectors.users[ws.user_code(USER)] != before_vec).any()
    audit = ws.events.writes_caused_by(event.interaction_id)
    assert sorted(f"{a.kind}:{a.entity_id}" for a in audit) == sorted(refs)
    assert all(a.previous_text and a.new_text != a.previous_text for a in audit)


async def test_replay_changes_nothing_and_makes_no_call(ws: Workspace, ctx: MemRecContext) -> None:
    event = record_interaction(ws, USER, ITEM)
    lmmem = CountingLMMem(ws)
    await propagate(ws, ctx, event, lmmem=lmmem)
    versions, audit = snapshot(ws), len(ws.events.writes_caused_by(event.interaction_id))
    again = await propagate(ws, ctx, event, lmmem=lmmem)
    assert lmmem.calls == 1 and again.writes == [] and again.usage.calls == 0
    assert snapshot(ws) == versions
    assert len(ws.events.writes_caused_by(event.interaction_id)) == audit


class FailingAfter:
    """A store wrapper whose put raises after ``n`` successful puts (a crash mid-propagation)."""

    def __init__(self, inner: object, n: int) -> None:
        self.inner, self.left = inner, n

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def put(self, *args: object, **kwargs: object) -> MemoryRecord:
        if self.left <= 0:
            raise OSError("simulated crash")
        self.left -= 1
        return self.inner.put(*args, **kwargs)  # type: ignore[attr-defined]


async def test_half_applied_job_completes_without_double_writes(
    ws: Workspace, ctx: MemRecContext
) -> None:
    event = record_interaction(ws, USER, ITEM)
    store = ws.memories
    ws.memories = FailingAfter(store, 3)  # type: ignore[assignment]
    with pytest.raises(OSError, match="simulated crash"):
        await propagate(ws, ctx, event, lmmem=CountingLMMem(ws))
    assert len(ws.events.writes_caused_by(event.interaction_id)) == 3
    ws.memories = store
    report = await propagate(ws, ctx, event, lmmem=CountingLMMem(ws))
    assert report.skipped == 3
    audit = ws.events.writes_caused_by(event.interaction_id)
    pairs = Counter((a.kind, a.entity_id) for a in audit)
    assert max(pairs.values()) == 1 and ("user", USER) in pairs
    item = ws.memories.get("item", ITEM)
    assert item is not None and item.text.count("Recently chosen by") == 1


async def test_unknown_ids_raise_and_write_nothing(ws: Workspace, ctx: MemRecContext) -> None:
    versions = snapshot(ws)
    for user, item in (("no-such-user", ITEM), (USER, "no-such-item")):
        event = InteractionEvent(
            interaction_id=f"x-{user}-{item}", user_id=user, item_id=item, kind="positive", ts=1
        )
        with pytest.raises(UnknownEntity, match="unknown (user|item) id"):
            await propagate(ws, ctx, event, lmmem=CountingLMMem(ws))
        with pytest.raises(UnknownEntity):
            record_interaction(ws, user, item)
    assert snapshot(ws) == versions
    assert ws.events.interactions() == []


async def test_bad_patches_dropped_leaks_refused_rest_applied(
    ws: Workspace, ctx: MemRecContext
) -> None:
    event = record_interaction(ws, USER, ITEM)
    loaded = load_propagation_context(ws, ctx, event)
    users = [n.ref for n in loaded.inp.neighbours if n.kind == "user"]
    assert len(users) >= 4
    acting = loaded.inp.user_memory.split(". ")[0]  # "Interacted with 18 items"
    profile_words = " ".join(loaded.inp.user_memory.split("Recently: ")[1].split()[:7])
    patches = [
        NeighbourPatch(ref=users[0], note="Shares a liked thriller."),  # good
        NeighbourPatch(ref="user:99999", note="not a loaded neighbour"),  # dropped
        NeighbourPatch(ref="bogus", note="malformed ref"),  # dropped
        NeighbourPatch(ref=users[1], note="   "),  # dropped: empty
        NeighbourPatch(ref=users[1], note="x" * (MAX_PATCH_CHARS + 1)),  # dropped: oversized
        NeighbourPatch(ref=users[0], note="second patch for the same ref"),  # dropped
        NeighbourPatch(ref=users[2], note=f"User {USER} loved this one."),  # refused: names user
        NeighbourPatch(ref=users[3], note=f"Like them: {profile_words}"),  # refused: copy
    ]
    del acting
    report = await propagate(ws, ctx, event, lmmem=CountingLMMem(ws, patches))
    assert report.dropped_patches == 5 and report.refused_patches == 2
    written = {w.ref for w in report.writes}
    assert written == {f"user:{USER}", f"item:{ITEM}", users[0]}
    assert ws.memory_text("user", users[0].split(":")[1]).endswith("Note: Shares a liked thriller.")
    assert f"User {USER}" not in ws.memory_text("user", users[2].split(":")[1])


async def test_collab_write_off_propagates_nothing(ws: Workspace, ctx: MemRecContext) -> None:
    versions = snapshot(ws)
    event = record_interaction(ws, USER, ITEM)
    lmmem = CountingLMMem(ws)
    off = MemRecContext(**{**ctx.__dict__, "collab_write": False})
    report = await propagate(ws, off, event, lmmem=lmmem)
    assert lmmem.calls == 0 and report.writes == [] and report.notes
    assert snapshot(ws) == versions
    assert ws.events.get_interaction(event.interaction_id) == event


async def test_opted_out_users_and_fanout_cap(ws: Workspace, ctx: MemRecContext) -> None:
    event = record_interaction(ws, USER, ITEM)
    first = load_propagation_context(ws, ctx, event).inp.neighbours
    top_user = next(n.ref for n in first if n.kind == "user")
    ws.opted_out.add(ws.user_code(top_user.split(":")[1]))
    small = MemRecContext(**{**ctx.__dict__, "fanout_cap": 3})
    lmmem = CountingLMMem(ws)
    report = await propagate(ws, small, event, lmmem=lmmem)
    refs = {n.ref for n in lmmem.inputs[0].neighbours}
    assert len(refs) == 3 and top_user not in refs
    assert len(report.writes) == 2 + 3
    assert top_user not in {w.ref for w in report.writes}


def test_merge_rewrite_keeps_notes_added_concurrently() -> None:
    loaded = "Profile. Note: old"
    concurrent = append_note(loaded, "added meanwhile")
    compute = merge_rewrite("New profile. Note: old", loaded)
    assert compute(loaded) == "New profile. Note: old"
    assert compute(concurrent) == "New profile. Note: old Note: added meanwhile"


async def test_graph_by_interaction_id_and_by_event(ws: Workspace, ctx: MemRecContext) -> None:
    graph = build_propagate_graph().compile()
    event = record_interaction(ws, USER, ITEM)
    out = await graph.ainvoke({"interaction_id": event.interaction_id}, context=ctx)
    report = out["report"]
    assert report.interaction_id == event.interaction_id and len(report.writes) >= 2
    job = ws.events.get_job(event.interaction_id)
    assert job is not None and job.status == "done"
    other = record_interaction(ws, "2", ITEM)
    out = await graph.ainvoke({"event": other.model_dump()}, context=ctx)
    assert {w.ref for w in out["report"].writes} >= {"user:2", f"item:{ITEM}"}
    with pytest.raises(LookupError, match="not in the event log"):
        await graph.ainvoke({"interaction_id": "never-recorded"}, context=ctx)


# ------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_store(tmp_path_factory.mktemp("cli"), TINY_MOVIES)


def run_cli(home: Path, *args: str) -> tuple[int, str]:
    import typer

    from cli.propagation_cmds import register

    app = typer.Typer()
    register(app)
    if "--dataset" not in args:
        args = (*args, "--dataset", TINY_MOVIES)
    result = CliRunner().invoke(app, [*args, "--home", str(home)])
    return result.exit_code, result.output


def test_cli_feedback_history_rollback_jobs(cli_home: Path) -> None:
    code, out = run_cli(cli_home, "feedback", "--user", USER, "--item", ITEM, "--wait")
    assert code == 0, out
    assert "recorded interaction" in out and "job " in out and ": done" in out
    assert "The Electric Orchard" in out  # the memory diff shows the new user memory (item 7)
    code, out = run_cli(cli_home, "memory", "history", "--user", USER)
    assert code == 0 and "history of user:1" in out and "Interacted with 15" in out
    code, out = run_cli(cli_home, "memory", "rollback", "--user", USER, "--version", "1")
    assert code == 0 and "restored version 1 as version 3" in out, out
    code, out = run_cli(cli_home, "memory", "show", "--user", USER)
    assert code == 0 and "version 3" in out and "rollback:1" in out
    code, out = run_cli(cli_home, "jobs")
    assert code == 0 and "done: 1" in out
    code, out = run_cli(cli_home, "feedback", "--user", USER, "--item", "8", "--no-propagate")
    assert code == 0 and "queued" in out
    code, out = run_cli(cli_home, "jobs", "--status", "pending")
    assert code == 0 and "pending: 1" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("feedback", "--user", "nobody", "--item", ITEM), "unknown user id"),
        (("memory", "show", "--item", "no-such-item"), "unknown item id"),
        (("memory", "show", "--user", USER, "--item", ITEM), "exactly one of"),
        (("memory", "rollback", "--user", "2", "--version", "9"), "no recorded version 9"),
        (("jobs", "--status", "weird"), "accepted: pending"),
        (("jobs", "--dataset", "amazon-games"), "not indexed"),
    ],
)
def test_cli_errors_exit_2_without_traceback(
    cli_home: Path, args: tuple[str, ...], message: str
) -> None:
    code, out = run_cli(cli_home, *args)
    assert code == 2, out
    assert message in out and "Traceback" not in out
