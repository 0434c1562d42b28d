"""`memrec doctor`: a consistent store passes; each kind of inconsistency is reported."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from typer.testing import CliRunner

from cli.doctor_cmds import register, validate_user_id
from nodes.record import record_interaction
from services.doctor import check_workspace
from tests.support.fixtures import TINY_MOVIES, copy_store, workspace_fixtures
from tests.support.propagation import propagate

ws, ctx = workspace_fixtures(TINY_MOVIES)


def _codes(ws) -> set[str]:  # noqa: F811
    return {p.code for p in check_workspace(ws).problems}


async def test_consistent_store_after_propagation(ws, ctx) -> None:  # noqa: F811
    event = record_interaction(ws, "1", "70")
    await propagate(ws, ctx, event)  # the propagate graph settles the job itself
    assert ws.events.claim_job("t") is None
    report = check_workspace(ws)
    assert report.ok, report.problems
    assert report.counts["interactions_logged"] == 1 and report.counts["jobs_done"] == 1
    assert report.counts["memories_user"] == report.counts["users"]


def test_expired_lease_and_done_job_without_audit(ws) -> None:  # noqa: F811
    stuck = record_interaction(ws, "2", "70")
    skipped = record_interaction(ws, "3", "70")
    assert ws.events.claim_job("dead-worker", lease_s=0.01).interaction_id == stuck.interaction_id
    time.sleep(0.05)
    assert ws.events.claim_job("w", lease_s=60).interaction_id == skipped.interaction_id
    ws.events.complete_job(skipped.interaction_id, "w")  # done, but nothing was written
    assert _codes(ws) == {"expired_lease", "done_job_without_audit"}


def test_unaudited_write_and_applied_twice(ws) -> None:  # noqa: F811
    rec = ws.memories.get("user", "4")
    ws.memories.put("user", "4", "edited by hand", expected_version=rec.version, source="manual")
    ws.events.audit_write("item", "7", 2, "a", "b", "cause-x")
    ws.events.audit_write("item", "7", 3, "b", "c", "cause-x")
    codes = _codes(ws)
    assert "unaudited_write" in codes and "applied_twice" in codes
    assert "version_mismatch" in codes  # item 7 is audited at v3 but the store holds v1


def test_interaction_missing_from_graph(ws) -> None:  # noqa: F811
    ws.events.record_interaction("5", "71")  # logged behind the graph's back
    assert _codes(ws) == {"interaction_not_in_graph"}


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app."""

    register(app)
    return app


def test_cli_doctor_and_privacy(tmp_path: Path) -> None:
    home = copy_store(tmp_path / "home", TINY_MOVIES)
    runner = CliRunner()
    tiny = ["--dataset", TINY_MOVIES]
    ok = runner.invoke(_app(), ["doctor", *tiny, "--home", str(home)])
    assert ok.exit_code == 0, ok.output
    assert "consistent" in ok.output
    out = runner.invoke(_app(), ["privacy", "opt-out", *tiny, "--home", str(home), "--user", "12"])
    assert out.exit_code == 0 and "opt-out recorded" in out.output
    opt_out = ["privacy", "opt-out", *tiny, "--home", str(home)]
    bad = runner.invoke(_app(), [*opt_out, "--user", "a\nb"])
    assert bad.exit_code == 2 and "not a valid user id" in bad.output
    unknown = runner.invoke(
        _app(), ["privacy", "delete-user", *tiny, "--home", str(home), "--user", "x9"]
    )
    assert unknown.exit_code == 2 and "unknown user id" in unknown.output
    missing = runner.invoke(_app(), ["doctor", "--home", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "not indexed" in missing.output
    as_json = runner.invoke(_app(), ["doctor", *tiny, "--home", str(home), "--json"])
    assert as_json.exit_code == 0 and '"opted_out_users": 1' in as_json.output


def test_validate_user_id() -> None:
    # any id a dataset can hold is accepted as given (ids are matched exactly)
    for good in ("42", "a b", 'it\'s "quoted"', "a;b", "../etc", " padded "):
        assert validate_user_id(good) == good
    for bad in ("", "   ", "x" * 257, "a\nb", "tab\there"):
        try:
            validate_user_id(bad)
        except ValueError as err:
            assert "valid user id" in str(err)
        else:
            raise AssertionError(f"{bad!r} accepted")
