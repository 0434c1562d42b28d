"""One-line notices for every step where a model failed and the offline role answered.

Every user-facing output shows them (CLI text and JSON, graph ``notes``, chat replies, tool
results, eval tables): which step, which model was asked, and why it could not answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.records import CallUsage

WHAT = {
    "synthesize": "summarise the neighbours' tastes",
    "rank": "rank the candidates",
    "understand": "read the message",
    "respond": "write the reply",
    "reflect": "update the memories",
    "propagate": "update the memories",
    "generate_rules": "write the rule set",
    "profile": "write the user's memory",
}
OFFLINE_DOER = {"respond": "the template", "understand": "the offline reader"}


def fallback_notice(step: str, usage: CallUsage | Mapping[str, Any]) -> str | None:
    """``"<model> could not <do the step> (<why>); the offline role did"``, or None."""
    u = usage if isinstance(usage, CallUsage) else CallUsage.model_validate(usage)
    if not u.fallbacks:
        return None
    why = f" ({' '.join(u.fallback_reason.split())})" if u.fallback_reason else ""  # one line
    doer = OFFLINE_DOER.get(step, "the offline role")
    return f"model {u.model} could not {WHAT.get(step, step)}{why}, so {doer} did"


def fallback_notices(usage: Mapping[str, CallUsage | Mapping[str, Any]] | None) -> list[str]:
    """The notices of every step in a per-step usage mapping, in its order."""
    notes = [fallback_notice(step, u) for step, u in (usage or {}).items()]
    return [n for n in notes if n]
