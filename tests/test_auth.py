"""Tenancy on the LangGraph server: `langgraph dev` with services/auth.py, real HTTP on 127.0.0.1.

The server runs a copy of langgraph.json (written to tmp, absolute paths, plus the ``auth``
entry) against the indexed ml-100k store. User "1" (alice) and user "2" (bob) hold user tokens,
"ops" an admin token. Checked: no / unknown token is refused; alice cannot read, search or run on
bob's thread, cannot run recommend (or chat) with bob's user id, cannot read bob's memory through
thread state, cannot redirect the store or the model endpoint, cannot run admin graphs; the admin
can do all of it; Studio's anonymous user gets nothing by default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.auth_policy import _parse_tokens, check_run_request
from tests.support.fixtures import data_dir, indexed_home
from tests.support.langgraph_dev import langgraph_dev, project_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
ALICE, BOB, ADMIN = "tok-alice-0001-secret", "tok-bob-0002-secret", "tok-admin-0003-secret"
TOKENS = {ALICE: "1", BOB: "2", ADMIN: {"identity": "ops", "admin": True}}


def _config(tmp: Path) -> Path:
    """The shipped langgraph.json, whose `auth` entry is what is under test."""
    assert json.loads((REPO / "langgraph.json").read_text())["auth"] == {
        "path": "./services/auth.py:auth"
    }
    env = {
        "MEMREC_HOME": str(indexed_home()),
        "MEMREC_DATA_DIR": str(data_dir()),
        "MEMREC_ROLES": "offline",
    }
    return project_config(tmp, env)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("auth")
    env = {
        **os.environ,
        "MEMREC_AUTH_TOKENS": json.dumps(TOKENS),
        "MEMREC_HOME": str(indexed_home()),
        "MEMREC_DATA_DIR": str(data_dir()),
        "MEMREC_ROLES": "offline",
    }
    for name in ("MEMREC_AUTH", "MEMREC_AUTH_STUDIO", "MEMREC_AUTH_TOKENS_FILE"):
        env.pop(name, None)
    with langgraph_dev(_config(tmp), env, tmp / "server.log", cwd=REPO) as url:
        yield url


def _client(url: str, token: str | None = None, **headers: str) -> httpx.Client:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=url, headers=headers, timeout=60)


def _run(client: httpx.Client, thread: str | None, inp: dict, **extra: object) -> httpx.Response:
    path = f"/threads/{thread}/runs/wait" if thread else "/runs/wait"
    return client.post(path, json={"assistant_id": "recommend", "input": inp, **extra})


def test_tokens_are_required(server: str) -> None:
    # the server answers an authentication failure with 403 and our message
    anonymous = _client(server).post("/threads", json={})
    assert anonymous.status_code in (401, 403) and "Bearer" in anonymous.text
    unknown = _client(server, "not-a-token").post("/threads", json={})
    assert unknown.status_code in (401, 403) and "unknown token" in unknown.text
    studio = _client(server, **{"x-auth-scheme": "langsmith"})
    assert studio.post("/threads", json={}).status_code == 403  # Studio's anonymous user


def test_threads_are_private(server: str) -> None:
    alice, bob, admin = _client(server, ALICE), _client(server, BOB), _client(server, ADMIN)
    thread = alice.post("/threads", json={"metadata": {"owner": "2"}}).json()
    assert thread["metadata"]["owner"] == "1"  # an owner claimed by the client is overwritten
    tid = thread["thread_id"]
    assert alice.get(f"/threads/{tid}").status_code == 200
    assert bob.get(f"/threads/{tid}").status_code == 404
    assert bob.get(f"/threads/{tid}/state").status_code == 404
    assert bob.patch(f"/threads/{tid}", json={"metadata": {"x": 1}}).status_code == 404
    found = bob.post("/threads/search", json={}).json()
    assert tid not in {t["thread_id"] for t in found}
    assert tid in {t["thread_id"] for t in alice.post("/threads/search", json={}).json()}
    assert admin.get(f"/threads/{tid}").status_code == 200
    assert _run(bob, tid, {"user_id": "2"}).status_code in (403, 404)


def test_users_recommend_only_for_themselves(server: str) -> None:
    alice, admin = _client(server, ALICE), _client(server, ADMIN)
    refused = _run(alice, None, {"user_id": "2"})
    assert refused.status_code == 403 and "own user_id" in refused.text
    assert _run(alice, None, {"user_id": " 2"}).status_code == 403
    ok = _run(alice, None, {"user_id": "1"})
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["ranking"]) == 10
    filled = _run(alice, None, {})  # no user_id: it is the caller's
    assert filled.status_code == 200 and len(filled.json()["ranking"]) == 10
    assert _run(admin, None, {"user_id": "2"}).status_code == 200


def test_memory_of_another_user_is_unreachable(server: str) -> None:
    alice, bob, admin = _client(server, ALICE), _client(server, BOB), _client(server, ADMIN)
    tid = bob.post("/threads", json={}).json()["thread_id"]
    assert _run(bob, tid, {"user_id": "2"}).status_code == 200
    assert bob.get(f"/threads/{tid}/state").json()["values"]["user_memory"]
    assert alice.get(f"/threads/{tid}/state").status_code == 404
    assert alice.get(f"/threads/{tid}/history").status_code == 404
    assert alice.get(f"/threads/{tid}/runs").status_code == 404
    assert admin.get(f"/threads/{tid}/state").json()["values"]["user_memory"]


def test_run_context_cannot_redirect_store_or_models(server: str) -> None:
    alice = _client(server, ALICE)
    for context in ({"home": "/tmp/elsewhere"}, {"base_url": "http://127.0.0.1:1/v1"}):
        response = _run(alice, None, {"user_id": "1"}, context=context)
        assert response.status_code == 403 and "admin" in response.text
    assert _run(alice, None, {"user_id": "1"}, context={"k": 8}).status_code == 200


def test_admin_graphs_are_admin_only(server: str) -> None:
    alice, admin = _client(server, ALICE), _client(server, ADMIN)
    body = {"assistant_id": "propagate", "input": {"interaction_id": "nope"}}
    assert alice.post("/runs/wait", json=body).status_code == 403
    assert alice.post("/assistants", json={"graph_id": "recommend"}).status_code == 403
    assert admin.post("/assistants", json={"graph_id": "recommend"}).status_code == 200
    assert alice.post("/assistants/search", json={}).status_code == 200


def test_chat_is_bound_to_the_caller(server: str) -> None:
    if not (REPO / "graph" / "chat.py").exists():
        pytest.skip("graph/chat.py is not there yet")
    alice = _client(server, ALICE)
    body = {"assistant_id": "chat", "input": {"user_id": "2", "messages": []}}
    assert alice.post("/runs/wait", json=body).status_code == 403


def test_token_table_and_run_checks_unit() -> None:
    table = _parse_tokens(json.dumps(TOKENS), "test")
    assert table[ALICE] == ("1", False) and table[ADMIN] == ("ops", True)
    with pytest.raises(ValueError, match="at least|>= 8"):
        _parse_tokens('{"short": "1"}', "test")
    kwargs: dict = {"input": {}}
    check_run_request("1", "recommend", kwargs)
    assert kwargs["input"]["user_id"] == "1"
    with pytest.raises(Exception, match="own user_id"):
        check_run_request("1", "recommend", {"input": {"user_id": 2}})
