"""A run may act only for the user who started it: the backstop under the server's auth.

On the LangGraph server every run carries its caller in ``config.configurable``
(``langgraph_auth_user_id`` and ``langgraph_auth_permissions``, set by the server, not by the
client). The server's auth handlers (``services/auth.py``) refuse requests that name another user;
nodes that read or write a user's data call :func:`check_acting_user` as well, so a path those
handlers cannot see (a state edit, a future endpoint) still cannot act for someone else. Runs of
admins, of the server itself, and runs outside a server (library, CLI, tests) are not limited.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable
from typing import Any, TypeVar

from langgraph.config import get_config

from schemas.records import NeighbourSnippet

USER_PERMISSION = "user"  # what the server's auth grants a user token
INTERNAL_PERMISSION = "memrec:internal"  # the server's own background runs
INTERNAL_IDENTITY = "memrec-internal"  # reserved: no token may carry it
T = TypeVar("T")


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


# ------------------------------------------------------------------ the server's own identity


class InternalService:
    """The server's own identity for background runs it starts (never given to a token).

    Only code running inside the server process can hold one: HTTP callers get their user from
    the token table. It may start ``propagate`` runs and nothing else.
    """

    identity = INTERNAL_IDENTITY
    display_name = INTERNAL_IDENTITY
    is_authenticated = True
    permissions = (INTERNAL_PERMISSION,)

    def dict(self) -> dict[str, Any]:
        """JSON form (the server serialises a run's user this way)."""
        return {"identity": self.identity, "permissions": list(self.permissions)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InternalService)

    def __hash__(self) -> int:
        return hash(INTERNAL_IDENTITY)


def is_internal(user: object) -> bool:
    """Whether ``user`` is the server's own identity (by type: tokens cannot produce one)."""
    return isinstance(user, InternalService)


async def as_internal_service(call: Awaitable[T]) -> T:
    """Await ``call`` (an in-process SDK request) as the server's own identity.

    The in-process transport of langgraph-api 0.16 skips authentication and authorises with the
    identity of the request or run it is called from; this runs ``call`` in a copied context
    whose identity is :class:`InternalService`, so the caller's identity is untouched.
    """
    from langgraph_api.utils import set_auth_ctx

    def internal_context() -> contextvars.Context:
        set_auth_ctx(InternalService(), [INTERNAL_PERMISSION])
        return contextvars.copy_context()

    context = contextvars.copy_context().run(internal_context)
    task = asyncio.get_running_loop().create_task(_await(call), context=context)
    return await task


async def _await(call: Awaitable[T]) -> T:
    return await call
