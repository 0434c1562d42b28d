"""A recording reverse proxy in front of a real model server (for ``bench realmodel``).

Every chat completion that passes is recorded: the task (the ``TASK:`` marker of the system
prompt), whether it streamed, the HTTP status, the finish reason, the tokens the server reported
(None when it reported none, as llama-cpp-python's streams) beside the project's offline estimate,
the latency, whether the client went away first, and whether the reply is a schema-valid answer of
its task. A client that disconnects disconnects the upstream request too, so the server sees
exactly what it would see without the proxy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn
from pydantic import BaseModel, Field

from prompts.tokens import count_tokens
from roles.guard import MalformedReply, parse_reply
from schemas.chat_state import Understanding
from schemas.records import FacetSet, PropagationResult, Ranking, UserProfile
from schemas.ruleset import RuleSet

log = logging.getLogger(__name__)

SCHEMAS: dict[str, type[BaseModel]] = {
    "rank": Ranking,
    "synthesize": FacetSet,
    "propagate": PropagationResult,
    "rules": RuleSet,
    "profile": UserProfile,
    "understand": Understanding,
}
_TASK = re.compile(r"TASK: (\w+)")
_FORWARDED = ("content-type", "authorization")


class CallRecord(BaseModel):
    """One chat completion as it passed the proxy."""

    task: str | None = Field(description="TASK marker of the system prompt; None = free text")
    stream: bool
    status: int | None = Field(description="HTTP status; None = the client left first")
    finish_reason: str | None = None
    server_in: int | None = Field(None, description="prompt tokens the server reported")
    server_out: int | None = Field(None, description="completion tokens the server reported")
    est_in: int = Field(description="prompts/tokens.py estimate of the messages")
    est_out: int = Field(0, description="prompts/tokens.py estimate of the reply text")
    latency_s: float
    client_gone: bool = Field(False, description="the client disconnected before the end")
    valid: bool | None = Field(None, description="schema-valid answer of its task (None: no task)")
    request_keys: list[str] = Field(default_factory=list, description="fields of the request")
    reply_head: str = ""


def _text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _reply_of(raw: bytes, stream: bool) -> tuple[str, str | None, dict[str, Any] | None]:
    """The reply text (content or tool arguments), finish reason and usage of a response body."""
    if not stream:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            return "", None, None
        choice = (data.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        calls = message.get("tool_calls") or []
        text = message.get("content") or (calls[0]["function"]["arguments"] if calls else "")
        return text, choice.get("finish_reason"), data.get("usage")
    text, finish, usage = "", None, None
    for line in raw.decode(errors="replace").splitlines():
        if not line.startswith("data:") or line.strip() == "data: [DONE]":
            continue
        try:
            chunk = json.loads(line[5:])
        except json.JSONDecodeError:
            continue
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                text += (call.get("function") or {}).get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return text, finish, usage


def _valid(task: str | None, text: str) -> bool | None:
    schema = SCHEMAS.get(task or "")
    if schema is None:
        return None
    try:
        parse_reply(text, schema)
    except MalformedReply:
        return False
    return True


class RecordingProxy:
    """Forward ``/v1/...`` to ``upstream`` (a base URL without ``/v1``) and record each call."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.calls: list[CallRecord] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (append ``/v1`` for an OpenAI client)."""
        return f"http://127.0.0.1:{self._port}"

    def take(self) -> list[CallRecord]:
        """The calls recorded so far, forgetting them."""
        with self._lock:
            calls, self.calls = self.calls, []
        return calls

    def __enter__(self) -> RecordingProxy:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app, log_level="warning", lifespan="off", access_log=False, interface="asgi3"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the recording proxy did not start within 10 s")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch(receive, gone))
        try:
            await self._forward(scope, raw, send, gone)
        finally:
            watcher.cancel()

    async def _forward(self, scope: dict[str, Any], raw: bytes, send: Any, gone: Any) -> None:
        query = scope.get("query_string", b"").decode()
        url = self.upstream + scope["path"] + (f"?{query}" if query else "")
        headers = {
            k.decode(): v.decode() for k, v in scope["headers"] if k.decode().lower() in _FORWARDED
        }
        body: dict[str, Any] = {}
        if scope["path"].endswith("/chat/completions"):
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                body = {}
        started = time.perf_counter()
        status: int | None = None
        received = b""
        left = False  # the client went away before the whole reply reached it
        async with httpx.AsyncClient(timeout=None) as client:
            request = client.build_request(scope["method"], url, content=raw, headers=headers)
            sending = asyncio.create_task(client.send(request, stream=True))
            waiting = asyncio.create_task(gone.wait())
            await asyncio.wait({sending, waiting}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if not sending.done():  # the client left while the server had not answered
                sending.cancel()
                left = True
            else:
                response = sending.result()
                try:
                    status = response.status_code
                    kept = [
                        (k.encode(), v.encode())
                        for k, v in response.headers.items()
                        if k.lower() == "content-type"
                    ]
                    await send({"type": "http.response.start", "status": status, "headers": kept})
                    async for chunk in response.aiter_raw():
                        received += chunk
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        if gone.is_set():
                            left = True
                            break  # closing the response closes the upstream connection
                    left = left or gone.is_set()
                    await send({"type": "http.response.body", "body": b""})
                finally:
                    await response.aclose()
        if body:
            self._record(body, status, received, time.perf_counter() - started, left)

    def _record(
        self, body: dict[str, Any], status: int | None, raw: bytes, seconds: float, gone: bool
    ) -> None:
        messages = body.get("messages") or []
        system = next((_text(m) for m in messages if m.get("role") == "system"), "")
        task = m.group(1) if (m := _TASK.search(system)) else None
        stream = bool(body.get("stream"))
        text, finish, usage = _reply_of(raw, stream) if status == 200 else ("", None, None)
        answered = status == 200 and not gone  # a reply cut short by the client is no answer
        record = CallRecord(
            task=task,
            stream=stream,
            status=status,
            finish_reason=finish,
            server_in=(usage or {}).get("prompt_tokens"),
            server_out=(usage or {}).get("completion_tokens"),
            est_in=sum(count_tokens(_text(m)) for m in messages),
            est_out=count_tokens(text),
            latency_s=round(seconds, 2),
            client_gone=gone,
            valid=_valid(task, text) if answered else None,
            request_keys=sorted(k for k in body if k != "messages"),
            reply_head=text[:160],
        )
        with self._lock:
            self.calls.append(record)


async def _watch(receive: Any, gone: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            gone.set()
            return
