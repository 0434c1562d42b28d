"""LLM-backed LMMem and LLMRec over any LangChain chat model, with a guard around every call.

The guard (:func:`call_structured`) retries transport failures with bounded exponential backoff,
parses JSON leniently, validates it with the result's pydantic model, sends at most one repair
prompt, and otherwise gives up so the role answers with its offline fallback for that step.
Post-processing then enforces the budgets the design promises whatever the model said: a ranking
is a permutation of the candidates, facets are at most ``max_facets`` with evidence drawn from
the given neighbours, and propagation patches only the given neighbours, within length caps.
Every such fix counts as one repair in the call's usage.
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
from typing import Any, Generic, TypeVar

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, ValidationError

from memory_store.rules import DomainStats, RuleSet
from nodes.roles import (
    CallUsage,
    Facet,
    FacetSet,
    LLMRec,
    LMMem,
    NeighbourPatch,
    ProfileInput,
    PropagationInput,
    PropagationResult,
    RankedItem,
    Ranking,
    RankingInput,
    RoleOutput,
    SynthesisInput,
    UserProfile,
)
from prompts import profile as profile_prompt
from prompts import propagation as propagation_prompt
from prompts import ranking as ranking_prompt
from prompts import repair as repair_prompt
from prompts import rules as rules_prompt
from prompts import synthesis as synthesis_prompt
from prompts.tokens import count_tokens

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", LMMem, LLMRec)
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
    usage = CallUsage.model_validate({"model": model_name or _model_name(model)})
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


def _model_name(model: BaseChatModel) -> str:
    """A readable name of a chat model for usage reports."""
    for attr in ("model_name", "model"):
        name = getattr(model, attr, None)
        if isinstance(name, str) and name:
            return name
    return type(model).__name__


async def _with_fallback(
    usage: CallUsage, fallback_call: Awaitable[RoleOutput[M]], started: float
) -> RoleOutput[M]:
    """Answer with the offline role, counting the fallback in the LLM call's usage."""
    out = await fallback_call
    merged = usage.merged(out.usage)
    merged.fallbacks += 1
    merged.latency_ms = (time.perf_counter() - started) * 1000.0
    return RoleOutput(value=out.value, usage=merged)


def _finish(value: M, usage: CallUsage, started: float, fixes: int = 0) -> RoleOutput[M]:
    """Wrap a post-processed value; ``fixes`` post-processing fixes count as one repair."""
    usage.repairs += 1 if fixes else 0
    usage.latency_ms = (time.perf_counter() - started) * 1000.0
    return RoleOutput(value=value, usage=usage)


