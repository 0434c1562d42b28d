"""The guard of the free-text chat reply: streamed within the deadline, checked before it is shown.

:func:`write_reply` streams the reply (a deadline then cancels the generation), trims a reply cut
by the token cap to its last sentence and screens it with :func:`check_reply` (not empty, no echo
of the prompt or its data blocks, not only the user's message again, names the picks). Failures
are classified and counted like the structured calls' (``roles/guard.py``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence

from langchain_core.messages import BaseMessage

from roles.client import CallFailure, ModelClient
from roles.guard import _add_tokens, _count, _cut_off, _refused
from schemas.records import CallUsage

logger = logging.getLogger(__name__)

_BLOCK_LINE = re.compile(r"^\s*(<<<|>>>)[A-Z][A-Z0-9_]*\s*$", re.MULTILINE)
_SCAFFOLD = ("TASK:", "Text between a line", "A draft reply with the facts to keep")
_WORD = re.compile(r"[a-z0-9']+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def check_reply(text: str, prompt: Sequence[BaseMessage], titles: Sequence[str]) -> str | None:
    """Why a chat reply must not be shown (None: it may be).

    Refused: an empty reply; one that repeats the prompt's data-block delimiters or instructions
    (a base model echoing its prompt); one that only repeats the user's last message; one that
    names none of the picks it was asked to present.
    """
    body = text.strip()
    if not body:
        return "the reply is empty"
    if _BLOCK_LINE.search(body) or "<<<" in body or any(s in body for s in _SCAFFOLD):
        return "the reply repeats the prompt's data blocks or instructions"
    words = _words(body)
    for user_text in (m.text for m in prompt if m.type == "human"):
        for block in ("CONVERSATION", "MESSAGE"):
            found = re.search(rf"<<<{block}\n(.*?)\n>>>{block}", user_text, flags=re.S)
            last = (found.group(1).strip().splitlines() or [""])[-1] if found else ""
            said = _words(last.split(":", 1)[-1])
            if said and words[: len(said)] == said and len(words) <= len(said) + 3:
                return "the reply only repeats the user's message"
    if titles and not any(_title_named(body, t) for t in titles):
        return "the reply names none of the picks"
    return None


def _title_named(body: str, title: str) -> bool:
    """Whether the reply names the title (its words before any year in brackets)."""
    core = re.sub(r"\s*\(\d{4}\)\s*$", "", title).strip()
    words = _words(core)
    return bool(words) and " ".join(words) in " ".join(_words(body))


_SENTENCE_END = re.compile(r"[.!?)](?=\s|$)")


def _bounded(text: str, cut: bool, max_chars: int) -> str:
    """The reply within ``max_chars``; a reply cut by the token cap ends at its last sentence."""
    body = text.strip()[:max_chars]
    if cut or len(text.strip()) > max_chars:
        ends = [m.end() for m in _SENTENCE_END.finditer(body)]
        body = body[: ends[-1]] if ends else ""
    return body.strip()


async def write_reply(
    client: ModelClient,
    prompt: Sequence[BaseMessage],
    *,
    max_tokens: int,
    titles: Sequence[str] = (),
    max_chars: int = 2400,
) -> tuple[str | None, CallUsage]:
    """A checked free-text reply (streamed, within the role's deadline), or None and why.

    Not retried: a stream that failed half-way may have cost the server a generation. The reply
    is screened by :func:`check_reply` before anyone sees it; a reply cut off by the token cap is
    trimmed to its last full sentence.
    """
    usage = CallUsage.model_validate({"model": client.name, "calls": 1})
    cap = client.settings.cap(max_tokens)
    started = time.perf_counter()
    text: str | None = None
    try:
        done = await client.text(prompt, cap)
    except CallFailure as failure:
        _count(usage, failure.kind)
        _add_tokens(usage, client, prompt, None)
        usage.fallback_reason = failure.detail
    else:
        _add_tokens(usage, client, prompt, done)
        refused = _refused(done)
        cut = _cut_off(done, cap)
        body = _bounded(done.text, cut, max_chars)
        why = refused or check_reply(body, prompt, titles)
        if why is None:
            text = body
        else:
            _count(usage, "refusal" if refused else "length" if cut and not body else "malformed")
            usage.fallback_reason = why
    usage.latency_ms = (time.perf_counter() - started) * 1000.0
    if text is None:
        usage.fallbacks = 1
        logger.warning("%s: chat reply not usable (%s)", client.name, usage.fallback_reason)
    return text, usage
