"""A run may act only for the user who started it: the backstop under the server's auth.

On the LangGraph server every run carries its caller in ``config.configurable``
(``langgraph_auth_user_id`` and ``langgraph_auth_permissions``, set by the server, not by the
client). The server's auth handlers (``graph/auth.py``) refuse requests that name another user;
nodes that read or write a user's data call :func:`check_acting_user` as well, so a path those
handlers cannot see (a state edit, a future endpoint) still cannot act for someone else. Runs of
admins, of the server itself, and runs outside a server (library, CLI, tests) are not limited.
"""

from __future__ import annotations

from typing import Any

from langgraph.config import get_config

from nodes.roles import NeighbourSnippet

USER_PERMISSION = "user"  # what the server's auth grants a user token
INTERNAL_PERMISSION = "memrec:internal"  # the server's own background runs


class TenancyError(PermissionError):
    """A user's run tried to act for another user."""


def _configurable() -> dict[str, Any]:
    try:
        return get_config().get("configurable") or {}
    except RuntimeError:  # called outside a LangGraph run
        return {}


def run_user() -> str | None:
    """The user token this run belongs to; None for admins, the server, and runs off a server."""
    configurable = _configurable()
    if USER_PERMISSION not in (configurable.get("langgraph_auth_permissions") or ()):
        return None
    return str(configurable.get("langgraph_auth_user_id"))


def check_acting_user(user_id: str) -> None:
    """Raise TenancyError when this run belongs to a user token other than ``user_id``."""
    caller = run_user()
    if caller is not None and caller != user_id:
        raise TenancyError(
            f"this run belongs to user {caller!r} and may not act for user {user_id!r}"
        )


def shown_to_caller(snippets: list[NeighbourSnippet]) -> list[NeighbourSnippet]:
    """Neighbour context as kept in a user's thread state: other users' memory text withheld.

    Synthesis reads the curated neighbours' memories (that is collaborative memory); the state a
    user can read back keeps each neighbour's ref and score but not another user's memory text.
    """
    caller = run_user()
    if caller is None:
        return snippets
    return [
        s.model_copy(update={"text": WITHHELD})
        if s.kind == "user" and s.ref != f"user:{caller}"
        else s
        for s in snippets
    ]


WITHHELD = "(another user's memory: not shown)"