class _GuardedRole(Generic[F]):
    """Shared construction of the LLM-backed roles: the model, its guard and the fallback role."""

    def __init__(
        self,
        model: BaseChatModel,
        fallback: F,
        *,
        timeout_s: float = 30.0,
        max_attempts: int = 3,
        name: str | None = None,
        backoff_base_s: float = 0.5,
        json_mode: bool = True,
        seed: int | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.model = model
        self.fallback: F = fallback
        self.name = name or _model_name(model)
        self.policy = GuardPolicy(
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
            json_mode=json_mode,
            rng=random.Random(seed),
        )

    async def _call(
        self, messages: Sequence[BaseMessage], schema: type[M], validate: Validator | None = None
    ) -> tuple[M | None, CallUsage]:
        return await call_structured(
            self.model,
            messages,
            schema,
            validate=validate,
            policy=self.policy,
            model_name=self.name,
        )


class LLMLMMem(_GuardedRole[LMMem]):
    """The memory manager backed by a chat model, falling back to ``fallback`` per step."""

    async def generate_rules(self, stats: DomainStats) -> RoleOutput[RuleSet]:
        """Write a curation rule set from domain statistics."""
        started = time.perf_counter()
        value, usage = await self._call(rules_prompt.render(stats), RuleSet)
        if value is None:
            return await _with_fallback(usage, self.fallback.generate_rules(stats), started)
        return _finish(value.model_copy(update={"source": "generated"}), usage, started)

    async def synthesize(self, inp: SynthesisInput) -> RoleOutput[FacetSet]:
        """Turn curated neighbour memories into at most ``max_facets`` facets."""
        started = time.perf_counter()

        def has_facets(facets: FacetSet) -> None:
            if inp.neighbours and not facets.facets:
                raise ValueError(f"no facets, although {len(inp.neighbours)} neighbours were given")

        value, usage = await self._call(synthesis_prompt.render(inp), FacetSet, has_facets)
        if value is None:
            return await _with_fallback(usage, self.fallback.synthesize(inp), started)
        facets, fixes = clean_facets(value.facets, inp)
        return _finish(FacetSet(facets=facets), usage, started, fixes)

    async def profile(self, inp: ProfileInput) -> RoleOutput[UserProfile]:
        """A user's initial memory, capped like a propagation rewrite."""
        started = time.perf_counter()

        def not_empty(value: UserProfile) -> None:
            if not value.memory.strip():
                raise ValueError("the memory is empty")

        value, usage = await self._call(profile_prompt.render(inp), UserProfile, not_empty)
        if value is None:
            return await _with_fallback(usage, self.fallback.profile(inp), started)
        memory = value.memory.strip()[: propagation_prompt.USER_MEMORY_MAX_CHARS]
        return _finish(UserProfile(memory=memory), usage, started)

    async def propagate(self, inp: PropagationInput) -> RoleOutput[PropagationResult]:
        """One call: user reflection, item update and neighbour patches."""
        started = time.perf_counter()
        value, usage = await self._call(
            propagation_prompt.render(inp), PropagationResult, _check_propagation
        )
        if value is None:
            return await _with_fallback(usage, self.fallback.propagate(inp), started)
        result, fixes = clean_propagation(value, inp)
        return _finish(result, usage, started, fixes)


class LLMLLMRec(_GuardedRole[LLMRec]):
    """The ranker backed by a chat model; the result is always a permutation of the candidates."""

    async def rank(self, inp: RankingInput) -> RoleOutput[Ranking]:
        """Rank every candidate, each with a rationale."""
        started = time.perf_counter()
        known = {c.item_id for c in inp.candidates}

        def has_known_ids(ranking: Ranking) -> None:
            if known and not any(item.item_id in known for item in ranking.items):
                raise ValueError("the ranking contains none of the candidate item_ids")

        value, usage = await self._call(ranking_prompt.render(inp), Ranking, has_known_ids)
        if value is None:
            return await _with_fallback(usage, self.fallback.rank(inp), started)
        items, fixes = await self._complete_permutation(value.items, inp)
        items, filled = fill_rationales(items)
        return _finish(Ranking(items=items), usage, started, fixes + filled)

    async def _complete_permutation(
        self, items: list[RankedItem], inp: RankingInput
    ) -> tuple[list[RankedItem], int]:
        """Drop unknown / duplicate ids; append missing candidates in the fallback's order."""
        kept, dropped = dedupe_ranking(items, [c.item_id for c in inp.candidates])
        seen = {item.item_id for item in kept}
        missing = [c.item_id for c in inp.candidates if c.item_id not in seen]
        if not missing:
            return kept, dropped
        out = await self.fallback.rank(inp)  # only now: the offline ranking is not free
        by_id = {item.item_id: item for item in out.value.items}
        order = [i.item_id for i in out.value.items if i.item_id in missing]
        order += [m for m in missing if m not in by_id]  # a fallback that skipped some
        floor = min((item.score for item in kept), default=0.0)
        for pos, item_id in enumerate(order, start=1):
            base = by_id.get(item_id)
            kept.append(
                RankedItem(
                    item_id=item_id,
                    score=floor - pos,
                    rationale=base.rationale if base else "",
                    evidence=list(base.evidence) if base else [],
                )
            )
        return kept, dropped + len(missing)


def dedupe_ranking(
    items: Sequence[RankedItem], candidate_ids: Sequence[str]
) -> tuple[list[RankedItem], int]:
    """Keep the first occurrence of each candidate id; returns the items and how many dropped."""
    allowed = set(candidate_ids)
    seen: set[str] = set()
    kept: list[RankedItem] = []
    for item in items:
        if item.item_id in allowed and item.item_id not in seen:
            seen.add(item.item_id)
            kept.append(item)
    return kept, len(items) - len(kept)


def fill_rationales(items: Sequence[RankedItem]) -> tuple[list[RankedItem], int]:
    """Give every item a non-empty rationale (built from its evidence); count the fills."""
    out: list[RankedItem] = []
    filled = 0
    for item in items:
        if item.rationale.strip():
            out.append(item)
            continue
        filled += 1
        reason = (
            "Supported by " + ", ".join(item.evidence) + "."
            if item.evidence
            else "Ranked by the model without a stated reason."
        )
        out.append(item.model_copy(update={"rationale": reason}))
    return out, filled


def clean_facets(facets: Sequence[Facet], inp: SynthesisInput) -> tuple[list[Facet], int]:
    """At most ``max_facets`` distinct facets with evidence from the given neighbours only."""
    refs = {n.ref for n in inp.neighbours}
    out: list[Facet] = []
    names: set[str] = set()
    fixes = 0
    for facet in facets:
        key = facet.name.strip().lower()
        if not key or key in names or len(out) >= inp.max_facets:
            fixes += 1
            continue
        names.add(key)
        evidence = list(dict.fromkeys(ref for ref in facet.evidence if ref in refs))
        fixes += len(evidence) != len(facet.evidence)
        out.append(facet.model_copy(update={"evidence": evidence}))
    return out, fixes


def _check_propagation(result: PropagationResult) -> None:
    """An empty rewrite would erase the user's memory: treat it as malformed."""
    if not result.user_memory.strip():
        raise ValueError("user_memory is empty; it must be the rewritten memory of the user")


def _cap(text: str, limit: int) -> tuple[str, int]:
    """``text`` stripped and cut to ``limit`` characters; 1 when it had to be cut."""
    text = text.strip()
    return (text, 0) if len(text) <= limit else (text[: limit - 1].rstrip() + "\u2026", 1)


def clean_propagation(
    result: PropagationResult, inp: PropagationInput
) -> tuple[PropagationResult, int]:
    """Patches only for the given neighbours (one each, non-empty), texts within their caps."""
    refs = {n.ref for n in inp.neighbours}
    patches: list[NeighbourPatch] = []
    seen: set[str] = set()
    fixes = 0
    for patch in result.neighbour_patches:
        if patch.ref not in refs or patch.ref in seen or not patch.note.strip():
            fixes += 1
            continue
        seen.add(patch.ref)
        note, cut = _cap(patch.note, propagation_prompt.PATCH_NOTE_MAX_CHARS)
        fixes += cut
        patches.append(NeighbourPatch(ref=patch.ref, note=note))
    user_memory, cut_user = _cap(result.user_memory, propagation_prompt.USER_MEMORY_MAX_CHARS)
    item_memory, cut_item = _cap(result.item_memory, propagation_prompt.ITEM_MEMORY_MAX_CHARS)
    if not item_memory:
        item_memory = inp.item_memory  # an empty update keeps the old memory
    cleaned = PropagationResult(
        user_memory=user_memory, item_memory=item_memory, neighbour_patches=patches
    )
    return cleaned, fixes + cut_user + cut_item
