"""What a cue governs: its reach cut into titles, references and attributes by the catalogue.

"I loved Star Wars and Alien" is two titles because the catalogue has both; "Pride and Prejudice"
is one because the catalogue has it whole. The best cut reads the most words, then the surest
pieces (exact title, reference or one attribute before a fuzzy title), then the fewest pieces.
Capitalised names left over become titles the catalogue lacks ("I loved Inception"), so the reply
can say so instead of the words leaking into the request.
"""

from __future__ import annotations

from collections.abc import Callable

from roles import lexicon as lx
from roles.catalogue_index import TitleResolution
from roles.utterance import NOT_CONTENT, Message, Piece, looks_like_a_name, reference

MAX_SCOPE_WORDS = 40  # a cue reaches at most this many words
MAX_PIECE_WORDS = 12  # longest title or attribute phrase tried in a cue's reach

Score = tuple[int, int, int]  # words read, surest piece's quality, minus the number of pieces
Option = tuple[Score, list[Piece], int]  # the score, the pieces, where they stop


class Segmenter:
    """Cuts cue reaches of one message into pieces (memoised per token span)."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self._pieces: dict[tuple[int, int], Piece | None] = {}

    def reach(self, start: int) -> int:
        """Where a cue's reach ends: a clause break, a consumed token or ``MAX_SCOPE_WORDS``."""
        msg, end, words = self.message, start, 0
        while end < len(msg.tokens) and not msg.cut[end] and not msg.breaks(end):
            words += msg.tokens[end].word
            if words > MAX_SCOPE_WORDS:
                break
            end += 1
        return end

    def segment(self, start: int, end: int) -> tuple[list[Piece], int]:
        """The best pieces from ``start`` within ``end`` and where they stop (none: ``start``)."""
        memo: dict[int, Option | None] = {}

        def best_from(s: int) -> Option | None:
            if s not in memo:
                memo[s] = self._best_from(s, end, best_from)
            return memo[s]

        found = best_from(start)
        return ([], start) if found is None else (found[1], found[2])

    def _best_from(
        self, s: int, end: int, best_from: Callable[[int], Option | None]
    ) -> Option | None:
        msg = self.message
        if s >= end or not msg.tokens[s].word or msg.separates(s):
            return None
        best: Option | None = None
        for e in range(s + 1, end + 1):
            if sum(t.word for t in msg.tokens[s:e]) > MAX_PIECE_WORDS:
                break
            piece = self.piece(s, e) if msg.tokens[e - 1].word else None
            if piece is None:
                continue
            option: Option = ((piece.words, piece.quality, -1), [piece], e)
            nxt = e
            while nxt < end and msg.separates(nxt):
                nxt += 1
            rest = best_from(nxt) if nxt > e else None
            if rest is not None:
                (words, quality, count), pieces, stop = rest
                joined = sum(t.word for t in msg.tokens[e:nxt])  # "and" read too
                score = (piece.words + joined + words, min(piece.quality, quality), count - 1)
                option = max(option, (score, [piece, *pieces], stop), key=lambda o: o[0])
            if best is None or option[0] > best[0]:
                best = option
        return best

    def unknown_titles(
        self, pieces: list[Piece], start: int, stop: int, end: int
    ) -> tuple[list[Piece], int]:
        """Add the capitalised names left in a reach ("Heat and Inception", "Rocky 3").

        A name glued to the last piece (no separator between) replaces it: "Rocky" read out of
        "Rocky 3" is not what the user named.
        """
        msg, pieces, k = self.message, list(pieces), stop
        while k < end:
            glued = bool(pieces) and k > start and not msg.separates(k)
            j = k
            while j < end and msg.separates(j):
                j += 1
            e = j
            while e < end and not msg.separates(e):
                e += 1
            words = [t for t in msg.tokens[j:e] if t.word]
            body = words[1:] if words[:1] and words[0].norm in ("the", "a", "an") else words
            if not looks_like_a_name(body):
                break
            first = words[0].start
            if glued:
                pieces.pop()
                first = msg.tokens[self._piece_start(k, start)].start
            pieces.append(Piece("title", msg.text[first : words[-1].end], (), 0, 0))
            k = e
        return pieces, k

    def _piece_start(self, k: int, start: int) -> int:
        """Where the piece ending just before ``k`` starts (back to a separator or ``start``)."""
        while k > start and not self.message.separates(k - 1):
            k -= 1
        return k

    def piece(self, s: int, e: int) -> Piece | None:
        """Tokens ``s:e`` read as one piece, or None."""
        if (s, e) not in self._pieces:
            self._pieces[(s, e)] = self._classify(s, e)
        return self._pieces[(s, e)]

    def _classify(self, s: int, e: int) -> Piece | None:
        msg = self.message
        tokens = [t for t in msg.tokens[s:e] if t.word]
        norms = [t.norm for t in tokens]
        text = msg.text[msg.tokens[s].start : msg.tokens[e - 1].end]
        ref = reference(norms)
        if ref is not None:
            return Piece("ref", ref, (), 3, len(norms))
        if all(w in NOT_CONTENT for w in norms):
            return None
        matches = msg.index.match_title(text)
        if matches and matches[0].exact:
            return Piece("title", text, (), 3, len(norms))
        if norms[-1] in lx.FUNCTION_WORDS:  # "Twelve Monkeys a (lot)": a title never ends so
            return None
        content = [w for w in norms if w not in lx.ATTRIBUTE_FILLERS]
        hits = msg.index.find_terms(content, ignore=lx.FUNCTION_WORDS)
        covered = bool(content) and sum(b - a for a, b, _ in hits) == len(content)
        terms = tuple(dict.fromkeys(name for _, _, name in hits))
        if covered and len(hits) == 1:
            return Piece("attr", text, terms, 3, len(norms))
        if matches and (len(content) > 1 or tokens[0].text[:1].isupper()):  # not "a long one"
            clear = TitleResolution(text, matches).best is not None
            return Piece("title", text, (), 2 if clear else 1, len(norms))
        if covered:
            return Piece("attr", text, terms, 2, len(norms))
        return None
