"""The `load_context` node of the propagate graph: the event, its memories and <= fanout_cap nbrs.

Neighbours are chosen by the same rule set as curation (``curate_neighbours``), then cut to
``fanout_cap`` with a user/item mix (at least ``MIN_PER_KIND`` of each kind where the pool has
them); the interacted item itself (updated on its own) and opted-out users are never among them.
The call also gets the user's collaborative facets (M_collab): the latest synthesized ones from the
facet cache, else the offline synthesis of the curated pool (no model call). A replayed
interaction whose user rewrite is already written (it is written last, ``already_propagated``)
loads with a skip reason: no model call and no write follow.

What a propagation may write depends on the run's switches (``write_scope``): everything (user,
item, neighbours); only the user's own memory (``collab_write=False`` or ``memory="own"``); or
nothing (``memory="none"``, vanilla). The interaction is recorded in the graph in every case.

Exactly once: the node first takes part in the job claim protocol (``memory_store/claims.py``):
it runs under the runner's claim (``lease_owner``) or claims the job itself; a run that does not
get the claim loads with a skip reason and leaves the job alone. The fan-out is the one stored
with the job when an earlier attempt chose it, and a model answer an earlier attempt kept is
handed on, so a retry makes no second call.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from langgraph.config import get_config
from langgraph.runtime import Runtime

from memory_store.claims import RunClaim, claim_for_run, fixed_fanout, run_owner, stored_answer
from memory_store.facet_cache import facet_cache_for
from memory_store.memories import MemoryKind
from memory_store.workspace import UnknownEntity, Workspace, aworkspace_for
from memory_store.writes import apply_write
from nodes.curate import curate_neighbours
from roles.offline_roles import OfflineLMMem
from schemas.context import MemRecContext
from schemas.propagate_state import LoadedContext, PropagateState
from schemas.recommend_state import CuratedNeighbour
from schemas.records import (
    Facet,
    InteractionEvent,
    NeighbourSnippet,
    PropagationInput,
    PropagationResult,
    SynthesisInput,
)

ALREADY_PROPAGATED = "already propagated (replayed job)"


def resolve_event(ws: Workspace, interaction_id: str | None, event: Any = None) -> InteractionEvent:
    """The event given in full, or read from the log by id (LookupError when it is not there)."""
    if event is not None:
        return InteractionEvent.model_validate(event)
    if not interaction_id:
        raise ValueError("propagate needs an interaction_id (recorded in the event log) or event")
    found = ws.events.get_interaction(interaction_id)
    if found is None:
        raise LookupError(
            f"interaction {interaction_id!r} is not in the event log of {ws.name}; record it "
            "first (record_interaction / memrec feedback)"
        )
    return found


PROPAGATION_POOL = 16  # neighbours curated before the best fanout_cap are kept
MIN_PER_KIND = 2  # users and items each get at least this many of the fan-out, where available
HISTORY_TITLES = 200  # titles of the user's own items the screen accepts in a rewrite
POSITIONS_BELOW = 1e8  # timestamps below (before 1973) are sequence positions, not times

WriteScope = Literal["all", "user", "none"]


def write_scope(ctx: MemRecContext) -> WriteScope:
    """What a propagation under ``ctx`` writes: all memories, the user's own only, or nothing."""
    if ctx.memory == "none":
        return "none"
    if not ctx.collab_write or ctx.memory == "own":
        return "user"
    return "all"


def curate_pool(
    ws: Workspace, ctx: MemRecContext, event: InteractionEvent
) -> list[CuratedNeighbour]:
    """The acting user's curated neighbours by the rule set, minus the item and opted-out users."""
    user = ws.user_code(event.user_id)
    # The write path curates by the rules whatever the read side asks for (k, raw curation),
    # so the same interaction propagates the same way for every read configuration.
    write_ctx = replace(ctx, k=max(PROPAGATION_POOL, ctx.fanout_cap), curation="rules")
    with ws.lock:
        curated = curate_neighbours(ws, user, ws.rules(ctx.rules), write_ctx)
    excluded_refs = {f"item:{event.item_id}", f"user:{event.user_id}"}
    excluded_refs |= {f"user:{ws.dataset.user_ids[code]}" for code in ws.opted_out}
    kept = [n for n in curated if n.ref not in excluded_refs]
    kept.sort(key=lambda n: (-n.score, n.ref))
    return kept


