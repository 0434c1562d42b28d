"""The benchmark methods: agentic ones as switches of one run context, classical ones by name.

Every agentic method runs through the same recommend graph; a method is nothing but the
``MemRecContext`` fields it sets (BENCHMARK.md, "Methods"). Classical methods name a baseline of
``evaluation/baselines.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from schemas.context import MemRecContext

# The classical baselines (``evaluation/baselines.py`` implements them under these names).
BASELINES: tuple[str, ...] = ("random", "mostpop", "itemknn", "bpr", "als")
# The strong simple baselines (``evaluation/strong.py``): `--method strong` runs them.
STRONG_BASELINES: tuple[str, ...] = ("recency-knn", "transition", "ease")
_STRONG_DESCRIPTIONS = {
    "recency-knn": "recency-weighted item kNN with a popularity prior (tuned on validation)",
    "transition": "first-order transitions with a popularity prior (tuned on validation)",
    "ease": "EASE, closed form (lambda tuned on validation)",
}


class UnknownMethod(ValueError):
    """A method name the benchmark does not know; the message lists the accepted names."""


@dataclass(frozen=True)
class MethodSpec:
    """One benchmark method: its family and, for agentic methods, the context switches it sets.

    A plain dataclass (no pydantic): the CLI lists the methods in ``--help`` without loading it.
    """

    name: str  # the name used on the command line and in reports
    family: Literal["agentic", "classical"]  # recommend graph or baseline
    switches: dict[str, Any] = field(default_factory=dict)  # MemRecContext fields it sets
    description: str = ""  # one line for reports and --help

    @property
    def agentic(self) -> bool:
        """Whether the method runs through the recommend graph."""
        return self.family == "agentic"


def _agentic(name: str, description: str, **switches: Any) -> MethodSpec:
    return MethodSpec(name=name, family="agentic", switches=switches, description=description)


_AGENTIC = (
    _agentic(
        "vanilla",
        "no memory: history titles straight to LLMRec",
        memory="none",
        collab_read=False,
    ),
    _agentic("isolated", "own user memory only (i2Agent-like)", memory="own", collab_read=False),
    _agentic("naive-collab", "raw, uncurated neighbours straight to LLMRec", curation="raw"),
    _agentic("memrec", "full MemRec: curate, synthesize, rank"),
    _agentic(
        "memrec-no-read",
        "ablation: no collaborative read",
        collab_read=False,
        memory="full",
    ),
    _agentic(
        "memrec-no-write",
        "ablation: warm-up interactions neither recorded nor propagated",
        collab_write=False,
    ),
    _agentic(
        "memrec-generic-rules", "ablation: generic instead of generated rules", rules="generic"
    ),
)
_CLASSICAL = tuple(
    MethodSpec(name=name, family="classical", description=f"classical baseline {name}")
    for name in BASELINES
) + tuple(
    MethodSpec(name=name, family="classical", description=_STRONG_DESCRIPTIONS[name])
    for name in STRONG_BASELINES
)

METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (*_CLASSICAL, *_AGENTIC)}
AGENTIC_METHODS: tuple[str, ...] = tuple(spec.name for spec in _AGENTIC)
CLASSICAL_METHODS: tuple[str, ...] = tuple(spec.name for spec in _CLASSICAL)


# Names the CLI expands: `all` is every method but the strong baselines, `strong` those.
METHOD_GROUPS: dict[str, tuple[str, ...]] = {
    "all": tuple(n for n in METHODS if n not in STRONG_BASELINES),
    "strong": STRONG_BASELINES,
}


def expand_methods(spec: str) -> list[str]:
    """Method names of a comma-separated spec (groups expanded, first occurrence kept)."""
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        for name in METHOD_GROUPS.get(part, (part,) if part else ()):
            if name not in names:
                names.append(name)
    return names


def get_method(name: str) -> MethodSpec:
    """The method called ``name``; ``UnknownMethod`` listing every accepted name otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownMethod(
            f"unknown method {name!r}; accepted: {', '.join(METHODS)} (or the groups "
            f"{', '.join(METHOD_GROUPS)} on the CLI)"
        ) from None


def method_context(spec: MethodSpec, base: MemRecContext) -> MemRecContext:
    """``base`` with the method's switches applied (classical methods have none)."""
    if not spec.agentic:
        raise UnknownMethod(f"{spec.name} is a classical baseline; it has no run context")
    return replace(base, **spec.switches)
