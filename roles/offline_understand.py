"""The offline reading of a chat message, driven by the dataset's own catalogue.

``read_offline(text, index)`` turns one message into a :class:`~schemas.chat_state.Understanding`:

1. **cues**, left to right (:mod:`roles.lexicon`: "loved", "didn't like", "like" / "similar
   to", "not" / "no" / "without", "<title> was great"): each governs the stretch after it up to
   the clause's end, which :mod:`roles.utterance_pieces` cuts into titles, references to shown
   picks and attributes using the catalogue index ("Star Wars and Alien" is two titles where the
   catalogue has both). Likes and dislikes are durable feedback; "not X" / "not that one" is a
   skip for this conversation only; attributes become wanted or excluded constraints;
2. **leftovers** (:mod:`roles.utterance_leftovers`): eras, counts, "something else / more" and
   the catalogue attributes in the words no cue consumed;
3. the **kept request**: the words no cue consumed, as written, without stray leftovers.

Nothing here names a domain: titles, attributes and the century of "90s" come from the catalogue.
"""

from __future__ import annotations

from typing import Literal

from roles import lexicon as lx
from roles.catalogue_index import CatalogueIndex
from roles.utterance import (
    Message,
    Piece,
    is_content,
    is_junk,
    looks_foreign,
    looks_like_a_name,
)
from roles.utterance_leftovers import read_leftovers
from roles.utterance_pieces import Segmenter
from schemas.chat_state import Constraints, Mention, Sentiment, Understanding

MAX_MESSAGE_CHARS = 2000
MAX_ANTECEDENT_WORDS = 8  # longest title "it" may refer back to
_TIGHT = frozenset(",;:!?)")  # marks written without a space before them

Cue = Literal["negative", "positive", "similar", "skip"]
_CUES: tuple[tuple[Cue, tuple[lx.Phrase, ...]], ...] = (
    ("negative", lx.NEGATIVE_CUES),
    ("positive", lx.POSITIVE_CUES),
    ("similar", lx.SIMILAR_CUES),
    ("skip", lx.SKIP_CUES),
)


class _CueReader:
    """Reads the cues of one message into its ``found`` and cuts what they consume."""

    def __init__(self, msg: Message) -> None:
        self.msg = msg
        self.pieces = Segmenter(msg)

    def read(self) -> None:
        """Left to right: each cue consumes the titles / attributes / references it governs."""
        msg, i = self.msg, 0
        while i < len(msg.tokens):
            if msg.cut[i] or not msg.tokens[i].word:
                i += 1
                continue
            after = self._cue_at(i) or self._verdict_at(i) or self._nope_at(i)
            i = after if after is not None else i + 1

    def _phrase_at(self, i: int, phrases: tuple[lx.Phrase, ...]) -> int | None:
        """End of the first phrase matching at ``i`` (adverbs may sit inside it)."""
        tokens, cut = self.msg.tokens, self.msg.cut
        for phrase in phrases:
            j = i
            for k, word in enumerate(phrase):
                while k and j < len(tokens) and tokens[j].norm in lx.ADVERBS:
                    j += 1
                if j >= len(tokens) or cut[j] or tokens[j].norm != word:
                    break
                j += 1
            else:
                return j
        return None

    def _cue_at(self, i: int) -> int | None:
        for cue, phrases in _CUES:
            start = self._phrase_at(i, phrases)
            if start is None or (cue == "similar" and self._like_is_a_verb(i, start)):
                continue
            end = self.pieces.reach(start)
            pieces, stop = self.pieces.segment(start, end)
            if cue != "skip":  # "I loved Inception": a title this catalogue lacks, said so later
                pieces, stop = self.pieces.unknown_titles(pieces, start, stop, end)
            if pieces:
                self._apply(cue, [self._antecedent(p, start, i) for p in pieces])
                self.msg.consume(i, stop)
                return stop
        return None

    def _antecedent(self, piece: Piece, start: int, cue: int) -> Piece:
        """Read "it" after a title in the same message as that title ("saw Heat and loved it").

        The title stays in the request text but is spent: its words are not read again.
        """
        msg = self.msg
        if piece.kind != "ref" or msg.tokens[start].norm != "it":
            return piece
        for e in range(cue, 0, -1):  # the nearest title, as long as it goes
            for s in range(max(0, e - MAX_ANTECEDENT_WORDS), e):
                words = [t for t in msg.tokens[s:e] if t.word]
                body = words[1:] if words[:1] and words[0].norm in ("the", "a", "an") else words
                if any(msg.cut[s:e]) or not msg.tokens[e - 1].word or not looks_like_a_name(body):
                    continue
                named = self.pieces.piece(s, e)
                one_word_guess = len(body) < 2 and named is not None and named.quality < 3
                if named is not None and named.kind == "title" and not one_word_guess:
                    for k in range(s, e):
                        msg.spent[k] = True
                    return named
        return piece

    def _like_is_a_verb(self, i: int, end: int) -> bool:
        """Whether "like" is the verb ("I'd like a comedy"), not "similar to" ("like Alien")."""
        tokens = self.msg.tokens
        if [t.norm for t in tokens[i:end]] != ["like"]:
            return False
        before = [t.norm for t in tokens[:i] if t.word][-1:]
        return bool(before) and before[0] in lx.LIKE_BLOCKERS

    def _verdict_at(self, i: int) -> int | None:
        """Feedback named before its verdict: "<title> was great", "that one was boring"."""
        msg = self.msg
        if msg.tokens[i].norm not in lx.COPULAS:
            return None
        j = i + 1
        while j < len(msg.tokens) and msg.tokens[j].norm in lx.INTENSIFIERS:
            j += 1
        verdict = msg.tokens[j].norm if j < len(msg.tokens) else ""
        sentiment: Sentiment
        if verdict in lx.POSITIVE_ADJECTIVES:
            sentiment = "positive"
        elif verdict in lx.NEGATIVE_ADJECTIVES:
            sentiment = "negative"
        else:
            return None
        start = i
        while start > 0 and not msg.cut[start - 1] and not msg.breaks(start - 1):
            start -= 1
        for s in range(start, i):  # the longest stretch before the verb that names a title
            piece = self.pieces.piece(s, i) if msg.tokens[s].word else None
            if piece is None or piece.kind == "attr":
                continue
            # A title, or a pick in the past tense: "that one was great", not "this is great".
            if piece.kind == "title" or msg.tokens[i].norm in lx.PAST_COPULAS:
                piece = self._antecedent(piece, s, s)
                msg.found.feedback.append(Mention(text=piece.text, sentiment=sentiment))
                msg.consume(s, j + 1)
                return j + 1
        return None

    def _nope_at(self, i: int) -> int | None:
        if self.msg.tokens[i].norm not in lx.NOPE:
            return None
        self.msg.found.skip.append("that")
        self.msg.consume(i, i + 1)
        return i + 1

    def _apply(self, cue: Cue, pieces: list[Piece]) -> None:
        found = self.msg.found
        for piece in pieces:
            if piece.kind == "attr":
                wanted = cue in ("positive", "similar")
                (found.include if wanted else found.exclude).extend(piece.terms)
            elif cue in ("positive", "negative"):
                found.feedback.append(Mention(text=piece.text, sentiment=cue))
            elif cue == "similar":
                found.similar.append(piece.text)
            else:
                found.skip.append(piece.text)


