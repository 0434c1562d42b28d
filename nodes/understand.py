"""The `understand` node: read the last user message into a request, constraints and feedback.

Offline, a deterministic parser reads the message; with LLM roles, the LMMem chat model extracts
the same :class:`Understanding` and the parser answers whenever the model cannot. Feedback titles
are then matched to catalog items by normalised title; several matches open a clarification.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import unicodedata
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from graph.chat_state import (
    ChatState,
    Clarification,
    Constraints,
    Intent,
    Mention,
    ResolvedFeedback,
    Sentiment,
    Understanding,
)
from graph.context import MemRecContext, workspace_for
from memory_store.workspace import Workspace
from nodes.roles import CallUsage

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 2000
MAX_PREFIX_MATCHES = 8
_YEAR = re.compile(r"\((\d{4})\)\s*$")
_PARENS = re.compile(r"\([^)]*\)")
_TRAILING_ARTICLE = re.compile(r"^(.*),\s*(the|a|an|la|le|les|il|das|der|die|el)$")
_LEADING_ARTICLE = re.compile(r"^(the|a|an)\s+")
_CLAUSE_END = r"(?=\s*(?:[.;!?]|,|\bbut\b|\bso\b|$))"
_TITLE_SPAN = r"[\"'\u201c\u2018]?(?P<t>[^.;!?,]+?)[\"'\u201d\u2019]?"
_POSITIVE = re.compile(
    r"\b(?:loved|liked|enjoyed|adored|really liked|really loved)\s+" + _TITLE_SPAN + _CLAUSE_END,
    re.I,
)
_NEGATIVE = re.compile(
    r"\b(?:hated|disliked|didn'?t like|did not like|didn'?t enjoy|did not enjoy|"
    r"couldn'?t stand)\s+" + _TITLE_SPAN + _CLAUSE_END,
    re.I,
)
_NOT_THAT = re.compile(r"\b(?:not\s+(?:that|this)(?:\s+one)?|nope)\s*(?=[,.;!?]|$)", re.I)
_EXCLUDE = re.compile(
    r"\b(?:not in the mood for|no more|no|without|avoid|skip|nothing|don'?t want(?: any)?|"
    r"not)\s+(?P<x>[^.;!?,]+)",
    re.I,
)
_DECADE = re.compile(r"(?<![\w'])'?(?P<century>19|20)?(?P<d>\d)0'?s\b", re.I)
_FILLER = re.compile(r"\s+(?:a lot|so much|very much|too|as well|last night|yesterday)$", re.I)
_ENGLISH = frozenset(
    "i me my a an the and or but to for of in on with something some movie movies film films "
    "show give recommend want like liked loved what any please more less not no is was it "
    "that this mood watch tonight you can could would good great".split()
)
_FOREIGN = frozenset(
    "je tu il nous vous une des les est pas pour avec quelque chose voudrais film "
    "yo quiero una película peliculas algo para por favor como muy "
    "ich möchte ein eine einen der die das und nicht bitte etwas "
    "io vorrei un uno della per favore qualcosa "
    "eu quero um filme alguma coisa".split()
)
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "sci fi": ("scifi", "science fiction", "sf"),
    "children s": ("children", "childrens", "kids", "kid", "family"),
    "film noir": ("noir",),
    "comedy": ("comedies", "funny", "laugh"),
    "horror": ("scary", "horror movies", "slasher"),
    "romance": ("romantic", "romances", "love story"),
    "animation": ("animated", "cartoon", "cartoons"),
    "documentary": ("documentaries",),
    "thriller": ("thrillers", "suspense"),
    "mystery": ("mysteries", "whodunit"),
    "drama": ("dramas", "dramatic"),
    "musical": ("musicals",),
    "western": ("westerns", "cowboy"),
    "war": ("war movies", "war films"),
    "action": ("action movies", "action packed"),
    "fantasy": ("fantasies",),
}


def normalise(text: str) -> str:
    """Lower case, no accents, no punctuation, single spaces."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def normalise_title(title: str) -> tuple[str, int | None]:
    """A title's match key (no year, no alternate titles, leading article dropped) and year."""
    year_match = _YEAR.search(title.strip())
    year = int(year_match.group(1)) if year_match else None
    base = _PARENS.sub(" ", title).strip()
    moved = _TRAILING_ARTICLE.match(base.lower())
    if moved:
        base = f"{moved.group(2)} {moved.group(1)}"
    key = normalise(base)
    return _LEADING_ARTICLE.sub("", key), year