def mixed_fanout(pool: list[CuratedNeighbour], cap: int) -> list[CuratedNeighbour]:
    """The best ``cap`` of ``pool`` (sorted best first) with >= MIN_PER_KIND users and items.

    Scores of user and item neighbours are on different scales, so a plain top-``cap`` can be all
    users; the minimum keeps both halves of the memory graph in every propagation.
    """
    cap = max(0, cap)
    floor = min(MIN_PER_KIND, cap // 2)
    chosen = [n for n in pool if n.kind == "user"][:floor]
    chosen += [n for n in pool if n.kind == "item"][:floor]
    rest = [n for n in pool if n not in chosen]
    chosen += rest[: cap - len(chosen)]
    return sorted(chosen, key=lambda n: (-n.score, n.ref))


def collab_facets(
    ws: Workspace, ctx: MemRecContext, event: InteractionEvent, pool: list[CuratedNeighbour]
) -> list[Facet]:
    """M_collab for the call: the user's latest cached facets, else the offline synthesis."""
    cached = facet_cache_for(ws).latest_for(f"user:{event.user_id}")
    if cached is not None:
        return cached[: ctx.n_facets]
    snippets = [NeighbourSnippet(ref=n.ref, kind=n.kind, text="", score=n.score) for n in pool]
    with ws.lock:
        facets = OfflineLMMem(ws).facets(
            SynthesisInput(
                user_id=event.user_id, user_memory="", neighbours=snippets, max_facets=ctx.n_facets
            )
        )
    return facets.facets


def event_date(ws: Workspace, event: InteractionEvent) -> str:
    """The event's date as YYYY-MM-DD, or '' when the dataset orders by position, not time."""
    if not ws.dataset.has_clock or event.ts < POSITIONS_BELOW:
        return ""
    return datetime.fromtimestamp(event.ts, tz=UTC).date().isoformat()


def already_propagated(ws: Workspace, event: InteractionEvent) -> bool:
    """Whether this interaction's user rewrite (its last write) is already in the store."""
    if ws.events.applied(event.interaction_id, "user", event.user_id):
        return True
    current = ws.memories.get("user", event.user_id)
    if current is None or current.source != event.interaction_id:
        return False
    # written but not audited (the process died in between): apply_write repairs the audit row
    apply_write(ws.memories, ws.events, "user", event.user_id, current.text, cause=current.source)
    ws.on_memory_write("user", event.user_id, current.text, version=current.version)
    return True


def load_propagation_context(
    ws: Workspace, ctx: MemRecContext, event: InteractionEvent, claim: RunClaim | None = None
) -> LoadedContext:
    """Validate the ids (UnknownEntity, nothing written) and read every memory involved.

    With ``claim``, a run that does not hold the job skips, and the fan-out is the job's own.
    """
    ws.user_code(event.user_id)
    item_code = ws.item_code(event.item_id)
    user_rec = ws.memories.get("user", event.user_id)
    item_rec = ws.memories.get("item", event.item_id)
    if user_rec is None or item_rec is None:
        missing = "user" if user_rec is None else "item"
        raise UnknownEntity(
            f"{missing} {event.user_id if user_rec is None else event.item_id!r} has no memory in "
            f"{ws.name}; re-run `memrec index` so every user and item has one"
        )
    versions = {
        f"user:{event.user_id}": user_rec.version,
        f"item:{event.item_id}": item_rec.version,
    }
    scope = write_scope(ctx)
    skip = claim.refusal if claim is not None else None
    if skip is None and scope == "none":
        skip = "no memory to write (memory='none')"
    answer = stored_answer(claim) if claim is not None and not skip else None
    # with a kept answer the writes are re-applied (each skipped when made): no shortcut needed
    if skip is None and answer is None and already_propagated(ws, event):
        skip = ALREADY_PROPAGATED
    neighbours: list[NeighbourSnippet] = []
    facets: list[Facet] = []
    if skip is None and scope == "all":
        pool = curate_pool(ws, ctx, event)
        neighbours = _snippets(ws, _fanout(ws, ctx, event, claim, pool), versions)
        facets = collab_facets(ws, ctx, event, pool)
    inp = PropagationInput(
        event=event,
        item_title=ws.title(item_code),
        user_memory=user_rec.text,
        item_memory=item_rec.text,
        neighbours=neighbours,
        facets=facets,
        when=event_date(ws, event),
        dataset=ws.name,
    )
    titles, attributes = catalogue_names(ws, event, neighbours)
    return LoadedContext(
        event=event,
        inp=inp,
        versions=versions,
        skip_reason=skip,
        owner=claim.owner if claim is not None else None,
        own_claim=claim is not None and claim.outcome == "claimed" and claim.self_claimed,
        stored_answer=PropagationResult.model_validate(answer["result"]) if answer else None,
        scope="user" if scope == "user" else "all",
        titles=titles,
        attributes=attributes,
        catalogue={
            ref: ws.dataset.item_texts[ws.item_code(ref.split(":", 1)[1])]
            for ref in [f"item:{event.item_id}", *(n.ref for n in neighbours if n.kind == "item")]
        },
    )


def _fanout(
    ws: Workspace,
    ctx: MemRecContext,
    event: InteractionEvent,
    claim: RunClaim | None,
    pool: list[CuratedNeighbour],
) -> list[tuple[str, float]]:
    """The job's fan-out (chosen once, kept with the job), minus users who opted out since."""

    def choose() -> list[tuple[str, float]]:
        return [(n.ref, n.score) for n in mixed_fanout(pool, ctx.fanout_cap)]

    if claim is None:
        return choose()
    fanout = fixed_fanout(ws.events, claim, event.interaction_id, choose)
    gone = {f"user:{ws.dataset.user_ids[code]}" for code in ws.opted_out}
    return [(ref, score) for ref, score in fanout if ref not in gone]


def catalogue_names(
    ws: Workspace, event: InteractionEvent, neighbours: list[NeighbourSnippet]
) -> tuple[list[str], list[str]]:
    """Titles of the user's items (and the item) and the attribute names of those and nbrs."""
    codes = ws.graph.user_item_times(ws.user_code(event.user_id))[0][-HISTORY_TITLES:].tolist()
    codes.append(ws.item_code(event.item_id))
    titles = sorted({ws.title(int(c)) for c in codes})
    codes += [ws.item_code(n.ref.split(":", 1)[1]) for n in neighbours if n.kind == "item"]
    attributes = ws.dataset.item_attributes
    names = {a for c in codes for a in (attributes[int(c)] if attributes else [])}
    return titles, sorted(names)


def _snippets(
    ws: Workspace, chosen: list[tuple[str, float]], versions: dict[str, int]
) -> list[NeighbourSnippet]:
    """Neighbour memories for the chosen refs (refs without a memory are left out)."""
    by_kind: dict[str, list[str]] = {"user": [], "item": []}
    for ref, _ in chosen:
        kind, entity = ref.split(":", 1)
        by_kind[kind].append(entity)
    records = {
        kind: ws.memories.get_many(kind, ids)  # type: ignore[arg-type]
        for kind, ids in by_kind.items()
        if ids
    }
    out = []
    for ref, score in chosen:
        kind, entity = ref.split(":", 1)
        rec = records.get(kind, {}).get(entity)
        if rec is None:
            continue
        versions[ref] = rec.version
        title = ws.title(ws.item_code(entity)) if kind == "item" else ""
        out.append(
            NeighbourSnippet(ref=ref, kind=_kind(kind), text=rec.text, score=score, title=title)
        )
    return out


def _kind(kind: str) -> MemoryKind:
    return "user" if kind == "user" else "item"


async def load_context(state: PropagateState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: resolve the event (by id from the log, or given) and load its context."""
    ctx = runtime.context or MemRecContext()
    ws = await aworkspace_for(ctx)
    runner = state.get("lease_owner")
    owner = run_owner(runner, _run_id())

    def load() -> tuple[InteractionEvent, LoadedContext]:
        event = resolve_event(ws, state.get("interaction_id"), state.get("event"))
        claim = claim_for_run(ws.events, event.interaction_id, owner, self_claimed=not runner)
        return event, load_propagation_context(ws, ctx, event, claim)

    event, loaded = await asyncio.to_thread(load)  # one hop: log, store and graph reads
    return {"interaction_id": event.interaction_id, "loaded": loaded}


def _run_id() -> str | None:
    """The LangGraph run id (the server sets it; it is the same when the run is replayed)."""
    try:
        configurable = get_config().get("configurable") or {}
    except RuntimeError:  # called outside a graph run
        return None
    run_id = configurable.get("run_id")
    return str(run_id) if run_id else None
