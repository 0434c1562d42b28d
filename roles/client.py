"""One role's model client: a lean chat-completions call on the real ``openai`` client.

Built once per role (``roles/models.make_model_client``): the static request fields, the
structured-output parts per schema (``roles/structured.py``) and the HTTP client are prepared
once, and each call adds only its messages and token cap. The request goes through
``AsyncOpenAI.post`` (auth, headers, errors, SSE decoding of the real client) with the body as
built, skipping the SDK's per-call body rewrite, and the reply is read as plain JSON; no LangChain
model and no thread pool is on this path.

What an endpoint supports is learned once per process and kept in its :class:`Endpoint`: the
structured-output mode it accepts, the model a ``local`` server serves, whether it drops system
messages (then the instructions are moved into the first user message), and the ratio of its
prompt-token counts to the offline estimate (for calls whose usage it does not report).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from prompts.tokens import count_tokens
from roles.replies import (
    CallFailure,
    Completion,
    FailureKind,
    FormatRefused,
    completion_of,
    retry_after_s,
    status_failure,
)
from roles.settings import RoleSettings
from roles.structured import MODES, Mode, is_format_refusal, modes_for, request_parts
from roles.transport import PerLoopTransport, http_module
from schemas.model_spec import AUTO_MODEL, ModelSpec

logger = logging.getLogger(__name__)

_ROLE = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}
_SECURITY = {"bearer_auth": True}
_PROBE = "Hi."


@dataclass
class Endpoint:
    """What one endpoint (base URL + model) was found to support, shared by every role on it."""

    modes: tuple[Mode, ...]
    mode_index: int = 0
    model_id: str | None = None
    merge_system: bool | None = None  # None: not probed
    ratio: float = 1.0  # server prompt tokens / offline estimate
    ratio_samples: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    probe_locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    gates: weakref.WeakKeyDictionary[Any, asyncio.Semaphore] = field(
        default_factory=weakref.WeakKeyDictionary
    )

    def gate(self, limit: int) -> asyncio.Semaphore:
        """The running loop's bound on calls in flight to this endpoint (first limit wins)."""
        loop = asyncio.get_running_loop()
        found = self.gates.get(loop)
        if found is None:
            found = self.gates[loop] = asyncio.Semaphore(limit)
        return found

    @property
    def mode(self) -> Mode | None:
        """The structured-output mode in use (None: every mode was refused)."""
        return self.modes[self.mode_index] if self.mode_index < len(self.modes) else None

    def refuse(self, mode: Mode) -> Mode | None:
        """Mark ``mode`` refused; the next mode to use (None when none is left)."""
        with self.lock:
            if self.mode == mode:
                self.mode_index += 1
                logger.warning("endpoint refused %s output; next: %s", mode, self.mode)
            return self.mode

    def learn_ratio(self, estimate: int, reported: int) -> None:
        """Move the token ratio towards one reported count (ignored for tiny prompts)."""
        if estimate >= 50 and reported > 0:
            with self.lock:
                seen = reported / estimate
                self.ratio = seen if not self.ratio_samples else 0.8 * self.ratio + 0.2 * seen
                self.ratio_samples += 1


_ENDPOINTS: dict[tuple[str, str, str], Endpoint] = {}
_ENDPOINTS_LOCK = threading.Lock()
_CLIENTS: dict[tuple[str, str], openai.AsyncOpenAI] = {}


def endpoint_for(spec: ModelSpec) -> Endpoint:
    """The process-wide record of ``spec``'s endpoint."""
    key = (spec.provider, spec.base_url or "", spec.model)
    with _ENDPOINTS_LOCK:
        if key not in _ENDPOINTS:
            _ENDPOINTS[key] = Endpoint(modes=modes_for(spec.provider))
        return _ENDPOINTS[key]


def forget_endpoints() -> None:
    """Drop what was learned about every endpoint (tests; a server that was reconfigured)."""
    with _ENDPOINTS_LOCK:
        _ENDPOINTS.clear()


