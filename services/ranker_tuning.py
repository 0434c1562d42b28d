"""Index-time tuning of the offline ranker, on the validation target of the indexed dataset only.

Every dataset (and every generic-format folder) gets its own parameters and weights:

1. the own-history channels take the parameters of the best recency-weighted kNN and the best
   transition model (with a popularity prior) on validation H@1 (grids in
   ``memory_store/item_models.py``): fitted on train, ranking each user's validation candidates;
2. every channel is computed for those candidates as full MemRec serves them (curated neighbours
   and offline facets included) from the train graph and the index-time memories; its scale is
   the 95th percentile of its positive values;
3. channel groups (neighbours: ``votes`` + ``facets``; memories: ``mem_user`` + ``mem_item``)
   are kept only where they add lift on validation: 2-fold cross-validated H@1 over the
   validation users, with and without the group (neighbours: on a seeded probe of users first);
4. the weights of the kept channels maximise the validation likelihood (conditional logit).

The test target is never read. The result is ``ranker.json`` in the store folder
(``memory_store.ranker_index.RankerConfig``), reported by ``memrec index``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dataio.candidates import CandidateFile, candidates_path, read_candidates
from dataio.dataset import Dataset
from dataio.split import Split
from dataio.ties import h1_mrr, target_ranks
from memory_store.events import EventLog
from memory_store.graph import InteractionGraph
from memory_store.inmemory_store import InMemoryMemoryStore
from memory_store.item_models import (
    KNN_GRID,
    best_point,
    grid,
    knn_sweep,
    transition_sweep,
)
from memory_store.memories import MemoryStore
from memory_store.ranker_index import (
    CHANNELS,
    RANKER_FILE,
    RankerConfig,
    RankerIndex,
    RankerParams,
    default_config,
    graph_sequences,
)
from memory_store.vectors import MemoryVectors
from memory_store.workspace import Workspace
from nodes.curate import curate_neighbours
from nodes.synthesize import pack_neighbours
from roles.offline_ranker import Reads, blend, channel_scales, fit_weights, request_channels
from roles.offline_ranking import facet_vector, offline_facets, voters
from schemas.context import MemRecContext
from schemas.records import NeighbourSnippet, RankingInput, SynthesisInput
from schemas.ruleset import RuleSet

log = logging.getLogger(__name__)

MAX_TUNING_USERS = 10000  # a seeded sample above this (statistically plenty, bounds index time)
NEIGHBOUR_PROBE = 2000  # users whose curated neighbours decide whether neighbour channels lift
SEED = 0
# The ranker reads transitions both ways (``trans``, ``trans_back``), so only their shared
# parameters are tuned here, with the popularity prior the blend also has.
TRANSITION_GRID = grid(
    direction=["both"],
    gap=[1, 3, 5, 10],
    window=[1, 3, 5, 10, 20],
    decay=[0.5, 0.8, 1.0],
    alpha=[1.0, 10.0],
    beta=[0.0, 0.01, 0.03, 0.1, 0.3],
    pop=["log", "linear"],
)
GROUPS: dict[str, tuple[str, ...]] = {
    "neighbours": ("votes", "facets"),
    "memories": ("mem_user", "mem_item"),
}


class NotTunable(ValueError):
    """The validation data cannot support tuning (too few users with a candidate list)."""


def tuning_users(split: Split, cands: CandidateFile, limit: int = MAX_TUNING_USERS) -> np.ndarray:
    """Validation users with a candidate list; a seeded sample of ``limit`` when there are more."""
    users = np.asarray(sorted(u for u in split.valid["user"].tolist() if u in cands.users))
    if len(users) > limit:
        users = np.sort(np.random.default_rng(SEED).choice(users, size=limit, replace=False))
    return users


def tune_ranker(ws: Workspace, cands: CandidateFile, limit: int = MAX_TUNING_USERS) -> RankerConfig:
    """Tune the ranker on the validation target of ``ws`` (its graph must be the train graph)."""
    start, cpu = time.perf_counter(), time.process_time()
    split, graph = ws.split, ws.graph
    users = tuning_users(split, cands, limit)
    if len(users) < 2:
        raise NotTunable(f"{len(users)} validation users with candidates: at least 2 are needed")
    by_user = dict(zip(split.valid["user"].tolist(), split.valid["item"].tolist(), strict=True))
    targets = np.asarray([by_user[u] for u in users.tolist()], np.int64)
    rows = np.asarray([cands.users[u] for u in users.tolist()], np.int64)
    seqs = graph_sequences(graph)
    pop = graph.item_degree
    knn = best_point(knn_sweep(seqs, users, rows, pop, KNN_GRID), users, rows, targets, KNN_GRID)
    trans = best_point(
        transition_sweep(seqs, users, rows, pop, TRANSITION_GRID),
        users,
        rows,
        targets,
        TRANSITION_GRID,
    )
    sweep_seconds = time.perf_counter() - start
    params = RankerParams(
        **{k: knn.params[k] for k in ("k", "shrink", "tau")},
        **{k: trans.params[k] for k in ("gap", "window", "decay", "alpha")},
    )
    data = _Validation(users, rows, targets)
    with _TuningIndex(ws, params) as index:
        channels = served_channels(ws, index, users, rows, neighbours=False)
        kept, lift = _select(ws, index, data, channels)
    scales = channel_scales(channels)
    chosen = {n: v for n, v in channels.items() if n in kept}
    fit = fit_weights(chosen, scales, rows, targets, l2=_l2(len(users)))
    h1, mrr = h1_mrr(target_ranks(blend(chosen, fit.weights, scales), users, rows, targets))
    report: dict[str, Any] = {
        "valid_users": len(users),
        "valid_h1": round(h1, 4),
        "valid_mrr": round(mrr, 4),
        "knn": {"params": knn.params, "valid_h1": round(knn.valid_h1, 4)},
        "transition": {"params": trans.params, "valid_h1": round(trans.valid_h1, 4)},
        "solo_valid_h1": {
            n: round(h1_mrr(target_ranks(v, users, rows, targets))[0], 4)
            for n, v in channels.items()
            if v.shape[0] == len(users)
        },
        "group_lift_cv_h1": lift,
        "channels_kept": sorted(kept, key=CHANNELS.index),
        "seconds": round(time.perf_counter() - start, 2),
        "cpu_seconds": round(time.process_time() - cpu, 2),  # wall varies with the machine's load
        "sweep_seconds": round(sweep_seconds, 2),
    }
    log.info("ranker tuned on %d validation users: H@1 %.4f", len(users), h1)
    return RankerConfig(
        params=params,
        weights=fit.weights,
        scales={n: round(s, 6) for n, s in scales.items() if n in kept},
        tuned=True,
        report=report,
    )


class _Validation:
    """The tuning users, their validation candidate rows and targets."""

    def __init__(self, users: np.ndarray, rows: np.ndarray, targets: np.ndarray) -> None:
        self.users, self.rows, self.targets = users, rows, targets

    def subset(self, picked: np.ndarray) -> _Validation:
        """The same for a subset of the users (positions)."""
        return _Validation(self.users[picked], self.rows[picked], self.targets[picked])


class _TuningIndex:
    """A ranker index with the candidate parameters, served by ``ws`` while tuning runs."""

    def __init__(self, ws: Workspace, params: RankerParams) -> None:
        self.ws = ws
        self.index = RankerIndex(ws.graph, params)

    def __enter__(self) -> RankerIndex:
        self.ws.derived["ranker"] = (self.index, RankerConfig(params=self.index.params, weights={}))
        return self.index

    def __exit__(self, *exc: object) -> None:
        self.ws.graph.listeners.remove(self.index)  # not kept with the graph
        self.ws.derived.pop("ranker", None)


def _select(
    ws: Workspace, index: RankerIndex, data: _Validation, channels: dict[str, np.ndarray]
) -> tuple[set[str], dict[str, float]]:
    """Channels kept, and the cross-validated lift of each group (see ``_group_lift``).

    The neighbour channels cost a curation per user, so their lift is measured on a seeded
    probe of ``NEIGHBOUR_PROBE`` users first; only if they lift there are they computed for all.
    """
    kept = set(channels)
    lift: dict[str, float] = {}
    order = np.random.default_rng(SEED).permutation(len(data.users))
    probe = np.sort(order[:NEIGHBOUR_PROBE])
    sample = data.subset(probe)
    extra = served_channels(ws, index, sample.users, sample.rows, neighbours=True, own=False)
    probed = {n: v[probe] for n, v in channels.items()} | extra
    lift["neighbours"] = _group_lift(probed, kept | set(extra), set(extra), sample)
    if lift["neighbours"] > 0:
        rest = np.sort(order[NEIGHBOUR_PROBE:])
        more = data.subset(rest)
        others = served_channels(ws, index, more.users, more.rows, neighbours=True, own=False)
        for name, values in extra.items():
            full = np.zeros((len(data.users), values.shape[1]))
            full[probe] = values
            if len(rest):
                full[rest] = others[name]
            channels[name] = full
        kept |= set(extra)
    memories = {n for n in GROUPS["memories"] if n in channels}
    if memories:
        lift["memories"] = _group_lift(channels, kept, memories, data)
        if lift["memories"] <= 0:
            kept -= memories
    return kept, lift


def served_channels(
    ws: Workspace,
    index: RankerIndex,
    users: np.ndarray,
    rows: np.ndarray,
    *,
    neighbours: bool,
    own: bool = True,
) -> dict[str, np.ndarray]:
    """Channels of each user's candidates, computed as full MemRec serves them.

    ``own``: the history, prior and memory channels. ``neighbours``: the recommend graph's own
    steps make the inputs (``curate`` picks neighbours by the generated rules, ``synthesize``
    packs them into tau tokens, the offline LMMem writes the facets), then ``votes`` and
    ``facets`` are computed from them.
    """
    ctx = MemRecContext(dataset=ws.name, roles="offline")
    rules = ws.rules(ctx.rules)
    group = GROUPS["neighbours"]
    names = [n for n in CHANNELS if (n in group and neighbours) or (n not in group and own)]
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for user, cands in zip(users.tolist(), rows, strict=True):
        found, facets = None, None
        if neighbours:
            found, facets = _collaborative_inputs(ws, index, user, rules, ctx)
        values = request_channels(index, ws.vectors, user, cands, Reads(own=own), found, facets)
        for name in names:
            out[name].append(values.get(name, np.zeros(len(cands))))
    return {name: np.vstack(v) if v else np.zeros((0, rows.shape[1])) for name, v in out.items()}


def _collaborative_inputs(
    ws: Workspace, index: RankerIndex, user: int, rules: RuleSet, ctx: MemRecContext
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | None]:
    """The voters and the facet vector that curate + synthesize give the ranker for ``user``."""
    curated = curate_neighbours(ws, user, rules, ctx)
    packed = pack_neighbours(ws, curated, ctx.tau)
    user_id = ws.dataset.user_ids[user]
    synthesis = SynthesisInput(
        user_id=user_id, user_memory="", neighbours=packed, max_facets=ctx.n_facets
    )
    facets = offline_facets(ws, synthesis, index).facets
    snippets = [NeighbourSnippet(ref=n.ref, kind=n.kind, text="", score=n.score) for n in curated]
    codes, weights, _ = voters(ws, index, user, snippets)
    inp = RankingInput(user_id=user_id, user_memory="-", facets=facets, candidates=[])
    return (codes, weights), facet_vector(ws, inp)


def _l2(n_users: int) -> float:
    """Ridge on the weights: negligible with thousands of users, stronger on small folders."""
    return 1e-4 + 1.0 / max(n_users, 1)


def _group_lift(
    channels: dict[str, np.ndarray], names: set[str], group: set[str], data: _Validation
) -> float:
    """2-fold cross-validated validation H@1 with the group minus without it."""
    folds = np.random.default_rng(SEED).permutation(len(data.users)) % 2
    scales = channel_scales({n: channels[n] for n in names})
    with_group = _cv_h1(channels, names, scales, data, folds)
    without = _cv_h1(channels, names - group, scales, data, folds)
    return round(with_group - without, 4)


def _cv_h1(
    channels: dict[str, np.ndarray],
    names: set[str],
    scales: dict[str, float],
    data: _Validation,
    folds: np.ndarray,
) -> float:
    """H@1 of each half of the users under weights fitted on the other half."""
    hits = 0.0
    for fold in (0, 1):
        train, test = folds != fold, folds == fold
        part = {n: channels[n] for n in names}
        fit = fit_weights(
            {n: v[train] for n, v in part.items()},
            scales,
            data.rows[train],
            data.targets[train],
            l2=_l2(int(train.sum())),
        )
        scores = blend({n: v[test] for n, v in part.items()}, fit.weights, scales)
        ranks = target_ranks(scores, data.users[test], data.rows[test], data.targets[test])
        hits += float(np.sum(ranks == 1))
    return hits / len(data.users)


def _in_memory(store: MemoryStore, dataset: Dataset) -> InMemoryMemoryStore:
    """The index's memories read once into a plain in-memory store (texts, no vectors)."""
    copy = InMemoryMemoryStore()
    for kind, ids in (("user", dataset.user_ids), ("item", dataset.item_ids)):
        for start in range(0, len(ids), 2000):
            records = store.get_many(kind, ids[start : start + 2000])  # type: ignore[arg-type]
            copy.restore(list(records.values()))
    return copy


