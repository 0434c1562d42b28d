"""The guard around every model call: error classes, retries, one repair, accounting, fallback.

:func:`call_structured` asks a role's :class:`~roles.client.ModelClient` for a schema instance.
Every failed attempt is classified and counted in the call's :class:`CallUsage` (``errors``:
length, content_filter, refusal, connection, status, timeout, malformed):

- a structured-output mode the endpoint refuses moves the endpoint to the next mode (remembered);
- connection errors, 429 / 408 / 409 / 5xx are retried with jittered exponential backoff
  (honouring ``Retry-After``) within the role's ``retries``; a timeout only where the endpoint
  cancels abandoned calls (``RoleSettings.retry_timeouts``: never the identical request against
  a local server, which would queue it behind its own original);
- a malformed reply, or one cut off at ``max_tokens`` (never retried identically), gets at most
  one repair prompt that says what was wrong (and, when cut off, asks for a shorter answer);
- a content filter or a refusal ends the call.

When the model cannot deliver, the call returns None with ``usage.fallback_reason`` set, and the
role answers with its offline fallback (``with_fallback``). Tokens are the server's counts, else
the offline estimate scaled by the endpoint's learned ratio (``usage.estimated``); a timed-out
attempt counts the prompt it sent. The chat reply's own guard is
``roles/chat_reply.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, ValidationError

from prompts import repair as repair_prompt
from prompts.tokens import count_tokens
from roles.client import CallFailure, Completion, FormatRefused, ModelClient, estimate_tokens
from schemas.records import CallUsage, RoleOutput

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Validator = Callable[[Any], None]

BACKOFF_MAX_S = 8.0
RETRY_AFTER_MAX_S = 30.0
RATIO_SAMPLES = 20  # calls per endpoint that calibrate the offline token estimate
REPLY_ECHO_MAX_CHARS = 600  # what an answer may repeat of the previous one in a repair prompt


class MalformedReply(ValueError):
    """The model's reply is not a valid instance of the requested schema."""


_DECODER = json.JSONDecoder()


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
    if start != -1:
        try:  # the usual reply: the object parses from its first brace (C speed, same answer)
            return _DECODER.raw_decode(text, start)[0]
        except json.JSONDecodeError:
            pass
    return scanned_json_object(text)


def scanned_json_object(text: str) -> Any:
    """``_first_json_object`` by scanning for each balanced ``{...}`` in turn (the slow path)."""
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


_BOUNDS = frozenset({"less_than_equal", "greater_than_equal", "less_than", "greater_than"})


def _clamped(data: dict[str, Any], err: ValidationError) -> bool:
    """Put numbers outside their bounds on the bound (a grammar does not enforce ``le``/``ge``).

    True when every error was such a number (then ``data`` is fixed in place), else False.
    """
    errors = err.errors()
    if not errors or any(e["type"] not in _BOUNDS for e in errors):
        return False
    for e in errors:
        node: Any = data
        for key in e["loc"][:-1]:
            node = node[key]
        bound = next(iter((e.get("ctx") or {}).values()), None)
        if not isinstance(bound, int | float):
            return False
        node[e["loc"][-1]] = bound
    return True


def parse_reply(
    text: str, schema: type[M], validate: Validator | None = None, fixes: list[str] | None = None
) -> M:
    """Parse a reply leniently (code fences, prose around the object) and validate it.

    A number beyond its bound is put on the bound (noted in ``fixes``) rather than refused.
    """
    data = _first_json_object(text)
    if not isinstance(data, dict):
        raise MalformedReply("the reply contains no complete, valid JSON object")
    try:
        value = schema.model_validate(data)
    except ValidationError as err:
        if not _clamped(data, err):
            raise MalformedReply(f"the JSON does not match the schema: {err}") from err
        try:
            value = schema.model_validate(data)
        except ValidationError as again:
            raise MalformedReply(f"the JSON does not match the schema: {again}") from again
        if fixes is not None:
            fixes.append("numbers put on their bounds")
    if validate is not None:
        try:
            validate(value)
        except ValueError as err:
            raise MalformedReply(str(err)) from err
    return value


def _count(usage: CallUsage, kind: str) -> None:
    usage.errors[kind] = usage.errors.get(kind, 0) + 1


def _add_tokens(
    usage: CallUsage, client: ModelClient, prompt: Sequence[BaseMessage], done: Completion | None
) -> None:
    """The server's counts when it reported them, else the calibrated estimate.

    The estimate is computed only when needed: without a reported count, or while the endpoint's
    ratio is still being learned (its first calls).
    """
    ep = client.endpoint
    ratio = ep.ratio
    if done is not None and done.prompt_tokens is not None:
        usage.tokens_in += done.prompt_tokens
        if ep.ratio_samples < RATIO_SAMPLES:
            ep.learn_ratio(estimate_tokens(client.messages(prompt)), done.prompt_tokens)
    else:
        usage.tokens_in += round(estimate_tokens(client.messages(prompt)) * ratio)
        usage.estimated = True
    if done is None:
        return
    if done.completion_tokens is not None:
        usage.tokens_out += done.completion_tokens
    else:
        usage.tokens_out += round(count_tokens(done.text) * ratio)
        usage.estimated = True


