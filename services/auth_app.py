"""The server's HTTP hook (``"http": {"app": ...}`` in langgraph.json): startup policy and guards.

- Startup (lifespan): :func:`services.auth_policy.check_server_policy` runs before the server
  accepts a connection; an unsafe or malformed setting stops it with a message saying what to
  set, and the mode is announced in the log.
- :class:`TenancyMiddleware` runs after authentication (``middleware_order: auth_first``) and
  covers what the auth handlers cannot see:

  - state a user writes (``POST /threads/{id}/state``, ``supersteps`` of ``POST /threads``): the
    handlers get the thread id only, so the body is checked here (only keys a user could send as
    input, their own ``user_id``);
  - MCP: a refusal inside a tool call comes back as a tool error with the reason, not HTTP 500;
  - the dev server's unauthenticated helper routes (``/internal/*``, ``/deploy``) answer 404
    unless the server runs open.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.auth_policy import (
    USER_PERMISSION,
    PolicyError,
    auth_mode,
    check_command,
    check_server_policy,
    check_state_values,
)

logger = logging.getLogger(__name__)

_DEV_ROUTES = re.compile(r"^/(internal/|deploy(/|$))")
_STATE_WRITE = re.compile(r"^/threads/[^/]+/state/?$")
_THREADS = re.compile(r"^/threads/?$")
_MCP = "/mcp"
MAX_BODY = 8 * 1024 * 1024


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Refuse to start on an unsafe auth setting; announce the mode."""
    try:
        policy = check_server_policy()
    except PolicyError as err:
        logger.critical("refusing to start: %s", err)
        raise SystemExit(f"MemRec server refused to start: {err}") from None
    if policy.mode == "off":
        logger.warning(policy.announcement())
    else:
        logger.info(policy.announcement())
    yield


async def _json(send: Send, status: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ValueError(f"request body over {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def check_state_write(identity: str, path: str, payload: Any) -> None:
    """The body of a user's state write: PermissionError when it writes what they may not."""
    if not isinstance(payload, dict):
        return  # the API answers malformed bodies itself
    if _STATE_WRITE.match(path):
        values = payload.get("values")
        many = isinstance(values, list) and bool(values) and isinstance(values[0], dict)
        for one in values if many and isinstance(values, list) else [values]:
            check_state_values(identity, "values", one)
        return
    for step in payload.get("supersteps") or []:
        updates = step.get("updates") if isinstance(step, dict) else None
        for update in updates or []:
            if isinstance(update, dict):
                check_state_values(identity, "supersteps.values", update.get("values"))
                check_command(identity, update.get("command"))


def _mcp_refusal(request: dict[str, Any], err: httpx.HTTPStatusError) -> dict[str, Any]:
    """A JSON-RPC answer for an MCP request the server refused inside (a 4xx of the API)."""
    status = err.response.status_code
    try:
        body = err.response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    message = detail if isinstance(detail, str) else err.response.text or str(err)
    text = f"refused ({status}): {message}"
    if request.get("method") == "tools/call":
        result = {"isError": True, "content": [{"type": "text", "text": text}]}
        return {"jsonrpc": "2.0", "id": request.get("id"), "result": result}
    error = {"code": -32600 if status < 500 else -32603, "message": text}
    return {"jsonrpc": "2.0", "id": request.get("id"), "error": error}


class TenancyMiddleware:
    """Guards for what the auth handlers cannot see (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check, replay and pass on one request."""
        root = scope.get("root_path") or ""
        if scope["type"] != "http" or root == "/noauth" or root.startswith("/noauth/"):
            # in-process SDK calls: authorised by the handlers with the caller's identity
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if _DEV_ROUTES.match(path) and auth_mode() != "off":
            await _json(send, 404, {"detail": "not available when auth is on"})
            return
        user = scope.get("user")
        auth = scope.get("auth")
        is_user = user is not None and USER_PERMISSION in (getattr(auth, "scopes", None) or [])
        writes_state = method == "POST" and (_STATE_WRITE.match(path) or _THREADS.match(path))
        if method != "POST" or not ((is_user and writes_state) or path == _MCP):
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except ValueError as err:
            await _json(send, 413, {"detail": str(err)})
            return
        try:
            payload = json.loads(body or b"null")
        except ValueError:  # the API answers malformed JSON itself
            await self.app(scope, _replay(body, receive), send)
            return
        if is_user and writes_state:
            try:
                check_state_write(str(getattr(user, "identity", "")), path, payload)
            except PermissionError as err:
                await _json(send, 403, {"detail": str(err)})
                return
        receive = _replay(body, receive)
        if path != _MCP or not isinstance(payload, dict):
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except httpx.HTTPStatusError as err:
            if err.response.status_code >= 500:
                raise
            logger.info("MCP %s refused: %s", payload.get("method"), err)
            await _json(send, 200, _mcp_refusal(payload, err))


app = Starlette(middleware=[Middleware(TenancyMiddleware)], lifespan=lifespan)
