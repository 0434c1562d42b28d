"""State schemas of the privacy graph (an operator deletes a user or records an opt-out)."""

from __future__ import annotations

from typing import Any, Literal

from typing_extensions import TypedDict

PrivacyAction = Literal["delete", "opt-out", "opt-in"]


class PrivacyInput(TypedDict):
    """What the graph is asked to do."""

    user_id: str  # the user, exactly as indexed (spaces and quotes allowed)
    action: PrivacyAction  # delete, opt-out or opt-in


class PrivacyOutput(TypedDict, total=False):
    """What it did."""

    report: dict[str, Any]  # the deletion report (names no user), or {"recorded": action}


class PrivacyState(PrivacyInput, PrivacyOutput):
    """Input and output in one state (a single node)."""
