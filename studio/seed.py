"""Prepare a demo store for Studio: index ml-100k, record a few feedback events, propagate them.

``python -m studio.seed [--home PATH] [--data-dir PATH]``. Idempotent: the feedback events have
stable interaction ids (``seed-<user>-<item>``), so a re-run records nothing new.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from memory_store.graph import InteractionGraph
from memory_store.workspace import Workspace, workspace_for
from nodes.record import record_interaction
from schemas.context import MemRecContext

logger = logging.getLogger(__name__)

DATASET = "ml-100k"
DEMO_USER = "1"
N_FEEDBACK = 3


class SeedReport(BaseModel):
    """What the seed did."""

    dataset: str
    directory: str
    user_id: str
    interaction_ids: list[str]
    propagated: int


def demo_items(ws: Workspace, user_id: str, n: int = N_FEEDBACK) -> list[str]:
    """The ``n`` items most popular in train the user never chose (stable across runs).

    Never one of the user's held-out items (validation or test target): a seeded store that
    recorded those as positives would hand an evaluation its answer.
    """
    code = ws.user_code(user_id)
    base = InteractionGraph.load(ws.directory / "graph")
    held_out = {
        int(i)
        for frame in (ws.split.valid, ws.split.test)
        for i in frame.loc[frame["user"] == code, "item"].tolist()
    }
    skip = set(base.user_items(code).tolist()) | held_out
    order = np.argsort(-base.item_degree, kind="stable")
    return [ws.dataset.item_ids[c] for c in order if int(c) not in skip][:n]


def seed_interaction_id(user_id: str, item_id: str) -> str:
    """The stable id of a seeded interaction."""
    return f"seed-{user_id}-{item_id}"


def record_demo_feedback(ws: Workspace, user_id: str, items: list[str]) -> list[str]:
    """Record positive feedback (and its propagation job) once per item."""
    ids = []
    for item_id in items:
        event = record_interaction(
            ws, user_id, item_id, "positive", interaction_id=seed_interaction_id(user_id, item_id)
        )
        ids.append(event.interaction_id)
    return ids


async def seed(
    dataset: str = DATASET,
    *,
    home: str | Path | None = None,
    data_dir: str | Path | None = None,
    user_id: str = DEMO_USER,
) -> SeedReport:
    """Index the dataset (reused when indexed), record the demo feedback and propagate it."""
    from services.index import build_index
    from services.worker import PropagationWorker

    await asyncio.to_thread(build_index, dataset, data_dir=data_dir, home=home)
    ctx = MemRecContext(dataset=dataset, home=str(home) if home else None, roles="offline")
    ws = await asyncio.to_thread(workspace_for, ctx)  # the store the propagate graph writes to
    ids = record_demo_feedback(ws, user_id, demo_items(ws, user_id))
    done = await PropagationWorker(ws, ctx).drain()
    return SeedReport(
        dataset=dataset,
        directory=str(ws.directory),
        user_id=user_id,
        interaction_ids=ids,
        propagated=done,
    )


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default=DATASET)
    parser.add_argument("--home", default=None, help="store location (env MEMREC_HOME)")
    parser.add_argument("--data-dir", default=None, help="datasets (env MEMREC_DATA_DIR)")
    parser.add_argument("--user", default=DEMO_USER, help="the demo user")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = asyncio.run(
        seed(args.dataset, home=args.home, data_dir=args.data_dir, user_id=args.user)
    )
    logger.info(
        "seeded %s for user %s: %d feedback event(s) %s, %d propagated",
        report.directory,
        report.user_id,
        len(report.interaction_ids),
        report.interaction_ids,
        report.propagated,
    )


if __name__ == "__main__":
    main()
