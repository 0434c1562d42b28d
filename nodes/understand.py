"""The `understand` node: who is chatting, and what their last message asks, likes and rules out.

The reading comes from the dataset's own catalogue (:mod:`roles.offline_understand`) offline, or,
with LLM roles, from ONE structured LMMem call grounded in the catalogue afterwards
(:mod:`roles.ground_reading`); when that call fails the offline reading answers and the reply says
so. Mentions are then resolved against the catalogue and the picks shown last
(:mod:`nodes.chat_turn`).

The user comes from the input's ``user_id``, else the signed-in identity (``langgraph_auth_user``
in the run config, when the server runs with auth), else the assistant's ``user_id`` (a demo
user), else a guest scoped to the thread: a client that sends only ``messages`` (Agent Chat UI,
Studio's chat view) just works.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from memory_store.workspace import Workspace, aworkspace_for
from nodes.chat_turn import (
    Resolution,
    accept,
    answer_clarification,
    merged_constraints,
    resolve_feedback,
    resolve_steering,
)
from roles.catalogue_index import CatalogueIndex, catalogue_index, normalise
from roles.ground_reading import ground_reading
from roles.notices import fallback_notice
from roles.offline_understand import MAX_MESSAGE_CHARS, read_offline
from schemas.chat_state import (
    DEFAULT_COUNT,
    MAX_COUNT,
    ChatState,
    Clarification,
    Constraints,
    Mention,
    Understanding,
)
from schemas.coerce import coerce
from schemas.context import MemRecContext
from schemas.records import CallUsage
from schemas.tenancy import run_user

logger = logging.getLogger(__name__)

UNDERSTAND_TOKENS = 400  # completion budget of the reading (a JSON of a few fields)
OFFLINE_NOTE = "it knows titles and the catalogue's own words but no synonyms"
GUEST = "guest"


# ------------------------------------------------------------------------------ the user


def chat_user(state: ChatState, ctx: MemRecContext, config: RunnableConfig | None) -> str:
    """Who is chatting: the signed-in user, else the input's, the assistant's, or a guest."""
    conf = (config or {}).get("configurable") or {}
    signed_in = run_user()  # a user token's run (admins and Studio pick the user)
    if signed_in:
        return signed_in
    given = str(state.get("user_id") or "").strip() or (ctx.user_id or "").strip()
    if given:
        return given
    thread = str(conf.get("thread_id") or "").strip()
    return f"{GUEST}-{thread}"[:128] if thread else GUEST


# ------------------------------------------------------------------------------ reading


def last_user_text(messages: Sequence[AnyMessage]) -> str:
    """The text of the last human message ('' when there is none); content blocks joined."""
    for message in reversed(messages or []):
        if isinstance(message, HumanMessage) or getattr(message, "type", "") == "human":
            content = message.content
            if isinstance(content, list):
                return " ".join(
                    str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content
                ).strip()
            return str(content)
    return ""


async def read_message(
    text: str, ctx: MemRecContext, index: CatalogueIndex
) -> tuple[Understanding, CallUsage | None]:
    """LMMem's grounded reading with LLM roles, else (or on failure) the offline reading.

    The usage is the guarded call's (retries, repairs, a fallback when the offline reader
    answered instead); None when no model was asked.
    """
    from roles.factory import role_specs

    mem_spec, _ = role_specs(ctx)
    offline = await asyncio.to_thread(read_offline, text, index)
    if mem_spec == "offline" or offline.intent == "empty":
        return offline, None
    from prompts.chat import understand_messages
    from roles.factory import model_client
    from roles.guard import call_structured
    from roles.models import ModelConfigError

    started = time.perf_counter()
    try:
        client = model_client(ctx, "lmmem")
    except ModelConfigError as err:
        logger.warning("LMMem cannot be built (%s); the offline reader answers", err)
        return offline, CallUsage(fallbacks=1, model=mem_spec, fallback_reason=str(err))
    assert client is not None  # mem_spec is not offline
    terms = sorted(index.terms)[:400]
    messages = understand_messages(text[:MAX_MESSAGE_CHARS], terms, Understanding)
    value, usage = await call_structured(
        client, messages, Understanding, max_tokens=UNDERSTAND_TOKENS
    )
    usage.latency_ms = (time.perf_counter() - started) * 1000.0
    if value is None:
        logger.warning("LMMem could not read the chat message; the offline reader answers")
        usage.fallbacks += 1
        return offline, usage
    return _not_the_whole_message(ground_reading(value, index), offline, text, index), usage


def _not_the_whole_message(
    reading: Understanding, offline: Understanding, text: str, index: CatalogueIndex
) -> Understanding:
    """The model's reading without "titles" that are the whole message and name nothing.

    A small model reads a request ("something light and funny for tonight") as a title to rate
    or to match; kept only if the offline reader saw the same mention or the catalogue has it.
    """
    whole = normalise(text)
    seen = {normalise(t) for t in [*offline.skip, *offline.similar_to]}
    seen |= {normalise(m.text) for m in offline.feedback}

    def misread(title: str) -> bool:
        key = normalise(title)
        if key != whole or key in seen:
            return False
        return not index.resolve_titles([title])[0].matches

    return reading.model_copy(
        update={
            "feedback": [m for m in reading.feedback if not misread(m.text)],
            "skip": [t for t in reading.skip if not misread(t)],
            "similar_to": [t for t in reading.similar_to if not misread(t)],
        }
    )


# ------------------------------------------------------------------------------ the node


def turn_start(user_id: str, usage: CallUsage | None) -> dict[str, Any]:
    """What every turn resets: this turn's outcome fields (the thread keeps the rest)."""
    return {
        "user_id": user_id,
        "recorded": [],
        "notes": Overwrite([]),
        "candidates": [],
        "similar": [],
        "skipped": [],
        "matched_feedback": [],
        "unmatched": [],
        "already_rated": [],
        "exclude_shown": False,
        "usage": Overwrite({"understand": usage} if usage is not None else {}),
    }


