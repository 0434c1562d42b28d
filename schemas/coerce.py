"""Reducers that accept a field's models as plain JSON, so Studio's state editor can write them.

LangGraph applies a channel's reducer to every write, including ``update_state`` (what Studio's
editor and the SDK send: dicts, not pydantic objects). ``latest(T)`` keeps the newest value like a
plain field but validates it into ``T`` first, so a node never meets a dict where it expects a
model and a bad edit is refused with pydantic's message instead of breaking every later turn.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter


@lru_cache(maxsize=64)
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def coerce(tp: Any, value: Any) -> Any:
    """``value`` validated into ``tp`` (models stay as they are; dicts become models)."""
    return _adapter(tp).validate_python(value)


@lru_cache(maxsize=64)
def latest(tp: Any) -> Callable[[Any, Any], Any]:
    """Reducer: the newest value wins, validated into ``tp`` (a JSON edit becomes the model)."""

    def replace(_old: Any, new: Any) -> Any:
        return coerce(tp, new)

    replace.__name__ = f"latest_{getattr(tp, '__name__', 'value')}"
    replace.__qualname__ = replace.__name__
    return replace
