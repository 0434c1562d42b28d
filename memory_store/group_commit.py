"""Group commit: concurrent batched writes merged into one store write per collection.

A store write (a Chroma upsert) costs a large fixed amount whatever its size (SQLite
transactions with their fsyncs, index upkeep), and the embedded Chroma client holds the GIL for
all of it, so nothing else in the process runs meanwhile. When several propagations write at once,
the first caller becomes the leader and commits every request queued so far, one call per kind;
the others wait and get their own part of the result. Compare-and-set holds per record: a request
whose expected version another request of the same group changed sees a conflict, exactly as if
they had run one after the other.

A request may hold batches of several kinds (a propagation's item memories, then its user
memories): a group commits its kinds in an order every request in it agrees with, and a request's
kind is attempted only when its earlier kinds were written in full, so each caller's order holds
(the user memory written last marks a complete propagation). A kind's commit that fails fails the
kinds after it too, never the ones before; one that lost a compare-and-set comes back to its
caller with the kinds after it not attempted.

Writers announce themselves (:meth:`GroupCommit.expect`: a cause and the kinds it is about to
write) before they read and compute their texts. A leader waits, at most ``linger_s``, while
announced writers have not queued yet: jobs whose model answers came back together then share one
upsert per kind instead of writing one after the other. Under load (the last group merged
several requests), a leader also waits up to ``gather_s`` for ``min_group`` requests, as
PostgreSQL's ``commit_delay`` does when ``commit_siblings`` are active: on the ml-100k propagation
bench (8 model calls in flight) 15 ms for 3 cut the user-memory upserts from ~160 to ~100 per 240
jobs. A lone writer never waits for announcements, and after a group of one not for a group.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from memory_store.memories import BatchPut, PartialPut

LINGER_S = 0.05  # the longest a leader waits for announced writers
GATHER_S = 0.015  # under load, the longest a leader waits for MIN_GROUP requests
MIN_GROUP = 3


@dataclass
class WriteRequest:
    """One caller's batch of one kind: ``(id, text, expected_version)`` rows, source, vectors."""

    writes: Sequence[tuple[str, str, int]]
    source: str
    vectors: Any  # one embedding row per write
    result: BatchPut | None = None
    error: BaseException | None = None
    skipped: bool = False  # not attempted: an earlier kind of its submission was not all written


@dataclass
class _Submission:
    """One caller's batches, kind by kind in the caller's order."""

    parts: list[tuple[str, WriteRequest]]
    done: bool = field(default=False)

    @property
    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.parts]


# (kind, requests) -> fills every request's result; raising fails the group from that kind on
Commit = Callable[[str, list[WriteRequest]], None]


