"""Group commit: concurrent batched writes to one collection merged into one store write.

A store write (a Chroma upsert) costs a large fixed amount whatever its size (a transaction, an
fsync, index upkeep). When several propagations write at once, the first caller becomes the
leader and commits every request queued so far in one call; the others wait and get their own
part of the result. Compare-and-set holds per record: a request whose expected version another
request of the same group changed sees a conflict, exactly as if they had run one after the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memory_store.memories import BatchPut


@dataclass
class WriteRequest:
    """One caller's batch: ``(id, text, expected_version)`` rows, their source and vectors."""

    writes: Sequence[tuple[str, str, int]]
    source: str
    vectors: Any  # one embedding row per write
    result: BatchPut | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


# (kind, requests) -> fills every request's result; raising fails the whole group
Commit = Callable[[str, list[WriteRequest]], None]


class GroupCommit:
    """Merges concurrent ``submit`` calls per kind into one ``commit`` (module docstring)."""

    def __init__(self, commit: Commit, max_requests: int = 64) -> None:
        self._commit = commit
        self._max = max_requests
        self._cond = threading.Condition()
        self._queued: dict[str, list[WriteRequest]] = {}
        self._leading: set[str] = set()

    def submit(self, kind: str, request: WriteRequest) -> BatchPut:
        """Write ``request`` (possibly together with others); its own part of the result."""
        with self._cond:
            self._queued.setdefault(kind, []).append(request)
        while True:
            with self._cond:
                while not request.done and kind in self._leading:
                    self._cond.wait()
                if request.done:
                    return _outcome(request)
                queue = self._queued[kind]
                group, self._queued[kind] = queue[: self._max], queue[self._max :]
                self._leading.add(kind)
            self._lead(kind, group)

    def _lead(self, kind: str, group: list[WriteRequest]) -> None:
        """Commit one group; every request in it is done afterwards (result or error)."""
        try:
            self._commit(kind, group)
        except BaseException as err:  # noqa: BLE001 - handed to every caller of the group
            for req in group:
                req.error = req.error or err
        finally:
            with self._cond:
                for req in group:
                    req.done = True
                self._leading.discard(kind)
                self._cond.notify_all()


def _outcome(request: WriteRequest) -> BatchPut:
    if request.error is not None:
        raise request.error
    assert request.result is not None
    return request.result
