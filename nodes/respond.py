"""The `respond` node: the chat reply listing the picks with their rationales.

Offline, a template writes it. With LLM roles, the LLMRec chat model rewrites the template's draft
and its tokens stream (``stream_mode="messages"``); any model failure (transport, timeout, a
completion without choices, an empty reply) falls back to the draft and counts as a fallback in
the node's usage, so a chat turn never fails on the reply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import httpx
import openai
from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, BaseMessage
from langgraph.runtime import Runtime

from memory_store.workspace import Workspace, workspace_for
from prompts.tokens import count_tokens
from roles.models import ModelConfigError
from schemas.chat_state import ChatState, Clarification, Constraints
from schemas.context import MemRecContext
from schemas.records import CallUsage, RankedItem

logger = logging.getLogger(__name__)

SHOWN_PICKS = 5
CONVERSATION_TURNS = 6
HELP = (
    "Tell me what you are in the mood for: a genre or an era ('a 90s comedy, no horror'), or a "
    "title you loved ('I loved Heat') and I will suggest something you have not seen."
)


def pick_lines(ws: Workspace, ranking: Sequence[RankedItem], k: int = SHOWN_PICKS) -> list[str]:
    """Numbered 'Title - rationale' lines of the top ``k`` picks."""
    return [
        f"{n}. {ws.title(ws.item_code(item.item_id))} - {item.rationale}"
        for n, item in enumerate(ranking[:k], 1)
    ]


def clarification_text(ws: Workspace, pending: Clarification) -> str:
    """The 'which one did you mean?' question listing the matches."""
    options = [
        f"{n}. {ws.title(ws.item_code(item_id))} (item {item_id})"
        for n, item_id in enumerate(pending.options, 1)
    ]
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
    parts = [*constraints.include, *constraints.decades, *(f"no {a}" for a in constraints.exclude)]
    return f" ({', '.join(parts)})"


def draft_reply(ws: Workspace, state: ChatState) -> str:
    """The templated reply for this turn (the offline reply, and the LLM's draft)."""
    reading = state.get("understanding")
    if reading is not None and reading.intent == "empty":
        return HELP
    lines: list[str] = []
    if reading is not None and reading.intent == "other_language":
        lines.append(
            "Sorry, I can only read English for now, so these picks come from your history"
            + (" and the genres I recognised." if state.get("candidates") else ".")
        )
    recorded = bool(state.get("recorded"))
    for fb in state.get("matched_feedback") or []:
        lines.append(
            f"Noted: you loved {fb.title}."
            if fb.sentiment == "positive"
            else f"Got it, not {fb.title}."
        )
    if recorded:
        lines.append("I will update your taste profile in the background.")
    for title in state.get("already_rated") or []:
        lines.append(f"You have already rated {title}; I left your history as it is.")
    for text in state.get("unmatched") or []:
        if text.lower() in ("that", "that one", "this", "this one", "it"):
            lines.append("I have not suggested anything yet, so there is nothing to rule out.")
        else:
            lines.append(
                f"I could not find a title matching '{text}' in the catalog. Check the spelling "
                "or give the full title with its year, e.g. 'Heat (1995)'."
            )
    pending = state.get("pending")
    if pending is not None:
        lines.append(clarification_text(ws, pending))
        return "\n".join(lines)
    lines += [f"Note: {note}." for note in state.get("notes") or []]
    picks = pick_lines(ws, state.get("ranking") or []) if state.get("candidates") else []
    if picks:
        lines.append(f"Here are my picks{_constraint_text(state.get('constraints'))}:")
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
    shown = (state.get("ranking") or [])[:SHOWN_PICKS] if state.get("candidates") else []
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


async def respond(state: ChatState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: append the reply to the conversation, with the call's usage."""
    from roles.factory import role_specs

    ctx = runtime.context or MemRecContext()
    ws = await asyncio.to_thread(workspace_for, ctx)
    draft = draft_reply(ws, state)
    _, rec_spec = role_specs(ctx)
    reading = state.get("understanding")
    if rec_spec == "offline" or (reading is not None and reading.intent == "empty"):
        return {"messages": [AIMessage(content=draft)]}
    written, usage = await write_with_model(rec_spec, ctx, ws, state, draft)
    return {"messages": [written or AIMessage(content=draft)], "usage": {"respond": usage}}
