"""Classical baselines under the protocol: tune on validation, refit with warm-up, rank the test.

Tuning fits on train and scores the validation candidate file; the chosen parameters are refit on
train plus the validation items of the evaluated users (the same warm-up the agentic methods get)
and score the test candidate file. The test targets are never part of any fit.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, Field

from dataio.candidates import CandidateFile
from dataio.datasets import Dataset
from dataio.split import Split
from dataio.ties import target_ranks
from evaluation.baselines import make_baseline, tune

logger = logging.getLogger(__name__)


class ClassicalRun(BaseModel):
    """Per-user test ranks of one tuned baseline, with what tuning chose."""

    name: str
    params: dict[str, int | float | str] = Field(description="the chosen grid point")
    valid_h1: float = Field(description="validation H@1 of the chosen grid point")
    valid_mrr: float = Field(description="validation MRR of the chosen grid point")
    ranks: dict[int, int] = Field(description="user code -> 1-based test rank (0 = miss)")


def interaction_matrix(frames: list[pd.DataFrame], ds: Dataset) -> sp.csr_matrix:
    """Binary user x item CSR matrix of the rows of ``frames``."""
    users = np.concatenate([f["user"].to_numpy() for f in frames])
    items = np.concatenate([f["item"].to_numpy() for f in frames])
    ones = np.ones(users.size, dtype=np.float32)
    matrix = sp.csr_matrix((ones, (users, items)), shape=(ds.n_users, ds.n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _rows(cands: CandidateFile, users: list[int]) -> np.ndarray:
    return np.asarray([cands.users[u] for u in users], dtype=np.int64)


def _targets(frame: pd.DataFrame, users: list[int]) -> np.ndarray:
    by_user = dict(zip(frame["user"].tolist(), frame["item"].tolist(), strict=True))
    return np.asarray([by_user[u] for u in users], dtype=np.int64)


def run_classical(
    name: str,
    ds: Dataset,
    split: Split,
    valid_cands: CandidateFile,
    test_cands: CandidateFile,
    users: list[int],
    seed: int = 0,
) -> ClassicalRun:
    """Tune ``name`` on validation, refit on train + the users' validation items, rank the test."""
    train = interaction_matrix([split.train], ds)
    valid_users = sorted(valid_cands.users)
    tuned = tune(
        name,
        train,
        np.asarray(valid_users, dtype=np.int64),
        _rows(valid_cands, valid_users),
        _targets(split.valid, valid_users),
        seed=seed,
    )
    logger.info("%s: chose %s (valid H@1 %.4f)", name, tuned.params, tuned.valid_h1)
    warm = split.valid[split.valid["user"].isin(set(users))]
    model = make_baseline(name, seed=seed, **tuned.params)
    model.fit(interaction_matrix([split.train, warm], ds))
    rows = _rows(test_cands, users)
    scores = model.score_many(np.asarray(users, dtype=np.int64), rows)
    ranks = target_ranks(scores, np.asarray(users, np.int64), rows, _targets(split.test, users))
    return ClassicalRun(
        name=name,
        params=dict(tuned.params),
        valid_h1=tuned.valid_h1,
        valid_mrr=tuned.valid_mrr,
        ranks={u: int(r) for u, r in zip(users, ranks.tolist(), strict=True)},
    )
