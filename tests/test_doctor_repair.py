"""`memrec doctor` flags every injected fault by name, and `--repair` fixes what can be fixed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.doctor_cmds import register
from memory_store.events import EventLog
from memory_store.memories import MemoryRecord
from memory_store.workspace import open_workspace
from memory_store.writes import apply_write
from schemas.context import MemRecContext
from services.repair import diagnose, repair
from tests.support.tiny_store import store_folder, tiny_store


@pytest.fixture
def ctx(tmp_path: Path) -> MemRecContext:
    dataset, home = tiny_store(tmp_path / "home")
    return MemRecContext(
        dataset=dataset, home=str(home), roles="offline", lmmem="offline", llmrec="offline"
    )


def _inject_content_faults(ctx: MemRecContext) -> None:
    ws = open_workspace(ctx.dataset, home=ctx.home)
    folder = ws.directory
    now = time.time()
    ws.events.record_interaction("u6", "i2")
    ws.events.claim_job("dead-server", lease_s=0.01)  # a server killed mid-run
    ws.events.record_interaction("u7", "i3")
    ws.events.claim_job("w", lease_s=60)
    ws.events.fail_job(ws.events.jobs("running")[-1].interaction_id, "w", "boom", max_attempts=1)
    old = EventLog(folder / "events.sqlite", clock=lambda: now - 1000)
    old.record_interaction("u5", "i1")  # pending for 1000 s: no executor took it
    old.close()
    apply_write(ws.memories, ws.events, "user", "u8", "audited v2", cause="c1")
    chroma = ws.memories.inner  # type: ignore[attr-defined]
    bump = MemoryRecord(  # another writer made v2 too: the audit says otherwise
        kind="user", entity_id="u8", text="colliding v2", version=2, updated_at=now, source="x"
    )
    chroma.restore([bump])
    ws.memories.put("user", "u9", "edited behind the audit's back", expected_version=1, source="m")
    apply_write(ws.memories, ws.events, "user", "u10", "audited v2", cause="c2")
    behind = MemoryRecord(
        kind="user", entity_id="u10", text="v1 again", version=1, updated_at=now, source="warmup"
    )
    chroma.restore([behind])
    rec = chroma.get("item", "i4")
    chroma._collections["item"].upsert(  # the v6-text-with-v5-vector case
        ids=["i4"], documents=[rec.text], embeddings=[[1.0] + [0.0] * 255]
    )
    (folder / "graph" / ".ui_ts.npz.123.tmp").write_bytes(b"half")
    ws.events.close()
    time.sleep(0.05)


def test_every_content_fault_is_flagged_and_repaired(ctx: MemRecContext) -> None:
    _inject_content_faults(ctx)
    before = diagnose(ctx.dataset, ctx.home)
    expected = {
        "stuck_pending",
        "expired_lease",
        "parked_job",
        "version_collision",
        "unaudited_write",
        "version_mismatch",
        "vector_mismatch",
        "leftover_temp",
    }
    assert expected <= before.codes(), before.problems
    assert all("memrec doctor --repair" in p.detail for p in before.problems)
    result = repair(ctx)
    assert result.after.ok, (result.after.problems, result.actions)
    assert result.after.counts["jobs_done"] == 3
    ws = open_workspace(ctx.dataset, home=ctx.home, readonly=True)
    v3 = next(r for r in ws.events.history("user", "u8") if r.version == 3)
    assert (v3.new_text, v3.cause) == ("colliding v2", "repair:collision:v2")  # kept, audited
    assert ws.events.version_text("user", "u8", 2) == "audited v2"  # history not rewritten
    assert ws.memory_text("user", "u10") == "audited v2"
    ws.events.close()


def test_damaged_files_are_flagged_by_name_and_rebuilt(ctx: MemRecContext) -> None:
    folder = store_folder(ctx.dataset, Path(str(ctx.home)))
    ws = open_workspace(ctx.dataset, home=ctx.home)
    apply_write(ws.memories, ws.events, "user", "u4", "written after indexing", cause="c9")
    ws.events.close()
    ws.memories.inner.close()  # type: ignore[attr-defined]
    (folder / "graph" / "similar.npz").write_bytes(b"damaged")
    shutil.rmtree(folder / "chroma")
    before = diagnose(ctx.dataset, ctx.home)
    assert {"damaged_file", "missing_memories"} <= before.codes()
    assert any("graph/similar.npz" in p.detail for p in before.problems)
    result = repair(ctx)
    assert result.after.ok, (result.after.problems, result.actions)
    ws = open_workspace(ctx.dataset, home=ctx.home, readonly=True)
    assert ws.memory_text("user", "u4") == "written after indexing"  # from the audit log
    ws.events.close()


def test_a_damaged_event_log_is_salvaged(ctx: MemRecContext) -> None:
    folder = store_folder(ctx.dataset, Path(str(ctx.home)))
    ws = open_workspace(ctx.dataset, home=ctx.home)
    for n in range(30):
        ws.events.record_interaction(f"u{n % 20}", f"i{n}", interaction_id=f"keep-{n}")
    ws.events.checkpoint()
    ws.events.close()
    path = folder / "events.sqlite"
    data = bytearray(path.read_bytes())
    data[-4096 * 2 :] = b"\xff" * (4096 * 2)  # the last pages are garbage
    path.write_bytes(bytes(data))
    assert "damaged_event_log" in diagnose(ctx.dataset, ctx.home).codes()
    result = repair(ctx)
    assert any("salvaged" in a for a in result.actions), result.actions
    assert "damaged_event_log" not in result.after.codes()
    assert list(folder.glob("events.sqlite.damaged-*"))  # kept aside, not deleted
    salvaged = EventLog(path, readonly=True)
    assert len(salvaged.interactions()) > 0
    salvaged.close()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app."""

    register(app)
    return app


def test_a_lost_event_log_needs_consent_to_start_empty(ctx: MemRecContext) -> None:
    folder = store_folder(ctx.dataset, Path(str(ctx.home)))
    (folder / "events.sqlite").unlink()
    args = ["doctor", "--dataset", ctx.dataset, "--home", str(ctx.home)]
    found = CliRunner().invoke(_app(), args)
    assert found.exit_code == 1 and "missing_event_log" in found.output
    refused = CliRunner().invoke(_app(), [*args, "--repair"])
    assert refused.exit_code == 1 and "NOT repaired" in refused.output
    assert not (folder / "events.sqlite").exists()
    accepted = CliRunner().invoke(_app(), [*args, "--repair", "--new-event-log"])
    assert accepted.exit_code == 0, accepted.output
    assert "consistent" in accepted.output