def _openai_client(base_url: str | None, api_key: str) -> openai.AsyncOpenAI:
    """One client per (endpoint, key), shared by the roles on it; one HTTP pool per loop."""
    # no URL in the spec: the openai client's OPENAI_BASE_URL, or LangChain's OPENAI_API_BASE
    base_url = base_url or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE")
    key = (base_url or "", api_key)
    with _ENDPOINTS_LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = openai.AsyncOpenAI(
                api_key=api_key,
                base_url=base_url,
                max_retries=0,  # the guard retries, per its policy
                http_client=openai.DefaultAsyncHttpxClient(transport=PerLoopTransport()),
            )
        return _CLIENTS[key]


def as_dicts(messages: Sequence[BaseMessage], merge_system: bool = False) -> list[dict[str, Any]]:
    """OpenAI chat messages; ``merge_system`` moves system text into the first user message."""
    out = [{"role": _ROLE.get(m.type, "user"), "content": m.text} for m in messages]
    if not merge_system:
        return out
    system = "\n\n".join(m["content"] for m in out if m["role"] == "system")
    rest = [m for m in out if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0] = {"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}
    elif system:
        rest.insert(0, {"role": "user", "content": system})
    return rest


def estimate_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Offline estimate of a request's prompt tokens (the content of every message)."""
    return sum(count_tokens(str(m.get("content") or "")) for m in messages)


class ModelClient:
    """A role's chat model: spec, settings, the shared HTTP client and the endpoint's record."""

    def __init__(self, spec: ModelSpec, settings: RoleSettings, api_key: str, name: str) -> None:
        self.spec = spec
        self.settings = settings
        self.name = name
        self.endpoint = endpoint_for(spec)
        self._client = _openai_client(spec.base_url, api_key)
        # OpenAI's own API wants max_completion_tokens (o-series models refuse max_tokens); every
        # other server (llama.cpp ignores max_completion_tokens) gets max_tokens, also an
        # ``openai:`` spec sent elsewhere through OPENAI_BASE_URL
        host = self._client.base_url.host or ""
        self._max_key = "max_completion_tokens" if host == "api.openai.com" else "max_tokens"
        self._strict = spec.provider == "openai"
        # openai's RequestOptions: the attempt's own deadline and the bearer key
        self._options: Any = {"timeout": settings.timeout_s, "security": _SECURITY}

    # ------------------------------------------------------------------ per endpoint, once

    async def _ready(self) -> None:
        """Resolve an ``auto`` model and probe for dropped system messages, once per endpoint."""
        ep = self.endpoint
        if ep.model_id is not None and (ep.merge_system is not None or not self._probes()):
            return
        loop = asyncio.get_running_loop()
        lock = ep.probe_locks.setdefault(loop, asyncio.Lock())
        async with lock:
            if ep.model_id is None:
                ep.model_id = await self._model_id()
            if ep.merge_system is None and self._probes():
                ep.merge_system = await self._drops_system()

    def _probes(self) -> bool:
        return self.settings.probe_system

    async def _model_id(self) -> str:
        if self.spec.model != AUTO_MODEL:
            return self.spec.model
        try:
            async with asyncio.timeout(min(30.0, self.settings.timeout_s)):
                listed = await self._client.models.list()
            first = next(iter(listed.data), None)
        except (openai.OpenAIError, TimeoutError) as err:
            logger.warning("could not list the models of %s (%s)", self.spec.base_url, err)
            return AUTO_MODEL
        return first.id if first is not None else AUTO_MODEL

    async def _drops_system(self) -> bool:
        """Same prompt tokens with and without a system message: the server drops it."""
        user = [{"role": "user", "content": _PROBE}]
        system = [{"role": "system", "content": "Answer in one word. " * 4}, *user]
        try:
            async with asyncio.timeout(min(60.0, self.settings.timeout_s)):
                bare = await self._post({"messages": user, self._max_key: 1})
                full = await self._post({"messages": system, self._max_key: 1})
        except (openai.OpenAIError, TimeoutError, KeyError, ValueError) as err:
            logger.info("system-message probe failed (%s): instructions stay in system", err)
            return False
        tokens = [(r.get("usage") or {}).get("prompt_tokens") for r in (bare, full)]
        dropped = None not in tokens and tokens[0] == tokens[1]
        if dropped:
            logger.warning(
                "%s drops system messages (same prompt tokens with and without one): "
                "instructions go into the user message",
                self.name,
            )
        return dropped

    # ------------------------------------------------------------------ calls

    @property
    def mode(self) -> Mode | None:
        """The structured-output mode this endpoint uses now."""
        return self.endpoint.mode

    def messages(self, messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
        """The request messages as this endpoint needs them."""
        return as_dicts(messages, bool(self.endpoint.merge_system))

    async def complete(
        self, messages: Sequence[BaseMessage], schema: type[BaseModel], max_tokens: int
    ) -> Completion:
        """One structured attempt in the endpoint's current mode; raises :class:`CallFailure`."""
        await self._ready()
        mode = self.endpoint.mode
        if mode is None:
            raise CallFailure("status", "the endpoint refused every structured-output mode")
        body = {
            "messages": self.messages(messages),
            self._max_key: max_tokens,
            **request_parts(schema, mode, self._strict),
        }
        try:
            done = await self._attempt(body, self.settings.stream)
        except FormatRefused:
            raise
        except CallFailure as failure:
            if failure.status is not None and is_format_refusal(failure.status, failure.message):
                raise FormatRefused("status", failure.detail, status=failure.status) from failure
            raise
        done.mode = mode
        return done

    async def text(self, messages: Sequence[BaseMessage], max_tokens: int) -> Completion:
        """A free-text reply, always streamed (a deadline then cancels the generation)."""
        await self._ready()
        body = {"messages": self.messages(messages), self._max_key: max_tokens}
        return await self._attempt(body, stream=True)

    def refuse(self, mode: Mode) -> Mode | None:
        """Remember that this endpoint refused ``mode``; the next one to try."""
        return self.endpoint.refuse(mode)

    async def _attempt(self, body: dict[str, Any], stream: bool) -> Completion:
        async with self.endpoint.gate(self.settings.concurrency):
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    if stream:
                        return await self._stream(body)
                    return completion_of(await self._post(body))
            except TimeoutError:
                raise CallFailure(
                    "timeout", f"timeout after {self.settings.timeout_s:g} s", retryable=True
                ) from None
            except openai.APITimeoutError:
                raise CallFailure(
                    "timeout", f"timeout after {self.settings.timeout_s:g} s", retryable=True
                ) from None
            except openai.APIConnectionError as err:
                raise CallFailure(
                    "connection", f"connection failed: {err}", retryable=True
                ) from err
            except openai.APIStatusError as err:
                raise status_failure(err) from err
            except openai.OpenAIError as err:  # an error event inside a stream, a bad body
                raise CallFailure("status", f"{type(err).__name__}: {err}") from err

    async def _post(self, extra: dict[str, Any]) -> dict[str, Any]:
        body = {"model": self.endpoint.model_id or self.spec.model, "temperature": 0.0, **extra}
        response = await self._client.post(
            "/chat/completions", body=body, cast_to=http_module.Response, options=self._options
        )
        data: dict[str, Any] = response.json()
        return data

    async def _stream(self, extra: dict[str, Any]) -> Completion:
        body = {
            "model": self.endpoint.model_id or self.spec.model,
            "temperature": 0.0,
            **extra,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        stream = await self._client.post(
            "/chat/completions",
            body=body,
            cast_to=dict,
            options=self._options,
            stream=True,
            stream_cls=openai.AsyncStream[dict],
        )
        parts: list[str] = []
        finish: str | None = None
        usage: dict[str, Any] | None = None
        tool = False
        try:
            async for chunk in stream:
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        parts.append(delta["content"])
                    for call in delta.get("tool_calls") or ():
                        tool = True
                        parts.append((call.get("function") or {}).get("arguments") or "")
                    finish = choice.get("finish_reason") or finish
        finally:
            await stream.close()  # also when the deadline cancels us: the server stops
        return Completion(
            text="".join(parts),
            finish_reason=finish,
            prompt_tokens=(usage or {}).get("prompt_tokens"),
            completion_tokens=(usage or {}).get("completion_tokens"),
            tool_called=tool,
        )


__all__ = [
    "MODES",
    "FailureKind",
    "CallFailure",
    "Completion",
    "Endpoint",
    "FormatRefused",
    "ModelClient",
    "as_dicts",
    "endpoint_for",
    "estimate_tokens",
    "forget_endpoints",
    "retry_after_s",
]
