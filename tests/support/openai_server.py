"""An OpenAI-compatible HTTP test server with scripted replies, faults and real-server modes.

A raw ASGI app served by uvicorn in a background thread on 127.0.0.1 (a free port). It implements
``POST /v1/chat/completions`` (JSON and SSE streaming with usage, forced tool calls),
``GET /v1/models`` and ``POST /v1/embeddings`` (deterministic vectors).

By default it answers every MemRec task validly: the task comes from the ``TASK: <name>`` marker of
the system prompt, and the answer is built from the candidate ids / neighbour refs in the prompt's
data blocks. Tests script behaviour with :meth:`OpenAITestServer.script` (a queue of
:class:`Reply`) or a ``handler(request) -> Reply | None``; a Reply may carry a fault (malformed
content, HTTP errors, a dropped connection, delays).

A :class:`ServerMode` makes the whole server behave like a real model server instead of OpenAI:
``ServerMode.llama_cpp()`` is llama-cpp-python 0.3.36's server as measured with SmolLM2-135M and
Gemma 3 270M (``json_schema`` refused with HTTP 500, no usage in streams, ``max_completion_tokens``
ignored, one generation at a time, ``tool_choice`` honoured only when it names a function), and
single fields emulate one behaviour each (a model that never stops, dropped system messages, a
reply that echoes the prompt or has the wrong JSON shape).
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
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import uvicorn

from prompts.blocks import extract_block
from prompts.repair import REPAIR_MARKER
from prompts.tokens import count_tokens, truncate_to_tokens

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
    "wrong_shape",
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

# llama-cpp-python 0.3.36 validates response_format.type against "text" | "json_object" and
# reports the pydantic error as a 500 (measured: /work/briefs/realmodel-findings.md).
LLAMA_CPP_JSON_SCHEMA_ERROR = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
    "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
    "'ctx': {'expected': \"'text' or 'json_object'\"}}\n\n  File \"llama_cpp/server/app.py\", "
    "line 376, in create_chat_completion\n    POST /v1/chat/completions"
)
# What a model that never stops keeps adding: list entries, fields, words.
RUNAWAY_ENTRY = ', {"item_id": "0", "note": "and more"}'
RUNAWAY_FIELD = ', "note": "and more"'
RUNAWAY_TEXT = " and so on"


@dataclass(frozen=True)
class ServerMode:
    """How the server departs from OpenAI's API to emulate a real model server (default: not).

    Every field is one behaviour measured on llama-cpp-python's server; :meth:`llama_cpp` sets
    the ones that server shows with any model.
    """

    json_schema: Literal["accept", "refuse"] = "accept"  # refuse: HTTP 500 for json_schema
    stream_usage: bool = True  # False: no usage chunk, even with stream_options.include_usage
    # the request fields that cap a reply (llama-cpp-python ignores max_completion_tokens)
    caps: frozenset[str] = frozenset({"max_tokens", "max_completion_tokens"})
    runaway_after: int | None = None  # the model never stops: it writes until a cap or N tokens
    single_slot: bool = False  # one generation at a time; abandoned non-streamed ones still run
    token_latency_s: float = 0.0  # per generated token (the slot is held meanwhile)
    drop_system: bool = False  # system messages never reach the model (a template without them)
    reply: Literal["answer", "echo", "wrong_shape"] = "answer"  # what the model writes
    tool_choice: Literal["any", "named"] = "any"  # named: only a named function forces a call
    truncated_tool_finish: Literal["length", "tool_calls"] = "length"  # a tool call cut by a cap

    @classmethod
    def llama_cpp(cls, **changes: Any) -> ServerMode:
        """llama-cpp-python 0.3.36's server, as measured; ``changes`` override single fields."""
        measured = cls(
            json_schema="refuse",
            stream_usage=False,
            caps=frozenset({"max_tokens"}),
            single_slot=True,
            tool_choice="named",
            truncated_tool_finish="tool_calls",
        )
        return replace(measured, **changes)


