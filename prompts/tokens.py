"""Offline token counting and truncation (an estimate of OpenAI's cl100k_base).

tiktoken downloads its encodings at run time, which fails on an offline machine, so budgets (tau,
memory caps) and usage accounting use this estimator instead. It mimics cl100k's pre-tokenizer
(contractions, words with their leading space, numbers in groups of at most three digits,
punctuation runs, whitespace) and splits long words into roughly four-character pieces, as BPE
does for rare words. For English prose it is within about 10-15% of cl100k; for code, ids or
non-Latin scripts it is rougher. Use it for budgets and reports, never for billing.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from schemas.context import env_count

# cl100k's pattern with \p{L} written as [^\W\d_] and \p{N} as \d (Python's re has no \p{...}).
_PRETOKEN = re.compile(
    r"'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])"
    r"|[^\r\n\w]?[^\W\d_]+"
    r"|\d{1,3}"
    r"| ?(?:[^\s\w]|_)+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)
_WHOLE_WORD_CHARS = 10  # common words up to this length are usually one cl100k token
_PIECE_CHARS = 4  # rare / long words split into pieces of about this many characters
_PUNCT_CHARS = 3  # punctuation runs merge into tokens of about this many characters


# Cache sizes: counted texts (memories, prompt pieces; up to a few KB each) and pre-tokens
# (words with their space, punctuation runs). Bounded so a server's memory levels off.
CACHE_ENV = "MEMREC_TOKEN_CACHE"
_TEXTS = env_count(CACHE_ENV, 4096)


@lru_cache(maxsize=16384)
def _piece_tokens(piece: str) -> int:
    """Estimated tokens of one pre-token."""
    core = piece.strip()
    if not core:
        return 1
    if core[-1].isalpha() or core[0].isalpha():
        letters = sum(ch.isalpha() for ch in core)
        extra = max(0, letters - _WHOLE_WORD_CHARS)
        return 1 + math.ceil(extra / _PIECE_CHARS)
    if core.isdigit():
        return 1
    return math.ceil(len(core) / _PUNCT_CHARS)


@lru_cache(maxsize=_TEXTS)  # memories repeat across requests; counting is the hot part
def count_tokens(text: str) -> int:
    """Estimated cl100k token count of ``text`` (0 for the empty string)."""
    return sum(map(_piece_tokens, _PRETOKEN.findall(text)))


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` (cut at a pre-token boundary) within ``max_tokens``."""
    if max_tokens <= 0:
        return ""
    used = 0
    end = 0
    for match in _PRETOKEN.finditer(text):
        cost = _piece_tokens(match.group())
        if used + cost > max_tokens:
            break
        used += cost
        end = match.end()
    return text[:end]