def kept_request(msg: Message) -> str | None:
    """The words no cue consumed, as the user wrote them, without stray leftovers."""
    fragments: list[list[int]] = [[]]
    for k, token in enumerate(msg.tokens):
        if msg.cut[k] or token.norm in lx.CLAUSE_BREAK_MARKS:
            fragments.append([])
        else:
            fragments[-1].append(k)
    kept = []
    for fragment in fragments:
        while fragment and is_junk(msg.tokens[fragment[0]]):
            fragment = fragment[1:]
        while fragment and is_junk(msg.tokens[fragment[-1]]):
            fragment = fragment[:-1]
        if any(is_content(msg.tokens[k]) and not msg.spent[k] for k in fragment):
            kept.append(_as_written(msg, fragment))
    return ", ".join(kept) or None


def _as_written(msg: Message, fragment: list[int]) -> str:
    """The fragment with the user's spacing, but no space before a comma or a stop."""
    out = msg.tokens[fragment[0]].text
    for prev, k in zip(fragment, fragment[1:], strict=False):
        token = msg.tokens[k]
        gap = msg.text[msg.tokens[prev].end : token.start]
        out += ("" if token.norm in _TIGHT or not gap else " ") + token.text
    return out


def read_offline(text: str, index: CatalogueIndex) -> Understanding:
    """The deterministic reading of one chat message against a catalogue (the offline role)."""
    msg = Message((text or "").strip()[:MAX_MESSAGE_CHARS], index)
    if not any(t.word for t in msg.tokens):
        return Understanding(intent="empty")
    _CueReader(msg).read()
    read_leftovers(msg)
    found = msg.found
    exclude = list(dict.fromkeys(found.exclude))
    constraints = Constraints(
        include=[a for a in dict.fromkeys(found.include) if a not in exclude],
        exclude=exclude,
        decades=list(dict.fromkeys(found.decades)),
        year_min=found.year_min,
        year_max=found.year_max,
        relative_era=found.relative,
    )
    request = kept_request(msg)
    asks = bool(request or found.count or found.exclude_shown or found.skip or found.similar)
    asks = asks or not constraints.is_empty()
    understood = found.feedback or found.skip or found.similar or not constraints.is_empty()
    if looks_foreign(msg.text) and not understood:
        return Understanding(intent="other_language")
    return Understanding(
        intent="feedback" if found.feedback and not asks else "recommend",
        request=request,
        constraints=constraints,
        feedback=found.feedback,
        count=found.count,
        exclude_shown=found.exclude_shown,
        skip=list(dict.fromkeys(found.skip)),
        similar_to=list(dict.fromkeys(found.similar)),
    )
