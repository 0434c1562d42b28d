"""What one chat message changes, resolved against the catalogue and the conversation.

Pure functions the `understand` node applies to a reading (:class:`Understanding`):

- **references** to the picks shown last: ``that`` (the top one), ``#2``, ``these`` (all);
- **feedback** is lasting (recorded, propagated) only when its title is certain
  (:attr:`~roles.catalogue_index.TitleResolution.confident`); a likely title becomes a
  "did you mean ...?" question, several matches a "which one?" question, none a helpful note;
- **skips** ("not that one") and **similar** titles ("something like X") only steer this
  conversation; nothing about them is recorded;
- **constraints in force**: new wishes replace old ones (a new wish without an era drops the old
  era), exclusions accumulate, an era relative to the picks shown ("older") becomes year bounds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from memory_store.workspace import Workspace
from roles.catalogue_index import CatalogueIndex, normalise
from schemas.chat_state import Clarification, Constraints, Mention, ResolvedFeedback

YES = frozenset("yes y yeah yep yup sure right correct exactly that's it".split())
NO = frozenset("no n nope nah neither none wrong".split())
_REFERENCE = re.compile(r"^(that|these|#\d{1,2})$")


def is_reference(text: str) -> bool:
    """Whether a mention is a reference to the picks shown last ("that", "#2", "these")."""
    return bool(_REFERENCE.match(text.strip().lower()))


def referenced(text: str, picks: Sequence[str]) -> list[str]:
    """The item ids a reference names among the picks shown last (empty when out of range)."""
    ref = text.strip().lower()
    if ref == "these":
        return list(picks)
    if ref == "that":
        return list(picks[:1])
    n = int(ref[1:]) if ref.startswith("#") else 0
    return [picks[n - 1]] if 1 <= n <= len(picks) else []


@dataclass
class Resolution:
    """Feedback, skips and seeds of one message, matched to catalogue items."""

    feedback: list[ResolvedFeedback] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    already_rated: list[str] = field(default_factory=list)
    pending: Clarification | None = None
    skipped: list[str] = field(default_factory=list)
    similar: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def resolve_feedback(
    ws: Workspace,
    index: CatalogueIndex,
    user_id: str,
    mentions: Sequence[Mention],
    picks: Sequence[str],
    out: Resolution,
) -> None:
    """Lasting feedback on certain titles only; questions or notes for the rest."""
    titled = [m for m in mentions if not is_reference(m.text)]
    texts = [m.text for m in titled]
    found = dict(zip(texts, index.resolve_titles(texts), strict=True))
    for mention in mentions:
        if is_reference(mention.text):
            ids = referenced(mention.text, picks)
            if not ids:
                out.unmatched.append(mention.text)
            for item_id in ids:
                accept(ws, user_id, item_id, mention.sentiment, out)
            continue
        resolution = found[mention.text]
        sure = resolution.confident
        if sure is not None:
            accept(ws, user_id, sure.item_id, mention.sentiment, out)
        elif not resolution.matches:
            out.unmatched.append(mention.text)
        elif out.pending is None:  # one question at a time: the likely title, else the list
            best = resolution.best
            ids = [best.item_id] if best else [m.item_id for m in resolution.matches]
            out.pending = Clarification(
                mention=mention.text, sentiment=mention.sentiment, options=ids
            )


def accept(
    ws: Workspace, user_id: str, item_id: str, sentiment: str, out: Resolution
) -> None:
    """Record-worthy feedback, unless the user already rated the item (their history stays)."""
    code = ws.item_code(item_id)
    if ws.has_user(user_id) and ws.graph.has(ws.user_code(user_id), code):
        out.already_rated.append(ws.title(code))
        return
    if all(f.item_id != item_id for f in out.feedback):
        title = ws.title(code)
        out.feedback.append(
            ResolvedFeedback(item_id=item_id, title=title, sentiment=sentiment)  # type: ignore[arg-type]
        )


def resolve_steering(
    index: CatalogueIndex, texts: Sequence[str], picks: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Item ids for skips or "like X" titles (the best match is enough) and what matched nothing."""
    ids: list[str] = []
    missed: list[str] = []
    titled = [t for t in texts if not is_reference(t)]
    found = dict(zip(titled, index.resolve_titles(titled), strict=True))
    for text in texts:
        if is_reference(text):
            hit = referenced(text, picks)
        else:
            best = found[text].best or (found[text].matches[0] if found[text].matches else None)
            hit = [best.item_id] if best else []
        ids += hit
        if not hit:
            missed.append(text)
    return list(dict.fromkeys(ids)), missed


def answer_clarification(
    index: CatalogueIndex, pending: Clarification, text: str
) -> str | None:
    """The option a reply picks: yes (one option), a number, an item id, a year or a title.

    ``""`` means the user declined ("no"); None means the reply is not an answer.
    """
    words = normalise(text).split()
    if len(pending.options) == 1 and words and len(words) <= 3:
        if set(words) & YES:
            return pending.options[0]
        if set(words) & NO:
            return ""
    if words and set(words) <= NO | {"thanks", "thank", "you"}:
        return ""
    number = re.fullmatch(r"#?\s*(\d{1,2})\.?", text.strip())
    if number and 1 <= int(number.group(1)) <= len(pending.options):
        return pending.options[int(number.group(1)) - 1]
    if text.strip() in pending.options:
        return text.strip()
    matched = {m.item_id for m in index.match_title(text)}
    year = re.search(r"\b(1[89]\d{2}|20\d{2})\b", text)
    hits = [
        option
        for option in pending.options
        if option in matched or (year and year.group(1) in index.titles[_code(index, option)])
    ]
    return hits[0] if len(hits) == 1 else None


def _code(index: CatalogueIndex, item_id: str) -> int:
    return index.item_ids.index(item_id)


def merged_constraints(
    index: CatalogueIndex,
    old: Constraints | None,
    new: Constraints,
    picks: Sequence[str],
    new_topic: bool = False,
) -> Constraints:
    """Constraints in force: new wishes replace old ones; exclusions accumulate; eras resolve.

    ``new_topic`` ("something like X"): the old wanted attributes and era no longer apply.
    """
    old = old or Constraints()
    if new_topic:
        old = Constraints(exclude=old.exclude)
    include = [a for a in (new.include or old.include) if a not in new.exclude]
    exclude = [a for a in dict.fromkeys([*old.exclude, *new.exclude]) if a not in new.include]
    relative = new.relative_era
    named_era = new.year_min is not None or new.year_max is not None or bool(new.decades)
    if new.include and not named_era and relative is None:  # a new wish starts a new era
        old = old.model_copy(update={"decades": [], "year_min": None, "year_max": None})
    year_min, year_max = old.year_min, old.year_max
    if relative is not None:
        year_min, year_max = index.relative_years(relative, picks)
    elif named_era:
        year_min, year_max = new.year_min, new.year_max
    return Constraints(
        include=include,
        exclude=exclude,
        decades=new.decades or ([] if relative else old.decades),
        year_min=year_min,
        year_max=year_max,
        relative_era=relative,
    )