def ensure_ranker(
    directory: Path, dataset: Dataset, split: Split, graph: InteractionGraph, store: MemoryStore
) -> RankerConfig:
    """The store's ``ranker.json``: reused when there, else tuned now (an index step).

    Without a validation candidate file (a catalogue too small for 10 candidates) or with too
    few users, the untuned defaults are saved and the report says why.
    """
    path = directory / RANKER_FILE
    if path.exists():
        return RankerConfig.load(directory)
    try:
        cands = read_candidates(candidates_path(directory, "valid", 10, SEED), dataset)
    except (OSError, ValueError) as err:
        config = default_config()
        config.report = {"not_tuned": f"no validation candidates: {err}"}
        config.save(directory)
        return config
    with tempfile.TemporaryDirectory(prefix="memrec-tune-") as tmp:
        ws = Workspace(
            directory,
            dataset,
            split,
            graph,
            _in_memory(store, dataset),  # curation reads memories per user: no round trips
            EventLog(Path(tmp) / "events.sqlite", durable=False),
            MemoryVectors.load(directory),
        )
        try:
            config = tune_ranker(ws, cands)
        except NotTunable as err:
            config = default_config()
            config.report = {"not_tuned": str(err)}
        finally:
            ws.events.close()
    config.save(directory)
    return config
