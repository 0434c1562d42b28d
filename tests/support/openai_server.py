"""An OpenAI-compatible HTTP test server with scripted replies and faults.

A raw ASGI app served by uvicorn in a background thread on 127.0.0.1 (a free port). It implements
``POST /v1/chat/completions`` (JSON and SSE streaming with usage), ``GET /v1/models`` and
``POST /v1/embeddings`` (deterministic vectors).

By default it answers every MemRec task validly: the task comes from the ``TASK: <name>`` marker of
the system prompt, and the answer is built from the candidate ids / neighbour refs in the prompt's
data blocks. Tests script behaviour with :meth:`OpenAITestServer.script` (a queue of
:class:`Reply`) or a ``handler(request) -> Reply | None``; a Reply may carry a fault (malformed
content, HTTP errors, a dropped connection, delays).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn

from prompts.blocks import extract_block
from prompts.repair import REPAIR_MARKER
from prompts.tokens import count_tokens

Fault = Literal[
    "invalid_json",
    "truncated_json",
    "prose_around",
    "wrong_types",
    "missing_ids",
    "duplicate_ids",
    "hallucinated_ids",
    "empty_choices",
    "reset",
]
_TASK = re.compile(r"TASK: (\w+)")
_MAX_FACETS = re.compile(r"at most (\d+) facets")


@dataclass
class Reply:
    """One scripted reply. Defaults: 200 with a valid answer for the request's task."""

    content: str | None = None  # assistant text; None = the valid default answer
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None  # raw JSON body (for error replies)
    fault: Fault | None = None
    delay_s: float = 0.0  # before the first byte
    chunk_delay_s: float = 0.0  # between streamed chunks

    @classmethod
    def error(cls, status: int, retry_after: str | None = None) -> Reply:
        """An OpenAI-style error response, optionally with a Retry-After header."""
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        kind = "rate_limit_exceeded" if status == 429 else "server_error"
        body = {"error": {"message": f"test server says {status}", "type": kind, "code": kind}}
        return cls(status=status, headers=headers, body=body)


@dataclass
class RecordedRequest:
    """A request the server received."""

    method: str
    path: str
    body: dict[str, Any]
    task: str | None = None  # rules / synthesize / rank / propagate, from the system prompt
    repair: bool = False  # the last user message is a repair prompt

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of a completion request."""
        return list(self.body.get("messages", []))


Handler = Callable[[RecordedRequest], "Reply | None"]


def _text(message: dict[str, Any]) -> str:
    """The text of an OpenAI chat message (string or content parts)."""
    content = message.get("content") or ""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _json_rows(block: str | None) -> list[dict[str, Any]]:
    """Rows of a JSON-lines data block (non-JSON lines skipped)."""
    rows = []
    for line in (block or "").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _user_text(messages: list[dict[str, Any]]) -> str:
    """The first user message: where the data blocks are (a repair comes later)."""
    return next((_text(m) for m in messages if m.get("role") == "user"), "")


def default_answer(task: str | None, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A valid answer for ``task`` built from the data blocks of the prompt."""
    system = next((_text(m) for m in messages if m.get("role") == "system"), "")
    user = _user_text(messages)
    refs = [row["ref"] for row in _json_rows(extract_block(user, "NEIGHBOURS")) if "ref" in row]
    if task == "rank":
        ids = [row["item_id"] for row in _json_rows(extract_block(user, "CANDIDATES"))]
        evidence = refs[:1]
        return {
            "items": [
                {
                    "item_id": item_id,
                    "score": float(len(ids) - pos),
                    "rationale": f"Candidate {pos + 1} fits the user's memory.",
                    "evidence": evidence,
                }
                for pos, item_id in enumerate(ids)
            ]
        }
    if task == "synthesize":
        limit = int(m.group(1)) if (m := _MAX_FACETS.search(system)) else 3
        facets = [
            {
                "name": f"taste {n + 1}",
                "description": "A preference shared by close neighbours.",
                "confidence": 0.8,
                "evidence": refs[n : n + 2],
            }
            for n in range(min(limit, max(1, len(refs))))
        ]
        return {"facets": facets}
    if task == "propagate":
        return {
            "user_memory": "Enjoys the item just consumed; keeps earlier tastes.",
            "item_memory": "Liked by users with similar tastes.",
            "neighbour_patches": [{"ref": ref, "note": "Shares a liked item."} for ref in refs],
        }
    if task == "profile":
        return {"memory": "Test profile: enjoys the items in the history."}
    if task == "rules":
        return {
            "name": "test-rules",
            "rationale": "Co-interactions first.",
            "weights": [
                {"neighbour_type": "user", "feature": "co_count", "weight": 1.0},
                {"neighbour_type": "item", "feature": "co_count", "weight": 1.0},
            ],
            "rules": [
                {
                    "name": "recent users",
                    "neighbour_type": "user",
                    "feature": "inactive_days",
                    "comparison": ">",
                    "threshold": 180,
                    "effect": "multiply",
                    "value": 0.5,
                }
            ],
        }
    return {"answer": "ok"}


