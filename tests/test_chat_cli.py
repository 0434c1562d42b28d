"""`memrec chat` driven as a subprocess (stdin in, replies out), and `memrec serve`'s command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli.chat_cmds import serve_command
from memory_store.events import EventLog
from tests.support.fixtures import DATASET, copy_store, data_dir

# Subprocesses of `memrec chat` on ml-100k.
pytestmark = pytest.mark.slow

MEMREC = Path(sys.executable).with_name("memrec")


def run_chat(home: Path, lines: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMREC_DATA_DIR": str(data_dir()), "MEMREC_ROLES": "offline"}
    env.pop("OPENAI_API_KEY", None)
    cmd = [str(MEMREC), "chat", "--dataset", DATASET, "--user", "1", "--home", str(home), *extra]
    return subprocess.run(
        cmd, input="\n".join(lines) + "\n", capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_store(tmp_path_factory.mktemp("chat-cli"))


def test_chat_lists_picks_acknowledges_feedback_and_survives_a_restart(home: Path) -> None:
    done = run_chat(home, ["a 90s comedy, no horror", "I loved Heat", "/quit", "never read"])
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "MemRec chat on ml-100k as user 1" in out
    assert "Here are my picks (Comedy, 1990s, no Horror):" in out
    picks = re.findall(r"^1\. (.+?) - ", out, flags=re.M)
    assert len(picks) == 2  # one list per turn
    assert "Noted: you loved Heat (1995)." in out
    assert "never read" not in out
    events = EventLog(home / "stores" / DATASET / "events.sqlite")
    try:
        heat = [e for e in events.interactions() if e.user_id == "1" and e.item_id == "273"]
        assert heat, "the feedback was not recorded"
    finally:
        events.close()
    # a new process on the same thread remembers the last picks ("not that one")
    again = run_chat(home, ["not that one"])
    assert again.returncode == 0, again.stderr
    assert f"OK, I left out {picks[-1]} for this conversation." in again.stdout
    assert "Comedy, 1990s, no Horror" in again.stdout  # and the constraints


def test_chat_on_a_store_that_is_not_indexed_says_how_to_fix_it(tmp_path: Path) -> None:
    done = run_chat(tmp_path, ["hello"])
    assert done.returncode == 2
    assert "memrec index --dataset ml-100k" in done.stderr.replace("\n", " ")


def test_serve_runs_langgraph_dev_on_loopback_with_the_project_config() -> None:
    config = Path("/x/langgraph.json")
    cmd = serve_command(8123, config)
    assert Path(cmd[0]).name == "langgraph" and Path(cmd[0]).exists()
    assert cmd[1:] == [
        "dev",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--no-browser",
        "--config",
        str(config),
    ]
    assert serve_command(8123, config, allow_blocking=True)[-1] == "--allow-blocking"
