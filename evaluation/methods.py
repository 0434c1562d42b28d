"""The benchmark methods: agentic ones as switches of one run context, classical ones by name.

Every agentic method runs through the same recommend graph; a method is nothing but the
``MemRecContext`` fields it sets (BENCHMARK.md, "Methods"). Classical methods name a baseline of
``evaluation/baselines.py``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from schemas.context import MemRecContext

# The classical baselines (``evaluation/baselines.py`` implements them under these names).
BASELINES: tuple[str, ...] = ("random", "mostpop", "itemknn", "bpr", "als")
# The strong simple baselines (``evaluation/strong.py``): `--method strong` runs them.
STRONG_BASELINES: tuple[str, ...] = ("recency-knn", "transition", "ease", "sasrec")
# Strong baselines whose dependency is an optional extra: the module it needs, an install hint.
OPTIONAL_BASELINES: dict[str, tuple[str, str]] = {
    "sasrec": (
        "torch",
        "a CPU-only build: `uv pip install torch --index-url https://download.pytorch.org/whl/cpu`",
    )
}
_STRONG_DESCRIPTIONS = {
    "recency-knn": "recency-weighted item kNN with a popularity prior (tuned on validation)",
    "transition": "first-order transitions with a popularity prior (tuned on validation)",
    "ease": "EASE, closed form (lambda tuned on validation)",
    "sasrec": "SASRec, small, on CPU (epochs tuned on validation; needs `uv sync --extra sasrec`)",
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


# The agentic methods in ONE table (README "Methods and ablations" mirrors it). Every row but
# memrec removes exactly one mechanism, i.e. sets exactly one switch (tests/test_ablations.py):
#   collab_read  neighbour facets at ranking (curate + synthesize)
#   collab_write item memory updates and neighbour patches of propagation; interactions are still
#                recorded in the graph and the user's own memory still rewritten
#   rules        generated domain rules vs the paper's generic heuristic (schemas/ruleset.py)
#   curation     rule-curated + synthesized neighbours vs raw, uncurated neighbour memories
#   memory       full collaborative memory vs own user memory only (isolated: nothing
#                collaborative read or written) vs no memory at all (vanilla)
_AGENTIC = (
    _agentic("memrec", "full MemRec: curate, synthesize, rank; propagation to user, item, nbrs"),
    _agentic(
        "memrec-no-read",
        "without collaborative read: no neighbour facets (own and candidate memories kept)",
        collab_read=False,
    ),
    _agentic(
        "memrec-no-write",
        "without collaborative write: interactions recorded, own memory rewritten, no patches",
        collab_write=False,
    ),
    _agentic(
        "memrec-generic-rules",
        "the paper's generic curation heuristic instead of generated rules",
        rules="generic",
    ),
    _agentic(
        "naive-collab", "raw, uncurated neighbour memories straight to LLMRec", curation="raw"
    ),
    _agentic(
        "isolated",
        "own user memory only (i2Agent-like): nothing collaborative read or written",
        memory="own",
    ),
    _agentic("vanilla", "no memory: history titles and catalogue text to LLMRec", memory="none"),
)
# Context fields that only change how the recommend graph READS: propagation ignores them, so
# runs differing only in these share one warm-up (tests/test_runner.py pins that the warmed
# states are identical). ``memory`` is not among them: isolated and vanilla write less.
READ_ONLY_FIELDS = frozenset(
    {
        "collab_read",
        "home",
        "k",
        "curation",
        "tau",
        "n_facets",
        "llmrec",
        "min_users",
        "min_items",
    }
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


def missing_extra(name: str) -> str | None:
    """Why an optional baseline cannot run here (its extra is not installed), else None."""
    if name not in OPTIONAL_BASELINES:
        return None
    module, hint = OPTIONAL_BASELINES[name]
    if importlib.util.find_spec(module) is not None:
        return None
    return f"{name} needs {module}, an optional extra: run `uv sync --extra {name}` ({hint})"


def expand_methods(spec: str, skipped: list[str] | None = None) -> list[str]:
    """Method names of a comma-separated spec (groups expanded, first occurrence kept).

    A group leaves out an optional baseline whose extra is missing and appends the reason to
    ``skipped``; a method named on its own is kept (running it then names the install command).
    """
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        group = METHOD_GROUPS.get(part)
        for name in group or ((part,) if part else ()):
            reason = missing_extra(name) if group else None
            if reason is not None:
                if skipped is not None and reason not in skipped:
                    skipped.append(reason)
                continue
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


def write_switches(spec: MethodSpec) -> dict[str, Any]:
    """The switches of ``spec`` that change the warm-up (methods with equal ones share it)."""
    return {k: v for k, v in spec.switches.items() if k not in READ_ONLY_FIELDS}


def method_context(spec: MethodSpec, base: MemRecContext) -> MemRecContext:
    """``base`` with the method's switches applied (classical methods have none)."""
    if not spec.agentic:
        raise UnknownMethod(f"{spec.name} is a classical baseline; it has no run context")
    return replace(base, **spec.switches)
