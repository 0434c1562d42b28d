"""The leak check of an evaluation copy, run after the warm-up and before the first ranking.

A copy starts from the index (``memory_store/index_copy.py``) and the warm-up records only the
evaluated users' validation interactions, so its state has exactly two legitimate origins. The
check proves it on everything a ranking can read:

- event log: every interaction is an evaluated user's validation interaction;
- memories: every record is as indexing wrote it (version 1, source ``warmup``) or was written
  by one of those warm-up interactions; no evaluated user's own memory names their test target
  (``item:<id>``) unless that item is also in their train or validation history, or some user
  chose it in the warm-up (propagation then tells neighbours about it: "users like you chose");
- vectors: each evaluated user's memory vector and every item's is the embedding of the current
  text (nothing planted beside the text);
- facet cache: no cached facet of an evaluated user cites their test target.
"""

from __future__ import annotations

import numpy as np

from dataio.split import Split
from memory_store.facet_cache import facet_cache_for
from memory_store.index_copy import INITIAL_SOURCE
from memory_store.workspace import Workspace


class LeakageError(RuntimeError):
    """A test target reached the run's state before ranking: the run is invalid."""


def check_no_leak(ws: Workspace, split: Split, users: list[int]) -> None:
    """Raise LeakageError naming the first leak found in ``ws`` (see the module docstring)."""
    ids = ws.dataset
    wanted = set(users)
    valid = dict(zip(split.valid["user"].tolist(), split.valid["item"].tolist(), strict=True))
    test = dict(zip(split.test["user"].tolist(), split.test["item"].tolist(), strict=True))
    allowed = {(ids.user_ids[u], ids.item_ids[valid[u]]) for u in wanted if u in valid}
    events = ws.events.interactions()
    strays = [e for e in events if (e.user_id, e.item_id) not in allowed]
    if strays:
        held_out = [e for e in strays if test.get(ids.user_index.get(e.user_id, -1)) is not None]
        first = strays[0]
        raise LeakageError(
            f"{len(strays)} interactions in the run's event log are not warm-up (validation) "
            f"interactions ({len(held_out)} by evaluated users), e.g. user {first.user_id!r}, "
            f"item {first.item_id!r}"
        )
    _check_memories(ws, {e.interaction_id for e in events})
    targets = _unexplained_targets(ws, split, wanted, test)
    warm_items = {f"item:{e.item_id}" for e in events}  # a neighbour's warm-up choice may be
    targets = {u: ref for u, ref in targets.items() if ref not in warm_items}  # named legitimately
    _check_own_memories(ws, targets)
    _check_vectors(ws, users)
    _check_facets(ws, targets)


def _unexplained_targets(
    ws: Workspace, split: Split, users: set[int], test: dict[int, int]
) -> dict[str, str]:
    """Evaluated user id -> test target ref, for targets not also in their train/valid items."""
    seen: dict[int, set[int]] = {}
    for frame in (split.train, split.valid):
        for u, i in zip(frame["user"].tolist(), frame["item"].tolist(), strict=True):
            if u in users:
                seen.setdefault(u, set()).add(i)
    ids = ws.dataset
    return {
        ids.user_ids[u]: f"item:{ids.item_ids[test[u]]}"
        for u in users
        if u in test and test[u] not in seen.get(u, set())
    }


def _check_memories(ws: Workspace, warm_up_ids: set[str]) -> None:
    for kind in ("user", "item"):
        records = ws.memories.get_many(kind, ws.memories.ids(kind))
        for record in records.values():
            initial = record.version == 1 and record.source == INITIAL_SOURCE
            if not initial and record.source not in warm_up_ids:
                raise LeakageError(
                    f"{kind} memory {record.entity_id!r} (version {record.version}) was written "
                    f"by {record.source!r}, neither by indexing nor by a warm-up interaction"
                )


def _check_own_memories(ws: Workspace, targets: dict[str, str]) -> None:
    records = ws.memories.get_many("user", list(targets))
    for user_id, ref in targets.items():
        record = records.get(user_id)
        if record is not None and _names(record.text, ref):
            raise LeakageError(f"user {user_id!r}'s memory names their test target {ref}")


def _names(text: str, ref: str) -> bool:
    """Whether ``text`` contains the ref as a whole token (item:12 is not item:123)."""
    at = text.find(ref)
    while at >= 0:
        end = at + len(ref)
        if end == len(text) or not (text[end].isalnum() or text[end] in "_-"):
            return True
        at = text.find(ref, at + 1)
    return False


def _check_vectors(ws: Workspace, users: list[int]) -> None:
    ids = ws.dataset
    embed = ws.vectors.embedding.embed_texts
    user_ids = [ids.user_ids[u] for u in users]
    memories = ws.memories.get_many("user", user_ids)
    expected = embed([memories[u].text if u in memories else "" for u in user_ids])
    actual = ws.vectors.users[np.asarray(users, np.int64)]
    bad = np.flatnonzero(~np.isclose(expected, actual, atol=1e-5).all(axis=1))
    if len(bad):
        raise LeakageError(
            f"{len(bad)} evaluated users' memory vectors are not the embedding of their memory "
            f"(e.g. user {user_ids[int(bad[0])]!r})"
        )
    items = ws.memories.get_many("item", ids.item_ids)
    expected = embed([items[i].text if i in items else "" for i in ids.item_ids])
    bad = np.flatnonzero(~np.isclose(expected, ws.vectors.items, atol=1e-5).all(axis=1))
    if len(bad):
        raise LeakageError(
            f"{len(bad)} item memory vectors are not the embedding of their memory "
            f"(e.g. item {ids.item_ids[int(bad[0])]!r})"
        )


def _check_facets(ws: Workspace, targets: dict[str, str]) -> None:
    for refs, facets in facet_cache_for(ws).snapshot():
        owner = refs[0] if refs else ""  # an entry's first ref is the user it was made for
        target = targets.get(owner.removeprefix("user:")) if owner.startswith("user:") else None
        if target is None:
            continue
        for facet in facets:
            if target in facet.evidence or _names(f"{facet.name} {facet.description}", target):
                raise LeakageError(f"a cached facet of {owner} cites their test target {target}")
