"""The guard around every model call: timeouts, retries, lenient parsing, one repair, accounting.

:func:`call_structured` retries transport failures with bounded exponential backoff (honouring
``Retry-After``), parses JSON leniently, validates it with the result's pydantic model, sends at
most one repair prompt, and otherwise gives up (``None``) so the role answers with its offline
fallback for that step. Every call, retry, repair and fallback is counted in the call's
:class:`CallUsage` (``with_fallback`` and ``finish`` close a role call's accounting).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, ValidationError

from prompts import repair as repair_prompt
from prompts.tokens import count_tokens
from schemas.records import CallUsage, RoleOutput

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Validator = Callable[[Any], None]

_RETRYABLE_STATUS = frozenset({408, 409, 429})
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    openai.APIConnectionError,  # includes APITimeoutError
    TimeoutError,  # asyncio.wait_for's timeout
)


@dataclass(frozen=True)
class GuardPolicy:
    """How hard the guard tries before giving up on a model call."""

    timeout_s: float = 30.0  # per chat completion attempt
    max_attempts: int = 3  # transport attempts per chat completion (first try included)
    backoff_base_s: float = 0.5  # first backoff; doubles per attempt, with jitter
    backoff_max_s: float = 8.0
    retry_after_max_s: float = 30.0  # longest Retry-After honoured
    json_mode: bool = True  # response_format={"type": "json_object"}
    rng: random.Random = field(default_factory=random.Random, compare=False)


class MalformedReply(ValueError):
    """The model's reply is not a valid instance of the requested schema."""


def _is_retryable(err: BaseException) -> bool:
    """Whether a failed call is worth retrying (rate limits, 5xx, timeouts, dropped sockets)."""
    if isinstance(err, _TRANSPORT_ERRORS):
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code >= 500 or err.status_code in _RETRYABLE_STATUS
    return False


