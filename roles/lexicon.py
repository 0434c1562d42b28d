"""The English the offline parser knows: function words and intent cues, nothing about any domain.

Every item name, genre, category, platform or brand comes from the dataset's catalogue
(:mod:`roles.catalogue_index`); this module only knows how people ask, like, reject and count.
Words are normalised as the index normalises them (case-folded, apostrophes dropped: "didn't" ->
"didnt", "I've" -> "ive"). Supporting another language means another lexicon, not another parser.
"""

from __future__ import annotations

Phrase = tuple[str, ...]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _phrases(*texts: str) -> tuple[Phrase, ...]:
    """Phrases longest first, so "did not like" wins over "not"."""
    return tuple(sorted((tuple(t.split()) for t in texts), key=len, reverse=True))


FUNCTION_WORDS = _words(
    "a an the and or but so to for of in on at by with from about as into than then off out up "
    "i me my mine we us our you your he him his she her it its they them their this that these "
    "those there here is am are was were be been being do does did done have has had having "
    "will would can could should may might must shall im ive id youre dont doesnt didnt cant "
    "couldnt wont wouldnt isnt wasnt arent werent not no nor yes ok okay please thanks thank "
    "just only also too very really quite maybe perhaps already still even again "
    "what which who whom whose when where why how any some something anything everything "
    "nothing all each every more most less least much many few lot lots kind sort type bit "
    "want wants wanted need needs like likes love recommend suggest give show find get tell "
    "let see watch play read buy try pick name list hey hi hello now"
)
GENERIC_NOUNS = _words(
    "movie movies film films game games item items product products book books show shows "
    "series title titles thing things stuff one ones option options pick picks choice choices "
    "recommendation recommendations suggestion suggestions idea ideas tonight today weekend "
    "night evening"
)
EVALUATIVE = _words(
    "good great nice best better cool fun awesome amazing interesting decent solid favorite "
    "favourite similar different"
)
# Fillers that may surround a catalogue attribute inside a feedback or exclusion ("all the horror
# movies", "any of the sci-fi stuff"): they keep the piece an attribute mention.
ATTRIBUTE_FILLERS = _words("the a an some any all of my those these kind sort type") | GENERIC_NOUNS

# Small words a title may hold ("Lord of the Rings") when it is not in the catalogue.
TITLE_CONNECTORS = _words("of the and a an in on to for at with from")
ADVERBS = _words("really also just truly totally absolutely quite definitely do already")
SUBJECTS = _words("i we")

NEGATIVE_CUES = _phrases(
    "didnt like",
    "did not like",
    "didnt enjoy",
    "did not enjoy",
    "didnt love",
    "did not love",
    "dont like",
    "do not like",
    "couldnt stand",
    "could not stand",
    "cant stand",
    "hated",
    "disliked",
    "hate",
    "dislike",
    "not a fan of",
    "wasnt a fan of",
    "was not a fan of",
    "never liked",
    "didnt care for",
    "did not care for",
)
POSITIVE_CUES = _phrases(
    "loved",
    "liked",
    "enjoyed",
    "adored",
    "big fan of",
    "a fan of",
    "fan of",
    "i love",
    "i like",
    "i enjoy",
    "i adore",
    "we love",
    "we like",
    "we enjoy",
)
SIMILAR_CUES = _phrases(
    "like",
    "similar to",
    "such as",
    "in the style of",
    "along the lines of",
    "in the vein of",
    "reminiscent of",
    "comparable to",
)
# "like" after these is a verb ("I'd like a comedy"), not "similar to".
LIKE_BLOCKERS = _words(
    "i we you they id wed youd would do dont really also just might may could should to"
)
SKIP_CUES = _phrases(
    "not in the mood for",
    "dont want any",
    "dont want",
    "do not want",
    "no more",
    "anything but",
    "other than",
    "except for",
    "except",
    "without",
    "avoid",
    "skip",
    "exclude",
    "nothing",
    "not",
    "no",
    "already seen",
    "already watched",
    "already played",
    "already have",
    "already own",
    "already read",
    "ive seen",
    "seen",
)
NOPE = _words("nope nah")

CLAUSE_BREAK_WORDS = _words("but so though although however because yet")
CLAUSE_BREAK_MARKS = frozenset(".!?;\n")  # not ":" (titles hold colons)
SEPARATOR_WORDS = _words("and or plus nor")
SEPARATOR_MARKS = frozenset(",/+")
LEADING_JUNK = _words("and or but so also then plus well ok okay now oh")

POSITIVE_ADJECTIVES = _words(
    "great amazing awesome fantastic brilliant excellent wonderful perfect superb incredible "
    "good fun masterpiece"
)
NEGATIVE_ADJECTIVES = _words(
    "boring bad terrible awful dull horrible meh disappointing overrated rubbish garbage lame "
    "mediocre"
)
COPULAS = _words("was is were are")
PAST_COPULAS = _words("was were")  # "that one was great" is about a pick; "this is great" not
INTENSIFIERS = _words("really so very pretty quite just truly absolutely a")

REFERENCE_LAST = _phrases("that", "this", "it", "that one", "this one")
REFERENCE_ALL = _phrases("these", "those", "them", "these ones", "those ones", "all of them")
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5,
    "6th": 6, "7th": 7, "8th": 8, "9th": 9, "10th": 10,
}  # fmt: skip

NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "dozen": 12,
}  # fmt: skip
QUANTITY_PHRASES = {("a", "couple"): 2, ("couple",): 2, ("a", "few"): 3, ("a", "handful"): 5}
COUNT_VERBS = _words(
    "recommend suggest give show find list pick get name want need see top another only just"
)
COUNT_SKIP = _words("me us maybe about like")
COUNT_NOUNS = GENERIC_NOUNS | _words("more others of")

DECADE_WORDS = {
    "twenties": 20, "thirties": 30, "forties": 40, "fifties": 50, "sixties": 60, "seventies": 70,
    "eighties": 80, "nineties": 90,
}  # fmt: skip
BEFORE = _words("before pre until till")
AFTER = _words("after post")
SINCE = _words("since")
AT = _words("from in")
ONWARDS = _words("on onwards onward later newer")
OLDER = _words("older oldest")
NEWER = _words("newer newest recent latest")
OLD = _words("old")
MORE = _words("more")
OTHER = _words("else other others another different next")

FOREIGN_FUNCTION_WORDS = _words(
    "je tu il nous vous une des les est pas pour avec quelque chose voudrais "
    "yo quiero una pelicula peliculas algo para por favor como muy "
    "ich mochte ein eine einen der die das und nicht bitte etwas "
    "io vorrei un uno della per favore qualcosa eu quero um filme alguma coisa"
)