class GroupCommit:
    """Merges concurrent ``submit`` calls into one ``commit`` per kind (module docstring)."""

    def __init__(
        self,
        commit: Commit,
        max_requests: int = 64,
        linger_s: float = LINGER_S,
        gather_s: float = GATHER_S,
        min_group: int = MIN_GROUP,
    ) -> None:
        self._commit = commit
        self._max = max_requests
        self.linger_s = linger_s
        self.gather_s = gather_s
        self.min_group = min_group
        self._last_group = 0  # requests in the last group: more than one means load
        self._cond = threading.Condition()
        self._queued: list[_Submission] = []
        self._leading = False
        self._pending: dict[str, set[str]] = {}  # cause -> kinds announced, not submitted yet
        self._depth: Counter[str] = Counter()  # cause -> open announcements (nesting)

    @contextmanager
    def expect(self, cause: str, kinds: Iterable[str]) -> Iterator[None]:
        """Announce that ``cause`` is about to submit writes of ``kinds``.

        A leader waits for this writer's request (up to ``linger_s``). Leaving the block
        withdraws what was not submitted (nothing to write, an error). A nested announcement of
        the same cause replaces the outer one (it knows the kinds exactly), and leaving it
        withdraws the rest: its writes are done.
        """
        with self._cond:
            self._depth[cause] += 1
            self._pending[cause] = set(kinds)
        try:
            yield
        finally:
            with self._cond:
                self._depth[cause] -= 1
                self._pending[cause] = set()
                if not self._depth[cause]:
                    del self._depth[cause], self._pending[cause]
                self._cond.notify_all()

    def submit(self, parts: Sequence[tuple[str, WriteRequest]]) -> list[BatchPut | None]:
        """Write every ``(kind, request)`` in order, possibly with others'; their results.

        A kind is attempted only when every earlier kind of ``parts`` was written in full (no
        compare-and-set conflict); otherwise it comes back as None, not attempted, for the caller
        to write once the earlier ones are settled. A kind whose commit failed raises
        :class:`PartialPut` with the outcomes of the kinds before it (written) and its error.
        """
        mine = _Submission(list(parts))
        if len(set(mine.kinds)) != len(mine.parts):
            raise ValueError(f"one request per kind, in order; got kinds {mine.kinds}")
        with self._cond:
            self._queued.append(mine)
            for kind, request in mine.parts:
                self._pending.get(request.source, set()).discard(kind)
            self._cond.notify_all()
        while True:
            with self._cond:
                while not mine.done and self._leading:
                    self._cond.wait()
                if mine.done:
                    return _outcomes(mine)
                self._leading = True
                self._linger()
                group, order = _compatible(self._queued, self._max)
                self._last_group = len(group)
                self._queued = [s for s in self._queued if not any(s is g for g in group)]
            self._lead(group, order)

    def _linger(self) -> None:
        """As leader, wait (lock held) while announced writers have yet to queue."""
        start = time.monotonic()
        deadline = start + self.linger_s  # for announced writers
        gather = start + (self.gather_s if self._last_group > 1 else 0.0)  # for a bigger group
        while len(self._queued) < self._max:
            now = time.monotonic()
            waits = []
            if any(self._pending.values()) and now < deadline:
                waits.append(deadline - now)
            if len(self._queued) < self.min_group and now < gather:
                waits.append(gather - now)
            if not waits:
                return
            self._cond.wait(max(waits))

    def _lead(self, group: list[_Submission], order: list[str]) -> None:
        """Commit one group kind by kind; every submission in it is done afterwards."""
        try:
            failed: BaseException | None = None
            for kind in order:
                requests = [r for s in group for k, r in s.parts if k == kind]
                if failed is not None:
                    for req in requests:
                        req.error = failed
                    continue
                ready = [r for r in requests if not r.skipped]
                if not ready:
                    continue
                try:
                    self._commit(kind, ready)
                except BaseException as err:  # noqa: BLE001 - handed to every caller of the group
                    failed = err
                    for req in ready:
                        req.error = req.error or err
                for submission in group:
                    _skip_after_conflicts(submission, kind)
        finally:
            with self._cond:
                for submission in group:
                    submission.done = True
                self._leading = False
                self._cond.notify_all()


def _compatible(queued: list[_Submission], limit: int) -> tuple[list[_Submission], list[str]]:
    """The queued submissions (oldest first, at most ``limit``) whose kind orders agree.

    Returns them and the kind order to commit in; the rest wait for the next group.
    """
    group: list[_Submission] = []
    order: list[str] = []
    for submission in queued:
        if len(group) == limit:
            break
        merged = _merge_order(order, submission.kinds)
        if merged is not None:
            group.append(submission)
            order = merged
    return group, order


def _merge_order(order: list[str], kinds: list[str]) -> list[str] | None:
    """``order`` extended so that ``kinds`` keep their relative order in it, or None if they can't.

    New kinds go right after the previous kind of the request (or first), so only a request that
    reverses two kinds already ordered is refused.
    """
    out = list(order)
    at = -1
    for kind in kinds:
        if kind in out:
            found = out.index(kind)
            if found < at:
                return None
            at = found
        else:
            at += 1
            out.insert(at, kind)
    return out


def _skip_after_conflicts(submission: _Submission, kind: str) -> None:
    """After ``kind``'s commit: a part that lost a compare-and-set stops the parts after it."""
    kinds = submission.kinds
    if kind not in kinds:
        return
    request = submission.parts[kinds.index(kind)][1]
    if request.skipped or (request.result is not None and request.result.conflicts):
        for _, later in submission.parts[kinds.index(kind) + 1 :]:
            later.skipped = True


def _outcomes(submission: _Submission) -> list[BatchPut | None]:
    """Each part's result (None: not attempted); PartialPut when a part failed."""
    results: list[BatchPut | None] = []
    for _, request in submission.parts:
        if request.error is not None:
            results += [None] * (len(submission.parts) - len(results))
            raise PartialPut(results, request.error) from request.error
        results.append(None if request.skipped else request.result)
    return results


def per_batch(batches: Sequence[Any], results: list[BatchPut | None]) -> list[BatchPut | None]:
    """Results per submitted part back to one per batch (an empty batch wrote nothing)."""
    parts = iter(results)
    out: list[BatchPut | None] = []
    for _, writes, _ in batches:
        out.append(next(parts) if writes else BatchPut())
        if out[-1] is None:  # an earlier kind lost a race or failed: the later ones were not tried
            out.extend(None for _ in range(len(batches) - len(out)))
            break
    return out
