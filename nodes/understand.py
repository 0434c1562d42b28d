"""The `understand` node: read the last user message into a request, constraints and feedback.

Offline, a deterministic parser (``roles/message_parser.py``) reads the message; with LLM roles,
the LMMem chat model extracts the same :class:`Understanding` and the parser answers whenever the
model cannot. Feedback titles are then matched to catalog items by normalised title; several
matches open a clarification.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from memory_store.workspace import Workspace, workspace_for
from roles.message_parser import (
    MAX_MESSAGE_CHARS,
    MAX_PREFIX_MATCHES,
    CatalogVocabulary,
    clean_understanding,
    normalise,
    parse_message,
    vocabulary,
)
from schemas.chat_state import (
    ChatState,
    Clarification,
    Constraints,
    Mention,
    ResolvedFeedback,
    Understanding,
)
from schemas.context import MemRecContext
from schemas.records import CallUsage

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------- resolution


@dataclass
class Resolution:
    """Mentions matched against the catalog and the user's history."""

    feedback: list[ResolvedFeedback] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    already_rated: list[str] = field(default_factory=list)
    pending: Clarification | None = None
    include: list[str] = field(default_factory=list)  # mentions that were genres after all
    exclude: list[str] = field(default_factory=list)


def resolve_mentions(
    ws: Workspace, user_id: str, mentions: Sequence[Mention], last_pick: str | None
) -> Resolution:
    """Match each mention to one item, a clarification, a genre or nothing."""
    vocab = vocabulary(ws)
    out = Resolution()
    for mention in mentions:
        codes = _codes_for(mention.text, vocab, ws, last_pick)
        if len(codes) == 1:
            _accept(ws, user_id, codes[0], mention, out)
        elif len(codes) > 1 and out.pending is None:
            ids = [ws.dataset.item_ids[c] for c in codes[:MAX_PREFIX_MATCHES]]
            out.pending = Clarification(
                mention=mention.text, sentiment=mention.sentiment, options=ids
            )
        elif not codes:
            genres = vocab.attributes_in(mention.text)
            if genres:
                (out.include if mention.sentiment == "positive" else out.exclude).extend(genres)
            else:
                out.unmatched.append(mention.text)
    return out


def _codes_for(
    text: str, vocab: CatalogVocabulary, ws: Workspace, last_pick: str | None
) -> list[int]:
    if normalise(text) in ("that", "that one", "this", "this one", "it"):
        return [ws.item_code(last_pick)] if last_pick else []
    codes = vocab.match_title(text)
    if codes:
        return codes
    for piece in re.split(r"\s+and\s+|\s*&\s*", text):  # "Heat and something like it"
        codes = vocab.match_title(piece)
        if codes:
            return codes
    return []


def _accept(ws: Workspace, user_id: str, code: int, mention: Mention, out: Resolution) -> None:
    title = ws.title(code)
    if ws.has_user(user_id) and ws.graph.has(ws.user_code(user_id), code):
        out.already_rated.append(title)
        return
    item_id = ws.dataset.item_ids[code]
    if all(f.item_id != item_id for f in out.feedback):
        out.feedback.append(
            ResolvedFeedback(item_id=item_id, title=title, sentiment=mention.sentiment)
        )


def answer_clarification(ws: Workspace, pending: Clarification, text: str) -> str | None:
    """The option a reply to "which one did you mean?" picks (a number, a year or a title)."""
    text = text.strip()
    number = re.fullmatch(r"#?\s*(\d{1,2})\.?", text)
    if number and 1 <= int(number.group(1)) <= len(pending.options):
        return pending.options[int(number.group(1)) - 1]
    if text in pending.options:
        return text
    vocab = vocabulary(ws)
    year = re.search(r"\b(1[89]\d{2}|20\d{2})\b", text)
    hits = [
        option
        for option in pending.options
        if (year and vocab.years[ws.item_code(option)] == int(year.group(1)))
        or ws.item_code(option) in vocab.match_title(text)
    ]
    return hits[0] if len(hits) == 1 else None


# --------------------------------------------------------------------------------- the node


def last_user_text(messages: Sequence[AnyMessage]) -> str:
    """The text of the last human message ('' when there is none)."""
    for message in reversed(messages or []):
        if isinstance(message, HumanMessage) or getattr(message, "type", "") == "human":
            content = message.content
            if isinstance(content, list):
                return " ".join(
                    p.get("text", "") if isinstance(p, dict) else str(p) for p in content
                )
            return str(content)
    return ""


