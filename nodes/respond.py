"""The `respond` node: the chat reply listing the picks with their rationales.

Offline, a template writes it. With LLM roles, the LLMRec chat model rewrites the template's draft
and its tokens stream (``stream_mode="messages"``); any model failure (transport, timeout, a
completion without choices, an empty reply) falls back to the draft and counts as a fallback in
the node's usage, so a chat turn never fails on the reply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import httpx
import openai
from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, BaseMessage
from langgraph.runtime import Runtime

from memory_store.workspace import Workspace, aworkspace_for
from prompts.tokens import count_tokens
from roles.models import ModelConfigError
from schemas.chat_state import (
    DEFAULT_COUNT,
    ChatState,
    Clarification,
    Constraints,
    Understanding,
)
from schemas.coerce import coerce
from schemas.context import MemRecContext
from schemas.records import CallUsage, RankedItem

logger = logging.getLogger(__name__)

FALLBACK_NOTE = "the language model could not write this reply, so it is the template's"

CONVERSATION_TURNS = 6
HELP = (
    "Tell me what you are in the mood for: what you want or want to avoid, an era ('from the "
    "90s', 'something older'), how many picks, or a title you loved or did not like ('I loved "
    "<title>'), and I will suggest something you have not seen."
)
REFERENCES = ("that", "these") + tuple(f"#{n}" for n in range(1, 51))


def shown_count(state: ChatState) -> int:
    """How many picks this turn shows (the user's count, else the default)."""
    return int(state.get("count") or DEFAULT_COUNT)


def pick_lines(ws: Workspace, ranking: Sequence[RankedItem], k: int = DEFAULT_COUNT) -> list[str]:
    """Numbered 'Title - rationale' lines of the top ``k`` picks."""
    return [
        f"{n}. {ws.title(ws.item_code(item.item_id))} - {item.rationale}"
        for n, item in enumerate(ranking[:k], 1)
    ]


def clarification_text(ws: Workspace, pending: Clarification) -> str:
    """'Did you mean <title>?' for a likely title, else 'which one?' listing the matches."""
    titles = [ws.title(ws.item_code(item_id)) for item_id in pending.options]
    if len(titles) == 1:
        return f"Did you mean {titles[0]}? Reply yes or no."
    options = [f"{n}. {title}" for n, title in enumerate(titles, 1)]
    return "\n".join(
        [
            f"Several titles match '{pending.mention}'. Which one did you mean?",
            *options,
            "Reply with the number or the full title.",
        ]
    )


def _constraint_text(constraints: Constraints | None) -> str:
    if constraints is None or constraints.is_empty():
        return ""
    c = constraints
    parts = [*c.include, *c.decades]
    if c.year_min is not None and c.year_max is not None:
        parts.append(f"{c.year_min}-{c.year_max}")
    elif c.year_min is not None:
        parts.append(f"from {c.year_min}")
    elif c.year_max is not None:
        parts.append(f"up to {c.year_max}")
    parts += [f"no {a}" for a in c.exclude]
    return f" ({', '.join(parts)})" if parts else ""


def _feedback_lines(ws: Workspace, state: ChatState) -> list[str]:
    lines = [
        f"Noted: you loved {fb.title}." if fb.sentiment == "positive" else f"Noted: you did not "
        f"like {fb.title}; I will not suggest it again."
        for fb in state.get("matched_feedback") or []
    ]
    if state.get("recorded"):
        lines.append("I will update your taste profile in the background.")
    skipped = [ws.title(ws.item_code(i)) for i in state.get("skipped") or []]
    if skipped:
        lines.append(f"OK, I left out {', '.join(skipped)} for this conversation.")
    for title in state.get("already_rated") or []:
        lines.append(f"You have already rated {title}; I left your history as it is.")
    for text in state.get("unmatched") or []:
        if text.lower() in REFERENCES:
            lines.append(f"I have not shown a pick '{text}' refers to, so I left it.")
        else:
            lines.append(
                f"I could not find a title matching '{text}' in the catalog. Check the spelling "
                "or give the full title."
            )
    return lines


ROLE_STEPS = {"synthesize": "summarise your neighbours' tastes", "rank": "rank the picks"}


def _fallbacks(state: ChatState) -> list[str]:
    """A note for each recommend step where the language model failed and the offline role did."""
    usage = coerce(dict[str, CallUsage], state.get("usage") or {})
    return [
        f"the language model could not {what}, so the offline role did"
        for step, what in ROLE_STEPS.items()
        if step in usage and usage[step].fallbacks
    ]


def draft_reply(ws: Workspace, state: ChatState) -> str:
    """The templated reply for this turn (the offline reply, and the LLM's draft)."""
    reading = coerce(Understanding | None, state.get("understanding"))
    if reading is not None and reading.intent == "empty":
        return HELP
    lines: list[str] = []
    if reading is not None and reading.intent == "other_language":
        lines.append(
            "Sorry, I can only read English for now, so these picks come from your history"
            + (" and the words I recognised." if state.get("candidates") else ".")
        )
    lines += _feedback_lines(ws, state)
    pending = coerce(Clarification | None, state.get("pending"))
    if pending is not None:
        lines.append(clarification_text(ws, pending))
        return "\n".join(lines)
    lines += [f"Note: {note}." for note in [*(state.get("notes") or []), *_fallbacks(state)]]
    ranking = coerce(list[RankedItem], state.get("ranking") or [])
    picks = pick_lines(ws, ranking, shown_count(state)) if state.get("candidates") else []
    if picks:
        constraints = coerce(Constraints | None, state.get("constraints"))
        lines.append(f"Here are my picks{_constraint_text(constraints)}:")
        lines += picks
    elif not lines:
        lines.append(HELP)
    return "\n".join(lines)


def _conversation(messages: Sequence[AnyMessage]) -> list[tuple[str, str]]:
    turns = [m for m in messages if getattr(m, "type", "") in ("human", "ai")]
    return [(m.type, str(m.content)) for m in turns[-CONVERSATION_TURNS:]]


async def write_with_model(
    spec: str, ctx: MemRecContext, ws: Workspace, state: ChatState, draft: str
) -> tuple[AIMessage | None, CallUsage]:
    """Stream the LLMRec reply (tokens reach ``stream_mode="messages"``); None on failure.

    The usage counts the call and, when the template has to answer instead, one fallback. A
    failed stream is not retried: its first tokens may already have reached the client.
    """
    from prompts.chat import respond_messages

    started = time.perf_counter()
    ranking = coerce(list[RankedItem], state.get("ranking") or [])
    shown = ranking[: shown_count(state)] if state.get("candidates") else []
    picks: list[dict[str, object]] = [
        {"title": ws.title(ws.item_code(r.item_id)), "rationale": r.rationale} for r in shown
    ]
    prompt = respond_messages(_conversation(state.get("messages") or []), picks, draft)
    usage = CallUsage(calls=1, model=spec)
    reply = await _stream_reply(spec, ctx, prompt)
    text = str(reply.content).strip() if reply is not None else ""
    usage.latency_ms = (time.perf_counter() - started) * 1000.0
    if reply is None or not text:
        usage.fallbacks = 1
        return None, usage
    meta = reply.usage_metadata
    if meta:
        usage.tokens_in, usage.tokens_out = meta["input_tokens"], meta["output_tokens"]
    else:  # the server did not report usage: estimate it like the guard does
        usage.tokens_in = sum(count_tokens(m.text) for m in prompt)
        usage.tokens_out = count_tokens(text)
    return AIMessage(content=text, id=reply.id), usage


async def _stream_reply(
    spec: str, ctx: MemRecContext, prompt: list[BaseMessage]
) -> AIMessageChunk | None:
    """The streamed reply, or None when the model failed (logged; the template answers)."""
    from roles.models import make_chat_model

    reply: AIMessageChunk | None = None
    try:
        model = make_chat_model(spec, base_url=ctx.base_url, timeout=ctx.timeout_s)
        async for chunk in model.astream(prompt):
            reply = chunk if reply is None else reply + chunk
    except (openai.APIError, httpx.TransportError, ModelConfigError, TimeoutError) as err:
        logger.warning("LLMRec could not write the chat reply (%s); the template answers", err)
        return None
    except ValueError as err:  # a completion without choices: "No generation chunks were returned"
        logger.warning("LLMRec returned no reply (%s); the template answers", err)
        return None
    return reply


def shown_now(state: ChatState) -> dict[str, Any]:
    """The picks this reply shows, and every item shown in the conversation so far."""
    if not state.get("candidates") or state.get("pending") is not None:
        return {}
    ranking = coerce(list[RankedItem], state.get("ranking") or [])
    picks = [r.item_id for r in ranking[: shown_count(state)]]
    return {"picks": picks, "shown": list(dict.fromkeys([*(state.get("shown") or []), *picks]))}


async def respond(state: ChatState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: append the reply to the conversation, with the call's usage."""
    from roles.factory import role_specs

    ctx = runtime.context or MemRecContext()
    ws = await aworkspace_for(ctx)
    draft = draft_reply(ws, state)
    _, rec_spec = role_specs(ctx)
    reading = coerce(Understanding | None, state.get("understanding"))
    shown = shown_now(state)
    if rec_spec == "offline" or (reading is not None and reading.intent == "empty"):
        return {"messages": [AIMessage(content=draft)], **shown}
    written, usage = await write_with_model(rec_spec, ctx, ws, state, draft)
    if written is None:
        draft = f"{draft}\n({FALLBACK_NOTE})"
    return {
        "messages": [written or AIMessage(content=draft)],
        "usage": {"respond": usage},
        **shown,
    }