def _retry_after_s(err: BaseException) -> float | None:
    """Seconds asked for by a ``Retry-After`` / ``retry-after-ms`` header, when present."""
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return float(millis) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _backoff_s(err: BaseException, attempt: int, policy: GuardPolicy) -> float:
    """Delay before retry ``attempt`` (0-based): Retry-After if given, else jittered backoff."""
    asked = _retry_after_s(err)
    if asked is not None:
        return min(asked, policy.retry_after_max_s)
    ceiling = min(policy.backoff_max_s, policy.backoff_base_s * 2**attempt)
    return ceiling * policy.rng.uniform(0.5, 1.0)


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the ``}`` closing the ``{`` at ``start`` (string-aware); None if open."""
    depth, in_string, escaped = 0, False, False
    for pos in range(start, len(text)):
        ch = text[pos]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return pos + 1
    return None


def _first_json_object(text: str) -> Any:
    """The first top-level ``{...}`` in ``text`` that parses as JSON, or None.

    Prose braces before the object are skipped; an object left open (a truncated reply) ends
    the search, so a complete inner object is never mistaken for the answer.
    """
    start = text.find("{")
    while start != -1:
        end = _balanced_end(text, start)
        if end is None:
            return None
        try:
            return json.loads(text[start:end])
        except json.JSONDecodeError:
            start = text.find("{", end)
    return None


def parse_reply(text: str, schema: type[M], validate: Validator | None = None) -> M:
    """Parse a reply leniently (code fences, prose around the object) and validate it."""
    data = _first_json_object(text)
    if not isinstance(data, dict):
        raise MalformedReply("the reply contains no complete, valid JSON object")
    try:
        value = schema.model_validate(data)
    except ValidationError as err:
        raise MalformedReply(f"the JSON does not match the schema: {err}") from err
    if validate is not None:
        try:
            validate(value)
        except ValueError as err:
            raise MalformedReply(str(err)) from err
    return value


def _record_tokens(usage: CallUsage, messages: Sequence[BaseMessage], reply: AIMessage) -> None:
    """Add a completion's tokens: as reported by the server, else estimated."""
    meta = reply.usage_metadata
    if meta:
        usage.tokens_in += int(meta.get("input_tokens", 0))
        usage.tokens_out += int(meta.get("output_tokens", 0))
        return
    usage.tokens_in += sum(count_tokens(m.text) for m in messages)
    usage.tokens_out += count_tokens(reply.text)


async def _complete(
    model: Any, messages: list[BaseMessage], usage: CallUsage, policy: GuardPolicy
) -> AIMessage | None:
    """One chat completion with transport retries; None when every attempt failed."""
    usage.calls += 1
    for attempt in range(policy.max_attempts):
        try:
            reply = await asyncio.wait_for(model.ainvoke(messages), policy.timeout_s)
        except IndexError:
            # langchain-openai reads choices[0]: a completion without choices is an empty answer.
            logger.warning("the model returned a completion without choices")
            return AIMessage(content="")
        except (TimeoutError, openai.APIError) as err:
            if not _is_retryable(err):
                logger.error("model call failed and is not retryable: %s", err)
                return None
            if attempt + 1 >= policy.max_attempts:
                logger.warning("model call failed %d times, giving up: %r", attempt + 1, err)
                return None
            delay = _backoff_s(err, attempt, policy)
            logger.info("model call failed (%r); retry %d in %.2fs", err, attempt + 1, delay)
            usage.retries += 1
            await asyncio.sleep(delay)
            continue
        if not isinstance(reply, AIMessage):
            raise TypeError(f"chat model returned {type(reply).__name__}, expected AIMessage")
        _record_tokens(usage, messages, reply)
        return reply
    return None


async def call_structured(
    model: BaseChatModel,
    messages: Sequence[BaseMessage],
    schema: type[M],
    *,
    validate: Validator | None = None,
    policy: GuardPolicy | None = None,
    model_name: str | None = None,
) -> tuple[M | None, CallUsage]:
    """Ask ``model`` for a ``schema`` instance; None (and the usage) when it cannot deliver.

    Transport failures are retried within ``policy.max_attempts``; a malformed reply gets at most
    one repair prompt (the error and the schema). ``validate`` adds semantic checks: it raises
    ValueError to have the reply treated as malformed.
    """
    policy = policy or GuardPolicy()
    usage = CallUsage.model_validate({"model": model_name or chat_model_name(model)})
    runnable: Any = model
    if policy.json_mode:
        runnable = model.bind(response_format={"type": "json_object"})
    conversation = list(messages)
    started = time.perf_counter()
    value: M | None = None
    for round_no in range(2):  # the first answer, then at most one repair
        reply = await _complete(runnable, conversation, usage, policy)
        if reply is None:
            break
        try:
            value = parse_reply(reply.text, schema, validate)
            break
        except MalformedReply as err:
            logger.warning("malformed %s reply (round %d): %s", schema.__name__, round_no, err)
            if round_no == 1:
                break
            usage.repairs += 1
            conversation += [AIMessage(content=reply.text), repair_prompt.render(str(err), schema)]
    usage.latency_ms += (time.perf_counter() - started) * 1000.0
    return value, usage


def chat_model_name(model: BaseChatModel) -> str:
    """A readable name of a chat model for usage reports."""
    for attr in ("model_name", "model"):
        name = getattr(model, attr, None)
        if isinstance(name, str) and name:
            return name
    return type(model).__name__


async def with_fallback(
    usage: CallUsage, fallback_call: Awaitable[RoleOutput[M]], started: float
) -> RoleOutput[M]:
    """Answer with the offline role, counting the fallback in the LLM call's usage."""
    out = await fallback_call
    merged = usage.merged(out.usage)
    merged.fallbacks += 1
    merged.latency_ms = (time.perf_counter() - started) * 1000.0
    return RoleOutput(value=out.value, usage=merged)


def finish(value: M, usage: CallUsage, started: float, fixes: int = 0) -> RoleOutput[M]:
    """Wrap a post-processed value; ``fixes`` post-processing fixes count as one repair."""
    usage.repairs += 1 if fixes else 0
    usage.latency_ms = (time.perf_counter() - started) * 1000.0
    return RoleOutput(value=value, usage=usage)