async def read_message(
    text: str, ctx: MemRecContext, ws: Workspace
) -> tuple[Understanding, CallUsage | None]:
    """LMMem's reading when LLM roles are configured, else (or on failure) the parser's.

    The usage is the guarded call's (retries, repairs, a fallback when the parser answered
    instead); None when no model was asked.
    """
    from roles.factory import role_specs

    vocab = vocabulary(ws)
    parsed = parse_message(text, vocab)
    mem_spec, _ = role_specs(ctx)
    if mem_spec == "offline" or parsed.intent == "empty":
        return parsed, None
    from prompts.chat import understand_messages
    from roles.guard import call_structured
    from roles.models import ModelConfigError, make_chat_model

    started = time.perf_counter()
    try:
        model = make_chat_model(mem_spec, base_url=ctx.base_url, timeout=ctx.timeout_s)
    except ModelConfigError as err:
        logger.warning("LMMem cannot be built (%s); the offline parser answers", err)
        return parsed, CallUsage(fallbacks=1, model=mem_spec)
    messages = understand_messages(
        text[:MAX_MESSAGE_CHARS], ws.graph.attribute_names, Understanding
    )
    value, usage = await call_structured(model, messages, Understanding, model_name=mem_spec)
    usage.latency_ms = (time.perf_counter() - started) * 1000.0
    if value is None:
        logger.warning("LMMem could not read the chat message; the offline parser answers")
        usage.fallbacks += 1
        return parsed, usage
    return clean_understanding(value, vocab), usage


def turn_usage(usage: CallUsage | None) -> Overwrite:
    """Start a turn's usage with understand's: it replaces the last turn's (the field merges)."""
    return Overwrite({"understand": usage} if usage is not None else {})


async def understand(state: ChatState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: this turn's understanding, matched feedback and constraints in force."""
    ctx = runtime.context or MemRecContext()
    ws = await asyncio.to_thread(workspace_for, ctx)
    user_id = str(state.get("user_id") or "").strip()
    text = last_user_text(state.get("messages") or [])
    pending = state.get("pending")
    if pending is not None:
        choice = answer_clarification(ws, pending, text)
        if choice is not None:
            return _clarified(ws, user_id, pending, choice, state)
    reading, usage = await read_message(text, ctx, ws)
    ranking = state.get("ranking") or []
    last_pick = ranking[0].item_id if ranking else None
    resolved = resolve_mentions(ws, user_id, reading.feedback, last_pick)
    constraints = _merge(state.get("constraints"), reading.constraints, resolved)
    return {
        "user_id": user_id,
        "understanding": reading,
        "constraints": constraints,
        "matched_feedback": resolved.feedback,
        "unmatched": resolved.unmatched,
        "already_rated": resolved.already_rated,
        "pending": resolved.pending,
        "request": reading.request,
        "recorded": [],
        "notes": [],
        "candidates": [],
        "usage": turn_usage(usage),
    }


def _clarified(
    ws: Workspace, user_id: str, pending: Clarification, choice: str, state: ChatState
) -> dict[str, Any]:
    mention = Mention(text=pending.mention, sentiment=pending.sentiment)
    out = Resolution()
    _accept(ws, user_id, ws.item_code(choice), mention, out)
    return {
        "user_id": user_id,
        "understanding": Understanding(intent="feedback", feedback=[mention]),
        "constraints": state.get("constraints") or Constraints(),
        "matched_feedback": out.feedback,
        "unmatched": [],
        "already_rated": out.already_rated,
        "pending": None,
        "request": None,
        "recorded": [],
        "notes": [],
        "candidates": [],
        "usage": turn_usage(None),
    }


def _merge(old: Constraints | None, new: Constraints, resolved: Resolution) -> Constraints:
    """Constraints in force: new wishes replace old ones; exclusions accumulate."""
    old = old or Constraints()
    exclude = list(dict.fromkeys([*old.exclude, *new.exclude, *resolved.exclude]))
    include = [*new.include, *resolved.include] or old.include
    include = [a for a in dict.fromkeys(include) if a not in set(new.exclude + resolved.exclude)]
    exclude = [a for a in exclude if a not in set(new.include + resolved.include)]
    return Constraints(include=include, exclude=exclude, decades=new.decades or old.decades)
