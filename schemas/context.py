"""The run context of every MemRec graph (LangGraph ``context_schema``), edited in Studio.

Only the configuration lives here; ``memory_store.workspace.workspace_for`` opens the store a
context names.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from typing import Any, Literal


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def env_number(name: str, kind: Any, default: Any, minimum: float, what: str) -> Any:
    """A number from the environment (``default`` when unset); a bad value names the variable.

    ``kind`` converts the text (int or float), ``what`` says what was expected.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not {what}") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


def _env_number(name: str, kind: type[float] | type[int], minimum: float = 1e-9) -> Any:
    """A model setting from the environment (None when unset)."""
    what = (
        f"a number; set a plain {kind.__name__} (per role: use MEMREC_ROLE_SETTINGS, e.g. "
        """'{"lmmem": {"timeout_s": 600}}')"""
    )
    return env_number(name, kind, None, minimum, what)


def env_count(name: str, default: int) -> int:
    """A whole number >= 1 from the environment (``default`` when unset), e.g. a cache size."""
    return int(env_number(name, int, default, 1, f"a whole number (unset it for {default})"))


def _env_role_settings() -> dict[str, dict[str, float]]:
    """Per-role model settings from ``MEMREC_ROLE_SETTINGS`` (JSON), e.g. a slower LMMem."""
    raw = os.environ.get("MEMREC_ROLE_SETTINGS", "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"MEMREC_ROLE_SETTINGS is not JSON ({err}); write e.g. "
            '\'{"lmmem": {"timeout_s": 600, "concurrency": 1}}\''
        ) from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("MEMREC_ROLE_SETTINGS must map a role (lmmem, llmrec) to its settings")
    return value


@dataclass(kw_only=True)
class MemRecContext:
    """How a run is configured: which data, which models, which budgets, which ablations."""

    dataset: str = field(
        default_factory=lambda: _env("MEMREC_DATASET", "ml-100k") or "ml-100k",
        metadata={"description": "indexed dataset name (or generic-format folder)"},
    )
    home: str | None = field(
        default_factory=lambda: _env("MEMREC_HOME"),
        metadata={"description": "store location (default ./.memrec or MEMREC_HOME)"},
    )
    chroma_url: str | None = field(
        default_factory=lambda: _env("MEMREC_CHROMA_URL"),
        metadata={"description": "Chroma server URL; empty = embedded store"},
    )
    roles: str = field(
        default_factory=lambda: _env("MEMREC_ROLES", "") or "",
        metadata={
            "description": "role preset: offline, standard, local, cloud-oss, local-qwen, ceiling"
        },
    )
    lmmem: str | None = field(
        default_factory=lambda: _env("MEMREC_LMMEM") or None,
        metadata={"description": "LMMem model spec, overrides the preset (env MEMREC_LMMEM)"},
    )
    llmrec: str | None = field(
        default_factory=lambda: _env("MEMREC_LLMREC") or None,
        metadata={"description": "LLMRec model spec, overrides the preset (env MEMREC_LLMREC)"},
    )
    base_url: str | None = field(
        default_factory=lambda: _env("MEMREC_BASE_URL") or None,
        metadata={"description": "OpenAI-compatible endpoint for both roles (MEMREC_BASE_URL)"},
    )
    timeout_s: float | None = field(
        default_factory=lambda: _env_number("MEMREC_TIMEOUT_S", float),
        metadata={
            "description": "seconds per model call attempt; empty = the endpoint's default "
            "(30 hosted, 300 local)"
        },
    )
    max_tokens: int | None = field(
        default_factory=lambda: _env_number("MEMREC_MAX_TOKENS", int, 1),
        metadata={"description": "cap on completion tokens per call; empty = per task"},
    )
    model_concurrency: int | None = field(
        default_factory=lambda: _env_number("MEMREC_MODEL_CONCURRENCY", int, 1),
        metadata={"description": "model calls in flight per role; empty = endpoint default"},
    )
    retries: int | None = field(
        default_factory=lambda: _env_number("MEMREC_RETRIES", int, 0),
        metadata={"description": "transport retries per call; empty = endpoint default"},
    )
    role_settings: dict[str, dict[str, float]] = field(
        default_factory=_env_role_settings,
        metadata={
            "description": "per-role overrides, e.g. {'lmmem': {'timeout_s': 600, "
            "'max_tokens': 900, 'concurrency': 1, 'retries': 0, 'stream': 1}}"
        },
    )
    k: int = field(default=16, metadata={"description": "curated neighbours"})
    min_users: int = field(default=4, metadata={"description": "at least this many users"})
    min_items: int = field(default=6, metadata={"description": "at least this many items"})
    tau: int = field(default=1800, metadata={"description": "token budget of neighbour context"})
    n_facets: int = field(default=7, metadata={"description": "maximum facets"})
    fanout_cap: int = field(default=8, metadata={"description": "neighbours patched per event"})
    collab_read: bool = field(default=True, metadata={"description": "use neighbours when ranking"})
    collab_write: bool = field(
        default=True, metadata={"description": "propagate interactions to memories"}
    )
    rules: Literal["generated", "generic"] = field(
        default="generated", metadata={"description": "curation rule set"}
    )
    curation: Literal["rules", "raw"] = field(
        default="rules", metadata={"description": "raw = uncurated neighbours (naive-collab)"}
    )
    memory: Literal["full", "own", "none"] = field(
        default="full", metadata={"description": "own = isolated memory, none = vanilla"}
    )
    user_id: str | None = field(
        default=None,
        metadata={"description": "chat: the user of runs that send only messages (a demo user)"},
    )
    pause_before: list[str] = field(
        default_factory=list,
        metadata={
            "description": "chat: pause inside the recommend subgraph before these nodes "
            "(curate, synthesize, rank); edit its state, then resume"
        },
    )

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None) -> MemRecContext:
        """Build from a dict (CLI, Studio, tools), ignoring keys that are not fields."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in names and v is not None})
