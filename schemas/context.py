"""The run context of every MemRec graph (LangGraph ``context_schema``), edited in Studio.

Only the configuration lives here; ``memory_store.workspace.workspace_for`` opens the store a
context names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Literal


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


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
        metadata={"description": "role preset: offline, standard, cloud-oss, local-qwen, ceiling"},
    )
    lmmem: str | None = field(
        default=None, metadata={"description": "LMMem model spec, overrides the preset"}
    )
    llmrec: str | None = field(
        default=None, metadata={"description": "LLMRec model spec, overrides the preset"}
    )
    base_url: str | None = field(
        default=None, metadata={"description": "OpenAI-compatible endpoint for both roles"}
    )
    timeout_s: float = field(default=30.0, metadata={"description": "per model call"})
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