def _with_fault(fault: Fault, answer: dict[str, Any]) -> str:
    """The assistant text of a faulty reply derived from the valid answer."""
    valid = json.dumps(answer)
    if fault == "invalid_json":
        return "I think the answer is {not: valid, json"
    if fault == "truncated_json":
        return valid[: max(1, len(valid) // 2)]
    if fault == "prose_around":
        return f"Sure! Here is the answer:\n```json\n{valid}\n```\nHope this helps."
    if fault == "wrong_types":
        wrong: dict[str, Any] = {}
        for key, value in answer.items():
            wrong[key] = "not a list" if isinstance(value, list) else 12345
        return json.dumps(wrong)
    items = list(answer.get("items", []))
    if fault == "missing_ids":
        items = items[: max(1, len(items) // 2)]
    elif fault == "duplicate_ids" and len(items) >= 2:
        items[-1] = dict(items[0])
    elif fault == "hallucinated_ids":
        items.insert(1, {"item_id": "ghost-1", "score": 99.0, "rationale": "Invented."})
        items.append({"item_id": "ghost-2", "score": -1.0, "rationale": "Invented."})
    return json.dumps({**answer, "items": items})


def _embedding(text: str, dim: int) -> list[float]:
    """A deterministic unit vector for ``text``."""
    raw = b""
    counter = 0
    while len(raw) < dim:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    vector = [(byte - 127.5) / 127.5 for byte in raw[:dim]]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class OpenAITestServer:
    """A scripted OpenAI-compatible server on 127.0.0.1; a context manager."""

    def __init__(
        self, handler: Handler | None = None, *, latency_s: float = 0.0, model: str = "test-model"
    ) -> None:
        self.handler = handler
        self.latency_s = latency_s  # added to every chat completion (async: others proceed)
        self.model = model
        self.requests: list[RecordedRequest] = []
        self.calls: Counter[str] = Counter()  # chat completions per task
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (append ``/v1`` for an OpenAI client)."""
        if not self._port:
            raise RuntimeError("the test server is not started: use it as a context manager")
        return f"http://127.0.0.1:{self._port}"

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next chat completions (then the handler / default again)."""
        with self._lock:
            self._queue.extend(replies)

    def chat_requests(self, task: str | None = None) -> list[RecordedRequest]:
        """Recorded chat completion requests, optionally of one task."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path.endswith("/chat/completions") and (task is None or r.task == task)
            ]

    def clear(self) -> None:
        """Forget recorded requests, counts and queued replies."""
        with self._lock:
            self.requests.clear()
            self.calls.clear()
            self._queue.clear()

    def start(self) -> OpenAITestServer:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            interface="asgi3",
            lifespan="off",
            timeout_graceful_shutdown=1,
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the OpenAI test server did not start within 10 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the ASGI app -------------------------------------------------------------------

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            await _send_json(send, 400, {"error": {"message": "request body is not JSON"}})
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path.rstrip("/").endswith("/models"):
            self._record(RecordedRequest(method, path, body))
            models = {"object": "list", "data": [{"id": self.model, "object": "model"}]}
            await _send_json(send, 200, models)
        elif method == "POST" and path.endswith("/embeddings"):
            self._record(RecordedRequest(method, path, body))
            await _send_json(send, 200, self._embeddings(body))
        elif method == "POST" and path.endswith("/chat/completions"):
            await self._chat(body, path, send)
        else:
            await _send_json(send, 404, {"error": {"message": f"no route {method} {path}"}})

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
            if request.path.endswith("/chat/completions"):
                self.calls[request.task or "unknown"] += 1

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.handler is not None:
            reply = self.handler(request)
            if reply is not None:
                return reply
        return Reply()

    async def _chat(self, body: dict[str, Any], path: str, send: Any) -> None:
        messages = list(body.get("messages", []))
        system = next((_text(m) for m in messages if m.get("role") == "system"), "")
        last_user = next((_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
        task = m.group(1) if (m := _TASK.search(system)) else None
        request = RecordedRequest("POST", path, body, task, last_user.startswith(REPAIR_MARKER))
        self._record(request)
        reply = self._next_reply(request)
        if self.latency_s or reply.delay_s:
            await asyncio.sleep(self.latency_s + reply.delay_s)
        if reply.fault == "reset":
            await _reset(send)
            return
        if reply.status != 200:
            await _send_json(send, reply.status, reply.body or {}, reply.headers)
            return
        if reply.fault == "empty_choices":
            await _send_json(send, 200, self._completion("", messages, choices=False))
            return
        content = reply.content
        if content is None:
            answer = default_answer(task, messages)
            content = _with_fault(reply.fault, answer) if reply.fault else json.dumps(answer)
        if body.get("stream"):
            await self._stream(send, content, messages, body, reply.chunk_delay_s)
        else:
            await _send_json(send, 200, self._completion(content, messages), reply.headers)

    def _usage(self, content: str, messages: list[dict[str, Any]]) -> dict[str, int]:
        prompt = sum(count_tokens(_text(m)) for m in messages)
        completion = count_tokens(content)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _completion(
        self, content: str, messages: list[dict[str, Any]], *, choices: bool = True
    ) -> dict[str, Any]:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }
        return {
            "id": f"chatcmpl-test-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [choice] if choices else [],
            "usage": self._usage(content, messages),
        }

    async def _stream(
        self,
        send: Any,
        content: str,
        messages: list[dict[str, Any]],
        body: dict[str, Any],
        chunk_delay_s: float,
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        base = {
            "id": "chatcmpl-test-stream",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
        }
        pieces = [content[i : i + 16] for i in range(0, len(content), 16)] or [""]
        for n, piece in enumerate(pieces):
            delta: dict[str, Any] = {"content": piece}
            if n == 0:
                delta["role"] = "assistant"
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await _sse(send, chunk)
            if chunk_delay_s:
                await asyncio.sleep(chunk_delay_s)
        done = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await _sse(send, done)
        if (body.get("stream_options") or {}).get("include_usage"):
            await _sse(send, {**base, "choices": [], "usage": self._usage(content, messages)})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input", [])
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        dim = int(body.get("dimensions") or 64)
        data = [
            {"object": "embedding", "index": i, "embedding": _embedding(str(text), dim)}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(count_tokens(str(text)) for text in inputs)
        return {
            "object": "list",
            "data": data,
            "model": body.get("model", self.model),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


async def _send_json(
    send: Any, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(payload).encode()
    raw_headers = [(b"content-type", b"application/json")]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": data})


async def _sse(send: Any, payload: dict[str, Any]) -> None:
    data = f"data: {json.dumps(payload)}\n\n".encode()
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _reset(send: Any) -> None:
    """Drop the connection without a response (uvicorn's transport, else a short body)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()
        await asyncio.sleep(0.01)  # let uvicorn see the disconnect, so it logs no error
        return
    # Promise a body and close early: the client sees the connection drop mid-response.
    headers = [(b"content-type", b"application/json"), (b"content-length", b"1000")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{"})
