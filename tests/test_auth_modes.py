"""Auth modes: open for local development without a token table, enforced with one."""

import json

import pytest
from langgraph_sdk import Auth

from services.auth import LOCAL_ADMIN, authenticate


async def test_no_token_table_means_local_development(monkeypatch) -> None:
    monkeypatch.delenv("MEMREC_AUTH_TOKENS", raising=False)
    monkeypatch.delenv("MEMREC_AUTH_TOKENS_FILE", raising=False)
    user = await authenticate(None)
    assert user["identity"] == LOCAL_ADMIN and "admin" in user["permissions"]


async def test_a_token_table_enforces_bearer_tokens(monkeypatch) -> None:
    monkeypatch.setenv("MEMREC_AUTH_TOKENS", json.dumps({"token-of-user-7": "7"}))
    with pytest.raises(Auth.exceptions.HTTPException):
        await authenticate(None)
    with pytest.raises(Auth.exceptions.HTTPException):
        await authenticate("Bearer wrong-token-123")
    user = await authenticate("Bearer token-of-user-7")
    assert user["identity"] == "7" and user["permissions"] == ["user"]