@dataclass
class Generation:
    """What the emulated model did for one chat completion (``ServerMode`` servers only)."""

    request: int  # index into OpenAITestServer.requests
    stream: bool
    tokens: int = 0  # completion tokens written (a cancelled stream: the ones sent)
    outcome: Literal["finished", "cancelled", "skipped"] = "finished"
    started: float = 0.0  # time.monotonic() when it got the slot
    ended: float = 0.0


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
    if fault == "wrong_shape":
        return json.dumps(wrong_shape(answer))
    items = list(answer.get("items", []))
    if fault == "missing_ids":
        items = items[: max(1, len(items) // 2)]
    elif fault == "duplicate_ids" and len(items) >= 2:
        items[-1] = dict(items[0])
    elif fault == "hallucinated_ids":
        items.insert(1, {"item_id": "ghost-1", "score": 99.0, "rationale": "Invented."})
        items.append({"item_id": "ghost-2", "score": -1.0, "rationale": "Invented."})
    return json.dumps({**answer, "items": items})


def wrong_shape(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer in the wrong JSON shape: its first list element instead of the whole object.

    A small model under JSON mode answers ``{"item_id": ..., "score": ...}`` where
    ``{"items": [...]}`` was asked for; an answer without a list comes back nested one level deep.
    """
    for value in answer.values():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return dict(value[0])
    return {"result": answer}


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
        self,
        handler: Handler | None = None,
        *,
        latency_s: float = 0.0,
        model: str = "test-model",
        mode: ServerMode | None = None,
    ) -> None:
        self.handler = handler
        self.latency_s = latency_s  # added to every chat completion (async: others proceed)
        self.model = model
        self.mode = mode or ServerMode()
        self.requests: list[RecordedRequest] = []
        self.calls: Counter[str] = Counter()  # chat completions per task
        self.generations: list[Generation] = []  # what the model did, per chat completion served
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._slot: asyncio.Lock | None = None  # the single slot (created on the server's loop)
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
        """Forget recorded requests, counts, generations and queued replies."""
        with self._lock:
            self.requests.clear()
            self.calls.clear()
            self.generations.clear()
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
            disconnected = asyncio.Event()
            watcher = asyncio.create_task(_watch_disconnect(receive, disconnected))
            try:
                await self._chat(body, path, send, disconnected)
            finally:
                watcher.cancel()
        else:
            await _send_json(send, 404, {"error": {"message": f"no route {method} {path}"}})

    def _record(self, request: RecordedRequest) -> int:
        with self._lock:
            self.requests.append(request)
            if request.path.endswith("/chat/completions"):
                self.calls[request.task or "unknown"] += 1
            return len(self.requests) - 1

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.handler is not None:
            reply = self.handler(request)
            if reply is not None:
                return reply
        return Reply()

    async def _chat(
        self, body: dict[str, Any], path: str, send: Any, disconnected: asyncio.Event
    ) -> None:
        messages = list(body.get("messages", []))
        system = next((_text(m) for m in messages if m.get("role") == "system"), "")
        last_user = next((_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
        task = m.group(1) if (m := _TASK.search(system)) else None
        request = RecordedRequest("POST", path, body, task, last_user.startswith(REPAIR_MARKER))
        index = self._record(request)
        if self.mode.json_schema == "refuse" and _format_type(body) == "json_schema":
            error = {"message": LLAMA_CPP_JSON_SCHEMA_ERROR, "type": "internal_server_error"}
            await _send_json(send, 500, {"error": {**error, "param": None, "code": None}})
            return
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
        seen = (
            [m for m in messages if m.get("role") != "system"]
            if self.mode.drop_system
            else messages
        )
        content = reply.content if reply.content is not None else self._written(seen, reply)
        out = _Output(*self._capped(content, body), tool=self._forced_tool(body))
        generation = Generation(index, stream=bool(body.get("stream")))
        if not self.mode.single_slot:
            await self._generate(send, out, seen, body, reply, generation, disconnected)
            return
        if self._slot is None:
            self._slot = asyncio.Lock()
        async with self._slot:
            if disconnected.is_set() and not generation.stream:
                # llama-cpp-python checks the client once it holds the model, before generating.
                generation.outcome = "skipped"
                self._finish(generation)
                await _send_json(send, 400, {"detail": "Client closed request"})
                return
            await self._generate(send, out, seen, body, reply, generation, disconnected)

    def _written(self, seen: list[dict[str, Any]], reply: Reply) -> str:
        """What the model writes for the messages it saw (its task marker may have been dropped)."""
        if self.mode.reply == "echo":
            return next((_text(m) for m in reversed(seen) if m.get("role") == "user"), "")
        system = next((_text(m) for m in seen if m.get("role") == "system"), "")
        task = m.group(1) if (m := _TASK.search(system)) else None
        answer = default_answer(task, seen)
        fault = reply.fault or ("wrong_shape" if self.mode.reply == "wrong_shape" else None)
        return _with_fault(fault, answer) if fault else json.dumps(answer)

    def _capped(self, content: str, body: dict[str, Any]) -> tuple[str, str, bool]:
        """The text actually written, its finish_reason and whether a cap cut it."""
        caps = [int(body[k]) for k in sorted(self.mode.caps) if body.get(k) is not None]
        if self.mode.runaway_after is not None:
            caps.append(self.mode.runaway_after)
            content = _runaway(content, min(caps))
        if caps and count_tokens(content) > min(caps):
            return truncate_to_tokens(content, min(caps)), "length", True
        return content, "stop", False

    def _forced_tool(self, body: dict[str, Any]) -> str | None:
        """The function a request forces the model to call, as this server reads tool_choice."""
        names = [t.get("function", {}).get("name") for t in body.get("tools") or []]
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            return name if name in names else None
        if choice == "required" and names and self.mode.tool_choice == "any":
            return str(names[0])
        return None

    def _finish(self, generation: Generation) -> None:
        generation.ended = time.monotonic()
        with self._lock:
            self.generations.append(generation)

    async def _generate(
        self,
        send: Any,
        out: _Output,
        seen: list[dict[str, Any]],
        body: dict[str, Any],
        reply: Reply,
        generation: Generation,
        disconnected: asyncio.Event,
    ) -> None:
        """Write the reply (taking ``token_latency_s`` per token) and send it."""
        generation.started = time.monotonic()
        if body.get("stream"):
            await self._stream(send, out, seen, body, reply.chunk_delay_s, generation, disconnected)
            self._finish(generation)
            return
        generation.tokens = count_tokens(out.text)
        if self.mode.token_latency_s:
            # Not cancellable: a non-streamed generation runs to its end, client or no client.
            await asyncio.sleep(self.mode.token_latency_s * generation.tokens)
        self._finish(generation)
        body = self._shaped(self._completion(out.text, seen), out)
        await _send_json(send, 200, body, reply.headers)

    def _usage(self, content: str, messages: list[dict[str, Any]]) -> dict[str, int]:
        prompt = sum(count_tokens(_text(m)) for m in messages)
        completion = count_tokens(content)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _finish_reason(self, out: _Output) -> str:
        if out.tool is None:
            return out.finish
        return self.mode.truncated_tool_finish if out.cut else "tool_calls"

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

    def _shaped(self, body: dict[str, Any], out: _Output) -> dict[str, Any]:
        """A completion body as the mode shapes it: cut by a cap, or a forced tool call."""
        if not body["choices"] or (out.tool is None and not out.cut):
            return body
        choice = body["choices"][0]
        choice["finish_reason"] = self._finish_reason(out)
        if out.tool is not None:
            call = {"name": out.tool, "arguments": out.text}
            call_id = f"call_{len(self.requests)}"
            choice["message"] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": call_id, "type": "function", "function": call}],
            }
        return body

    async def _stream(
        self,
        send: Any,
        out: _Output,
        messages: list[dict[str, Any]],
        body: dict[str, Any],
        chunk_delay_s: float,
        generation: Generation,
        disconnected: asyncio.Event,
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
        content = out.text
        pieces = [content[i : i + 16] for i in range(0, len(content), 16)] or [""]
        for n, piece in enumerate(pieces):
            delta: dict[str, Any] = {"content": piece}
            if out.tool is not None:
                call = {"name": out.tool, "arguments": piece} if n == 0 else {"arguments": piece}
                head = {"id": f"call_{generation.request}", "type": "function"} if n == 0 else {}
                delta = {"content": None, "tool_calls": [{"index": 0, **head, "function": call}]}
            if n == 0:
                delta["role"] = "assistant"
            if self.mode.token_latency_s:
                await asyncio.sleep(self.mode.token_latency_s * count_tokens(piece))
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await _sse(send, chunk)
            generation.tokens += count_tokens(piece)
            if chunk_delay_s:
                await asyncio.sleep(chunk_delay_s)
            if self.mode.single_slot and disconnected.is_set():
                # llama-cpp-python checks the client after every streamed chunk and stops.
                generation.outcome = "cancelled"
                return
        finish = self._finish_reason(out)
        done = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        await _sse(send, done)
        include = (body.get("stream_options") or {}).get("include_usage")
        if include and self.mode.stream_usage:
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


@dataclass(frozen=True)
class _Output:
    """A reply as sent: its text, why it ended, whether a cap cut it, the tool it calls."""

    text: str
    finish: str
    cut: bool
    tool: str | None = None


def _format_type(body: dict[str, Any]) -> str | None:
    response_format = body.get("response_format")
    return response_format.get("type") if isinstance(response_format, dict) else None


def _runaway(content: str, tokens: int) -> str:
    """``content`` continued by a model that never stops, to at least ``tokens`` tokens.

    A JSON answer never closes (measured: SmolLM2 under JSON mode kept adding array entries until
    the context was full), so no complete object can be parsed out of it.
    """
    if content.endswith("]}"):  # an open list: the model keeps adding entries
        text, filler = content[:-2], RUNAWAY_ENTRY
    elif content.endswith("}"):
        text, filler = content[:-1], RUNAWAY_FIELD
    else:
        text, filler = content, RUNAWAY_TEXT
    while count_tokens(text) <= tokens:
        text += filler * max(1, tokens // 8)
    return text


async def _watch_disconnect(receive: Any, disconnected: asyncio.Event) -> None:
    """Set ``disconnected`` when the client goes away (the request body is already read)."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            disconnected.set()
            return
