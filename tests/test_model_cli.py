"""Model configuration on the command line, against the llama.cpp emulation of the test server.

Every command that calls a model takes the model options; a local server is reached with
``--roles local --base-url ...``; a per-call ``--timeout`` is honoured (and not retried); when a
role falls back, the output says which model failed and why (text, ``--json``, memory history).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from roles.client import forget_endpoints
from tests.support.fixtures import TINY_MOVIES, copy_store
from tests.support.openai_server import OpenAITestServer, Reply, ServerMode

pytestmark = pytest.mark.integration

MODEL_ENV = (
    "MEMREC_ROLES",
    "MEMREC_LMMEM",
    "MEMREC_LLMREC",
    "MEMREC_BASE_URL",
    "MEMREC_TIMEOUT_S",
    "MEMREC_MAX_TOKENS",
    "MEMREC_MODEL_CONCURRENCY",
    "MEMREC_RETRIES",
    "MEMREC_ROLE_SETTINGS",
)
MODEL_COMMANDS = (
    ["recommend"],
    ["feedback"],
    ["chat"],
    ["eval"],
    ["rules", "generate"],
    ["index"],
    ["worker"],
    ["demo"],
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The options set environment variables: restored after each test."""
    for name in MODEL_ENV:
        monkeypatch.setenv(name, "")  # "" reads as unset; teardown restores the original
    forget_endpoints()
    yield
    forget_endpoints()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_store(tmp_path_factory.mktemp("model-cli"), TINY_MOVIES)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("command", MODEL_COMMANDS, ids=" ".join)
def test_every_model_command_takes_the_model_options(command: list[str]) -> None:
    code, out = _run(*command, "--help")
    assert code == 0
    for flag in ("--roles", "--lmmem", "--llmrec", "--base-url", "--timeout", "--max-tokens"):
        assert flag in out, f"{' '.join(command)} has no {flag}"


def test_bad_timeout_is_one_clear_line(home: Path) -> None:
    code, out = _run(
        "recommend", "--user", "1", "--dataset", TINY_MOVIES, "--home", str(home),
        "--timeout", "soon",
    )  # fmt: skip
    assert code == 2 and "--timeout 'soon' is not a float" in out


def test_recommend_on_a_local_server_with_a_timeout_says_which_model_fell_back(home: Path) -> None:
    with OpenAITestServer(mode=ServerMode.llama_cpp()) as server:
        url = f"{server.url}/v1"
        base = ["--dataset", TINY_MOVIES, "--home", str(home), "--roles", "local"]
        code, out = _run("recommend", "--user", "1", *base, "--base-url", url, "--json")
        assert code == 0, out
        ok = json.loads(out)
        served = [r for r in server.chat_requests() if r.task is not None]
        assert served and all(r.body.get("max_tokens") for r in served)
        assert ok["usage"]["rank"]["fallbacks"] == 0 and not ok.get("notes")

        server.clear()
        forget_endpoints()
        server.script(*[Reply(delay_s=2.0)] * 4)
        code, out = _run(
            "recommend", "--user", "2", *base, "--base-url", url, "--timeout", "0.5", "--json"
        )
    assert code == 0, out
    slow = json.loads(out)
    rank = slow["usage"]["rank"]
    assert rank["fallbacks"] == 1 and rank["model"] == f"local@{url}"  # the model asked, kept
    assert rank["fallback_reason"] == "timeout after 0.5 s" and rank["retries"] == 0
    assert any("could not rank the candidates (timeout after 0.5 s)" in n for n in slow["notes"])
    assert len(slow["ranking"]) > 0


def test_rules_generate_prints_the_fallback_notice(home: Path) -> None:
    def refuse(request: object) -> Reply:
        return Reply.error(400)

    with OpenAITestServer(refuse) as server:
        code, out = _run(
            "rules", "generate", "--dataset", TINY_MOVIES, "--home", str(home),
            "--lmmem", f"openai-compatible:m@{server.url}/v1",
        )  # fmt: skip
    assert code == 0, out
    assert "note:" in out and "could not write the rule set (HTTP 400" in " ".join(out.split())


def test_feedback_fallback_is_announced_and_kept_in_the_memory_history(home: Path) -> None:
    def fail(request: object) -> Reply:
        return Reply.error(400)

    with OpenAITestServer(fail) as server:
        spec = f"openai-compatible:m@{server.url}/v1"
        where = ["--dataset", TINY_MOVIES, "--home", str(home)]
        code, out = _run("feedback", "--user", "3", "--item", "7", *where, "--lmmem", spec)
        assert code == 0, out
        flat = " ".join(out.split())
        assert "could not update the memories (HTTP 400" in flat
        code, out = _run("memory", "history", "--user", "3", *where)
    assert code == 0, out
    assert "offline fallback" in " ".join(out.split())