async def understand(state: ChatState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: this turn's reading, matched feedback and constraints in force."""
    config = get_config()  # the run's config: the signed-in user, the thread
    ctx = runtime.context or MemRecContext()
    ws = await aworkspace_for(ctx)
    index = await asyncio.to_thread(catalogue_index, ws.dataset)
    user_id = chat_user(state, ctx, config)
    text = last_user_text(state.get("messages") or [])
    picks = list(state.get("picks") or [])
    pending = coerce(Clarification | None, state.get("pending"))
    if pending is not None:
        choice = answer_clarification(index, pending, text)
        if choice is not None:
            return _clarified(ws, state, user_id, pending, choice)
    reading, usage = await read_message(text, ctx, index)
    out = Resolution()
    if usage is not None and usage.fallbacks:
        out.notes.append(f"{fallback_notice('understand', usage)}; {OFFLINE_NOTE}")
    await asyncio.to_thread(resolve_feedback, ws, index, user_id, reading.feedback, picks, out)
    skipped, missed = resolve_steering(index, reading.skip, picks)
    similar, unknown = resolve_steering(index, reading.similar_to, picks)
    old = coerce(Constraints | None, state.get("constraints"))
    return {
        **turn_start(user_id, usage),
        "understanding": reading,
        "constraints": merged_constraints(
            index, old, reading.constraints, picks, new_topic=bool(similar)
        ),
        "matched_feedback": out.feedback,
        "unmatched": list(dict.fromkeys(out.unmatched + missed + unknown)),  # one line each
        "already_rated": out.already_rated,
        "pending": out.pending,
        "rejected": list(dict.fromkeys([*(state.get("rejected") or []), *skipped])),
        "similar": similar,
        "skipped": skipped,
        "exclude_shown": reading.exclude_shown,
        "count": min(reading.count or state.get("count") or DEFAULT_COUNT, MAX_COUNT),
        "request": reading.request,
        "notes": Overwrite(out.notes),
    }


def _clarified(
    ws: Workspace, state: ChatState, user_id: str, pending: Clarification, choice: str
) -> dict[str, Any]:
    """The answer to "did you mean ...?": the chosen item's feedback, or nothing on a no."""
    out = Resolution()
    mention = Mention(text=pending.mention, sentiment=pending.sentiment)
    if choice:
        accept(ws, user_id, choice, pending.sentiment, out)
    else:
        out.notes.append(f"all right, I left '{pending.mention}' out")
    return {
        **turn_start(user_id, None),
        "understanding": Understanding(intent="feedback", feedback=[mention]),
        "constraints": state.get("constraints") or Constraints(),
        "matched_feedback": out.feedback,
        "already_rated": out.already_rated,
        "pending": None,
        "count": state.get("count") or DEFAULT_COUNT,
        "request": state.get("request"),
        "notes": Overwrite(out.notes),
    }