def _backoff_s(
    failure: CallFailure, attempt: int, client: ModelClient, rng: random.Random
) -> float:
    if failure.retry_after_s is not None:
        return min(failure.retry_after_s, RETRY_AFTER_MAX_S)
    ceiling = min(BACKOFF_MAX_S, client.settings.backoff_base_s * 2**attempt)
    return ceiling * rng.uniform(0.5, 1.0)


async def _one_answer(
    client: ModelClient,
    conversation: Sequence[BaseMessage],
    schema: type[BaseModel],
    max_tokens: int,
    usage: CallUsage,
    rng: random.Random,
) -> Completion:
    """One answer, through mode negotiation and transport retries (else the last failure)."""
    usage.calls += 1
    attempt = 0
    while True:
        mode = client.mode
        try:
            done = await client.complete(conversation, schema, max_tokens)
        except FormatRefused as refused:
            _count(usage, "status")
            if mode is None or client.refuse(mode) is None:
                raise CallFailure(
                    "status", f"no structured-output mode accepted: {refused.detail}"
                ) from refused
            continue  # the same request in the next mode: not a retry of a failed one
        except CallFailure as failure:
            _count(usage, failure.kind)
            if failure.kind == "timeout":
                _add_tokens(usage, client, conversation, None)  # the server read the prompt
                if not client.settings.retry_timeouts:
                    raise
            if not failure.retryable or attempt >= client.settings.retries:
                raise
            delay = _backoff_s(failure, attempt, client, rng)
            logger.info(
                "%s: %s; retry %d in %.2fs", client.name, failure.detail, attempt + 1, delay
            )
            usage.retries += 1
            attempt += 1
            await asyncio.sleep(delay)
            continue
        _add_tokens(usage, client, conversation, done)
        usage.output_mode = done.mode
        return done


def _cut_off(done: Completion, max_tokens: int) -> bool:
    """A reply stopped by the token cap (a truncated forced tool call says 'tool_calls')."""
    if done.finish_reason == "length":
        return True
    return done.completion_tokens is not None and done.completion_tokens >= max_tokens


def _refused(done: Completion) -> str | None:
    if done.refusal:
        return f"the model refused: {done.refusal[:160]}"
    if done.finish_reason == "content_filter":
        return "the content filter stopped the reply"
    return None


async def call_structured(
    client: ModelClient,
    messages: Sequence[BaseMessage],
    schema: type[M],
    *,
    max_tokens: int,
    validate: Validator | None = None,
    rng: random.Random | None = None,
) -> tuple[M | None, CallUsage]:
    """Ask for a ``schema`` instance; None (with the usage and its fallback reason) on failure.

    ``max_tokens`` is the task's budget (capped by the role's settings). ``validate`` adds
    semantic checks: it raises ValueError to have the reply treated as malformed.
    """
    rng = rng or random.Random()
    usage = CallUsage.model_validate({"model": client.name})
    cap = client.settings.cap(max_tokens)
    conversation = list(messages)
    started = time.perf_counter()
    value: M | None = None
    for round_no in range(2):  # the first answer, then at most one repair
        try:
            done = await _one_answer(client, conversation, schema, cap, usage, rng)
        except CallFailure as failure:
            usage.fallback_reason = failure.detail
            logger.warning("%s could not answer %s: %s", client.name, schema.__name__, failure)
            break
        refused = _refused(done)
        if refused is not None:
            _count(usage, "content_filter" if done.finish_reason == "content_filter" else "refusal")
            usage.fallback_reason = refused
            break
        try:
            fixes: list[str] = []
            value = parse_reply(done.text, schema, validate, fixes)
            usage.repairs += 1 if fixes else 0  # fixed up like any post-processing
            break
        except MalformedReply as err:
            cut = _cut_off(done, cap)
            _count(usage, "length" if cut else "malformed")
            error = (
                f"it was cut off at the limit of {cap} tokens; give the same JSON again, shorter "
                "(fewer words per text field), and close every bracket"
                if cut
                else str(err)
            )
            logger.warning("%s: unusable %s reply (round %d): %s", client.name, schema.__name__,
                           round_no, error[:200])  # fmt: skip
            if round_no == 1:
                usage.fallback_reason = (
                    f"the reply was cut off at {cap} tokens twice"
                    if cut
                    else f"malformed reply after one repair: {' '.join(error.split())[:160]}"
                )
                break
            usage.repairs += 1
            head = done.text[:REPLY_ECHO_MAX_CHARS]
            conversation += [AIMessage(content=head), repair_prompt.render(error, schema)]
    usage.latency_ms += (time.perf_counter() - started) * 1000.0
    return value, usage


async def with_fallback(
    usage: CallUsage, fallback_call: Awaitable[RoleOutput[M]], started: float
) -> RoleOutput[M]:
    """Answer with the offline role, counting the fallback in the LLM call's usage."""
    out = await fallback_call
    merged = usage.merged(out.usage)
    merged.fallbacks += 1
    merged.fallback_reason = usage.fallback_reason or "the model gave no usable answer"
    merged.latency_ms = (time.perf_counter() - started) * 1000.0
    return RoleOutput(value=out.value, usage=merged)


def finish(value: M, usage: CallUsage, started: float, fixes: int = 0) -> RoleOutput[M]:
    """Wrap a post-processed value; ``fixes`` post-processing fixes count as one repair."""
    usage.repairs += 1 if fixes else 0
    usage.latency_ms = (time.perf_counter() - started) * 1000.0
    return RoleOutput(value=value, usage=usage)