@dataclass
class CatalogVocabulary:
    """Titles and attributes of one workspace, indexed for matching user text."""

    titles: dict[str, list[int]] = field(default_factory=dict)  # match key -> item codes
    years: list[int | None] = field(default_factory=list)  # per item code
    aliases: dict[str, str] = field(default_factory=dict)  # normalised alias -> attribute
    decades: set[str] = field(default_factory=set)  # attributes like '1990s'

    @classmethod
    def build(cls, titles: Sequence[str], attributes: Iterable[str]) -> CatalogVocabulary:
        """Index the titles by match key and the attributes by their aliases."""
        vocab = cls()
        for code, title in enumerate(titles):
            key, year = normalise_title(title)
            vocab.titles.setdefault(key, []).append(code)
            vocab.years.append(year)
        for name in attributes:
            if re.fullmatch(r"\d{4}s", name):
                vocab.decades.add(name)
                continue
            key = normalise(name)
            if not key:
                continue
            for alias in (key, key + "s", *_SYNONYMS.get(key, ())):
                vocab.aliases.setdefault(alias, name)
        return vocab

    def match_title(self, text: str) -> list[int]:
        """Item codes whose title matches ``text`` (exact key first, then word prefix)."""
        key, year = normalise_title(text)
        if not key:
            return []
        year = year or _trailing_year(text)
        if year is not None and key.endswith(str(year)):
            key = key[: -len(str(year))].strip()
        codes = list(self.titles.get(key, []))
        if not codes and len(key) >= 4:
            codes = [c for k, cs in self.titles.items() if k.startswith(key + " ") for c in cs]
            codes = codes[: MAX_PREFIX_MATCHES + 1] if len(codes) > MAX_PREFIX_MATCHES else codes
        if year is not None:
            codes = [c for c in codes if self.years[c] == year] or codes
        return sorted(codes)

    def attributes_in(self, text: str) -> list[str]:
        """Catalog attributes named in ``text`` (by alias, whole words), in order of mention."""
        norm = f" {normalise(text)} "
        found: list[tuple[int, str]] = []
        for alias, name in self.aliases.items():
            pos = norm.find(f" {alias} ")
            if pos >= 0:
                found.append((pos, name))
        return list(dict.fromkeys(name for _, name in sorted(found)))

    def decades_in(self, text: str) -> list[str]:
        """Decades named in ``text`` ('90s', '1990s', "'80s"), as '1990s' strings."""
        out = []
        for m in _DECADE.finditer(text):
            digit = m.group("d")
            if m.group("century"):
                out.append(f"{m.group('century')}{digit}0s")
                continue
            nineteen = f"19{digit}0s"
            out.append(nineteen if nineteen in self.decades or digit >= "3" else f"20{digit}0s")
        return list(dict.fromkeys(out))


def _trailing_year(text: str) -> int | None:
    m = re.search(r"\b(19\d{2}|20\d{2})\s*$", text.strip())
    return int(m.group(1)) if m else None


_VOCABS: weakref.WeakKeyDictionary[Workspace, CatalogVocabulary] = weakref.WeakKeyDictionary()


def vocabulary(ws: Workspace) -> CatalogVocabulary:
    """The (cached) catalog vocabulary of a workspace."""
    vocab = _VOCABS.get(ws)
    if vocab is None:
        vocab = _VOCABS[ws] = CatalogVocabulary.build(
            ws.dataset.item_titles, ws.graph.attribute_names
        )
    return vocab


