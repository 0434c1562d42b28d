"""Auth modes and the server policy, without a server: open only when chosen and on loopback."""

import json

import pytest
from langgraph_sdk import Auth

from services.auth import authenticate
from services.auth_policy import (
    LOCAL_ADMIN,
    PolicyError,
    check_run_request,
    check_server_policy,
    is_loopback,
)

TABLE = json.dumps(
    {"token-of-user-7-abcdef": "7", "token-of-ops-0-abcdef": {"identity": "ops", "admin": True}}
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MEMREC_AUTH",
        "MEMREC_AUTH_TOKENS",
        "MEMREC_AUTH_TOKENS_FILE",
        "MEMREC_AUTH_STUDIO",
        "LANGGRAPH_API_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_no_token_table_refuses_with_what_to_set() -> None:
    with pytest.raises(PolicyError, match="MEMREC_AUTH_TOKENS") as err:
        check_server_policy({}, host="127.0.0.1")
    assert "MEMREC_AUTH=off" in str(err.value)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("{not json", "not JSON"),
        ("[]", "JSON object"),
        ("{}", "non-empty"),
        ('{"short": "1"}', "at least 16"),
        ('{"token-of-user-7-abcdef": 7}', "user id or"),
        ('{"token-of-user-7-abcdef": {"identity": "x", "admin": "yes"}}', "true or false"),
        ('{"token-of-user-7-abcdef": "memrec-internal"}', "reserved"),
    ],
)
def test_malformed_token_table_refuses(raw: str, says: str) -> None:
    with pytest.raises(PolicyError, match=says):
        check_server_policy({"MEMREC_AUTH_TOKENS": raw}, host="0.0.0.0")


def test_token_file_that_is_missing_refuses(tmp_path) -> None:
    env = {"MEMREC_AUTH_TOKENS_FILE": str(tmp_path / "nope.json")}
    with pytest.raises(PolicyError, match="cannot read"):
        check_server_policy(env, host="0.0.0.0")


def test_a_token_table_serves_any_bind() -> None:
    policy = check_server_policy({"MEMREC_AUTH_TOKENS": TABLE}, host="0.0.0.0")
    assert (policy.mode, policy.users, policy.admins) == ("tokens", 1, 1)
    assert "1 user token(s), 1 admin token(s)" in policy.announcement()


def test_open_mode_only_when_chosen_and_on_loopback() -> None:
    policy = check_server_policy({"MEMREC_AUTH": "off"}, host="127.0.0.1")
    assert policy.mode == "off" and "OPEN MODE" in policy.announcement()
    for host in ("0.0.0.0", "192.168.1.5", "::", ""):
        with pytest.raises(PolicyError, match="loopback"):
            check_server_policy({"MEMREC_AUTH": "off"}, host=host)
    with pytest.raises(PolicyError, match="choose|unset"):
        check_server_policy({"MEMREC_AUTH": "off", "MEMREC_AUTH_TOKENS": TABLE}, host="127.0.0.1")
    with pytest.raises(PolicyError, match="accepted values"):
        check_server_policy({"MEMREC_AUTH": "maybe"}, host="127.0.0.1")


def test_the_bind_comes_from_the_url_langgraph_dev_sets() -> None:
    env = {"MEMREC_AUTH": "off", "LANGGRAPH_API_URL": "http://0.0.0.0:2024"}
    with pytest.raises(PolicyError, match="0.0.0.0"):
        check_server_policy(env)
    env["LANGGRAPH_API_URL"] = "http://127.0.0.1:2024"
    assert check_server_policy(env).mode == "off"


def test_studio_admin_only_on_loopback() -> None:
    env = {"MEMREC_AUTH_TOKENS": TABLE, "MEMREC_AUTH_STUDIO": "admin"}
    assert check_server_policy(env, host="127.0.0.1").studio_admin
    with pytest.raises(PolicyError, match="loopback"):
        check_server_policy(env, host="0.0.0.0")


def test_loopback_hosts() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.org", ""]))


