"""Server policy and environment, tested by starting the server the ways the README gives.

- `memrec serve` and `langgraph dev` with the shipped langgraph.json refuse to start without a
  token table, with a malformed one, and in open mode on a non-loopback bind, each with a message
  saying what to set; `memrec serve` refuses before it starts anything.
- `MEMREC_AUTH=off memrec serve` runs open on 127.0.0.1, says so at startup, and uses the
  exported MEMREC_HOME (the shipped config loads no env file over the shell).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import httpx
import pytest

from cli.chat_cmds import langgraph_executable
from tests.support.chroma_server import free_port
from tests.support.fixtures import copy_store, data_dir
from tests.support.langgraph_dev import run_to_exit, server_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
MEMREC = [str(Path(sys.executable).with_name("memrec"))]  # the console script uv installs
TABLE = {
    "a-user-token-0123456789": "1",
    "an-admin-token-0123456789": {"identity": "ops", "admin": True},
}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMREC_AUTH")}
    env.pop("LANGGRAPH_API_URL", None)
    return {**env, "MEMREC_DATA_DIR": str(data_dir()), "MEMREC_ROLES": "offline", **extra}


def _langgraph_dev(host: str = "127.0.0.1") -> list[str]:
    return [
        langgraph_executable(),
        "dev",
        "--host",
        host,
        "--port",
        str(free_port()),
        "--no-browser",
        "--no-reload",
    ]


def test_shipped_config_loads_no_env_file_and_has_the_guards() -> None:
    config = json.loads((REPO / "langgraph.json").read_text())
    assert "env" not in config  # exported variables are the configuration
    assert config["auth"] == {"path": "./services/auth.py:auth"}
    http = config["http"]
    assert http["app"] == "./services/http_app.py:app" and http["middleware_order"] == "auth_first"
    assert http["enable_custom_route_auth"] is True  # MemRec's /mcp behind the same auth
    from services.auth_app import TenancyMiddleware
    from services.http_app import app

    assert [m.cls for m in app.user_middleware] == [TenancyMiddleware]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "MEMREC_AUTH_TOKENS="),
        ({"MEMREC_AUTH_TOKENS": '{"short": "1"}'}, "at least 16"),
        ({"MEMREC_AUTH_TOKENS": "{oops"}, "not JSON"),
        ({"MEMREC_AUTH": "off", "MEMREC_AUTH_TOKENS": json.dumps(TABLE)}, "unset"),
    ],
    ids=["no-table", "short-token", "not-json", "off-and-table"],
)
def test_langgraph_dev_refuses_unsafe_settings(env: dict[str, str], says: str) -> None:
    code, out = run_to_exit(_langgraph_dev(), _env(**env), cwd=REPO)
    assert code != 0
    assert "refusing to start" in out and says in out, out[-2000:]
    assert "Application started up" not in out


def test_langgraph_dev_refuses_open_mode_on_all_interfaces() -> None:
    code, out = run_to_exit(_langgraph_dev("0.0.0.0"), _env(MEMREC_AUTH="off"), cwd=REPO)
    assert code != 0
    assert "refusing to start" in out and "loopback" in out and "0.0.0.0" in out, out[-2000:]


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        ([], {}, "MEMREC_AUTH=off"),
        (["--host", "0.0.0.0"], {"MEMREC_AUTH": "off"}, "loopback"),
        ([], {"MEMREC_AUTH_TOKENS_FILE": "/nonexistent/tokens.json"}, "cannot read"),
    ],
    ids=["no-table", "open-on-all-interfaces", "missing-token-file"],
)
def test_memrec_serve_refuses_before_starting(
    args: list[str], env: dict[str, str], says: str
) -> None:
    cmd = [*MEMREC, "serve", "--port", str(free_port()), *args]
    code, out = run_to_exit(cmd, _env(**env), cwd=REPO, timeout_s=60)
    assert code == 2, out
    assert says in re.sub(r"\s+", " ", out)
    assert "Welcome to" not in out  # the langgraph server never started


def test_open_mode_on_loopback_is_announced_and_uses_the_exported_home(tmp_path: Path) -> None:
    home = copy_store(tmp_path / "home")
    port = free_port()
    log = tmp_path / "serve.log"
    env = _env(MEMREC_AUTH="off", MEMREC_HOME=str(home))
    with server_process([*MEMREC, "serve", "--port", str(port)], port, env, log, REPO) as url:
        done = httpx.post(
            f"{url}/runs/wait",
            json={"assistant_id": "recommend", "input": {"user_id": "1"}},
            timeout=120,
        )
        assert done.status_code == 200, done.text
        assert len(done.json()["ranking"]) == 10  # the indexed store under the exported home
        text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace"))
        assert "MEMREC_AUTH=off: OPEN MODE on 127.0.0.1" in text
