"""The CLI's event loop: uvloop as under the servers, the standard loop on request."""

from __future__ import annotations

import asyncio
import warnings

import pytest
import uvloop

from services.event_loop import EventLoopConfigError, run


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_commands_run_on_uvloop_by_default(monkeypatch) -> None:
    monkeypatch.delenv("MEMREC_EVENT_LOOP", raising=False)
    assert run(_loop_type()) is uvloop.Loop


def test_the_standard_loop_on_request(monkeypatch) -> None:
    monkeypatch.setenv("MEMREC_EVENT_LOOP", "asyncio")
    assert not issubclass(run(_loop_type()), uvloop.Loop)


def test_a_misspelt_loop_is_named_and_nothing_runs(monkeypatch) -> None:
    monkeypatch.setenv("MEMREC_EVENT_LOOP", "trio")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be a warning
        with pytest.raises(EventLoopConfigError, match="MEMREC_EVENT_LOOP='trio'"):
            run(_loop_type())


def test_the_cli_reports_a_misspelt_loop_in_one_line(monkeypatch, capsys) -> None:
    import typer

    from cli.options import user_errors

    monkeypatch.setenv("MEMREC_EVENT_LOOP", "trio")
    with pytest.raises(typer.Exit) as stopped, user_errors():
        run(_loop_type())
    assert stopped.value.exit_code == 2
    assert "MEMREC_EVENT_LOOP='trio'" in capsys.readouterr().err