async def test_open_mode_makes_every_caller_a_local_admin(monkeypatch) -> None:
    monkeypatch.setenv("MEMREC_AUTH", "off")
    user = await authenticate(None, None)
    assert user["identity"] == LOCAL_ADMIN and "admin" in user["permissions"]


async def test_tokens_come_as_bearer_or_x_api_key(monkeypatch) -> None:
    monkeypatch.setenv("MEMREC_AUTH_TOKENS", TABLE)
    for authorization, key in (
        (None, None),
        ("Bearer wrong-token-1234567", None),
        ("Basic token-of-user-7-abcdef", None),
        ("Bearer token-of-user-7-abcdef", b"token-of-ops-0-abcdef"),
    ):
        with pytest.raises(Auth.exceptions.HTTPException) as err:
            await authenticate(authorization, {b"x-api-key": key} if key else {})
        assert err.value.status_code == 401
    user = await authenticate("Bearer token-of-user-7-abcdef", None)
    assert user == {"identity": "7", "permissions": ["user"]}
    user = await authenticate(None, {b"x-api-key": b"token-of-ops-0-abcdef"})
    assert user == {"identity": "ops", "permissions": ["admin"]}


def test_a_users_run_request() -> None:
    kwargs: dict = {"input": {"messages": []}}
    check_run_request("7", "chat", kwargs)
    assert kwargs["input"]["user_id"] == "7"  # messages-only input runs as the caller
    resume: dict = {"input": None, "command": {"resume": "yes"}}
    check_run_request("7", "recommend", resume, thread_id="t1")
    assert resume["input"] is None  # a resume is not turned into a new input
    refused = [
        {"input": {"user_id": "8"}},
        {"command": {"update": {"user_id": "8"}}},
        {"command": {"update": {"user_memory": "x"}}},
        {"command": {"goto": {"node": "curate", "input": {}}}},
        {"context": {"fanout_cap": 100}},
        {"context": {"k": 10_000}},
        {"config": {"configurable": {"home": "/elsewhere"}}},
        {"config": {"configurable": {"thread_id": "other"}}},
    ]
    for bad in refused:
        with pytest.raises(PermissionError):
            check_run_request("7", "recommend", {"input": None, **bad}, thread_id="t1")
    own_thread = {"input": None, "config": {"configurable": {"thread_id": "t1"}}}
    check_run_request("7", "recommend", own_thread, thread_id="t1")


def test_nodes_refuse_to_act_for_another_user_in_a_users_run() -> None:
    """The backstop under the auth handlers: a user's run, whatever its state, acts for them."""
    from langgraph.graph import START, StateGraph
    from typing_extensions import TypedDict

    from schemas.records import NeighbourSnippet
    from schemas.tenancy import WITHHELD, TenancyError, check_acting_user, shown_to_caller

    class S(TypedDict, total=False):
        user_id: str
        shown: list

    snippets = [
        NeighbourSnippet(ref="user:8", kind="user", text="private", score=1.0),
        NeighbourSnippet(ref="item:3", kind="item", text="an item", score=1.0),
    ]

    def node(state: S) -> dict:
        check_acting_user(state["user_id"])
        return {"shown": [s.text for s in shown_to_caller(snippets)]}

    graph = StateGraph(S).add_node("n", node).add_edge(START, "n").compile()
    as_user = {
        "configurable": {"langgraph_auth_user_id": "7", "langgraph_auth_permissions": ["user"]}
    }
    assert graph.invoke({"user_id": "7"}, as_user)["shown"] == [WITHHELD, "an item"]
    with pytest.raises(TenancyError, match="may not act for user '8'"):
        graph.invoke({"user_id": "8"}, as_user)
    as_admin = {
        "configurable": {"langgraph_auth_user_id": "ops", "langgraph_auth_permissions": ["admin"]}
    }
    assert graph.invoke({"user_id": "8"}, as_admin)["shown"] == ["private", "an item"]
    assert graph.invoke({"user_id": "8"})["shown"] == ["private", "an item"]  # off a server