# --------------------------------------------------------------------------------- the parser


def looks_foreign(text: str) -> bool:
    """Whether a message is mostly another language (non-Latin script or foreign stop words)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
    if latin / len(letters) < 0.5:
        return True
    words = re.findall(r"[^\W\d_]+", text.lower())
    english = sum(w in _ENGLISH for w in words)
    foreign = sum(w in _FOREIGN for w in words)
    return foreign >= 2 and foreign > english


def _clean_span(span: str) -> str:
    return _FILLER.sub("", span.strip().strip("\"'\u201c\u201d\u2018\u2019")).strip()


def parse_message(text: str, vocab: CatalogVocabulary) -> Understanding:
    """The deterministic reading of one message (the offline role of ``understand``)."""
    text = (text or "").strip()[:MAX_MESSAGE_CHARS]
    if not text or not re.search(r"\w", text):
        return Understanding(intent="empty")
    feedback: list[Mention] = []
    spans: list[tuple[int, int]] = []
    readings: tuple[tuple[re.Pattern[str], Sentiment], ...] = (
        (_POSITIVE, "positive"),
        (_NEGATIVE, "negative"),
    )
    for pattern, sentiment in readings:
        for m in pattern.finditer(text):
            feedback.append(Mention(text=_clean_span(m.group("t")), sentiment=sentiment))
            spans.append(m.span())
    for m in _NOT_THAT.finditer(text):
        feedback.append(Mention(text="that", sentiment="negative"))
        spans.append(m.span())
    rest = _cut(text, spans)
    exclude: list[str] = []
    for m in _EXCLUDE.finditer(rest):
        exclude += vocab.attributes_in(m.group("x"))
    include = [
        a for a in vocab.attributes_in(_cut(rest, _spans(_EXCLUDE, rest))) if a not in exclude
    ]
    constraints = Constraints(include=include, exclude=exclude, decades=vocab.decades_in(rest))
    request = rest.strip(" ,.;!?") or None
    if request is not None and not re.search(r"[^\W\d_]{2,}", request):
        request = None
    if looks_foreign(text) and not feedback:
        return Understanding(intent="other_language", constraints=constraints)
    intent: Intent = (
        "feedback" if feedback and not request and constraints.is_empty() else "recommend"
    )
    return Understanding(intent=intent, request=request, constraints=constraints, feedback=feedback)


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [m.span() for m in pattern.finditer(text)]


def _cut(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` without the given spans."""
    out, pos = [], 0
    for start, end in sorted(spans):
        out.append(text[pos:start])
        pos = max(pos, end)
    out.append(text[pos:])
    return " ".join(" ".join(out).split())


def clean_understanding(raw: Understanding, vocab: CatalogVocabulary) -> Understanding:
    """Keep only catalog attributes and well-formed decades in a model's reading."""

    def known(names: Iterable[str]) -> list[str]:
        out: list[str] = []
        for name in names:
            out += vocab.attributes_in(name)
        return list(dict.fromkeys(out))

    decades = [d for d in raw.constraints.decades if re.fullmatch(r"\d{4}s", d)]
    exclude = known(raw.constraints.exclude)
    constraints = Constraints(
        include=[a for a in known(raw.constraints.include) if a not in exclude],
        exclude=exclude,
        decades=decades or vocab.decades_in(" ".join(raw.constraints.decades)),
    )
    feedback = [m for m in raw.feedback if m.text.strip()]
    return raw.model_copy(update={"constraints": constraints, "feedback": feedback})


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
    from nodes.role_factory import role_specs

    vocab = vocabulary(ws)
    parsed = parse_message(text, vocab)
    mem_spec, _ = role_specs(ctx)
    if mem_spec == "offline" or parsed.intent == "empty":
        return parsed, None
    from nodes.llm_roles import call_structured
    from nodes.models import ModelConfigError, make_chat_model
    from prompts.chat import understand_messages

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
