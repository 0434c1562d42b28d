"""SASRec, the optional strong baseline: learns a sequence, tunes epochs on validation, and is
skipped with the install command when PyTorch is absent."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from dataio.candidates import candidates_path, read_candidates
from dataio.ties import target_ranks
from evaluation import methods
from evaluation.sasrec import SASRecUnavailable, available, sasrec_sweep
from evaluation.strong import default_grid, run_strong
from memory_store.item_models import grid
from memory_store.sequences import as_ragged
from tests.support.fixtures import TINY_MOVIES, base_workspace

needs_torch = pytest.mark.skipif(not available(), reason=str(methods.missing_extra("sasrec")))

N_ITEMS = 30


def _no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )


def test_without_torch_strong_skips_sasrec_and_says_how_to_install(monkeypatch) -> None:
    _no_torch(monkeypatch)
    skipped: list[str] = []
    names = methods.expand_methods("strong,mostpop", skipped)
    assert names == ["recency-knn", "transition", "ease", "mostpop"]
    assert len(skipped) == 1 and "uv sync --extra sasrec" in skipped[0]
    assert methods.expand_methods("sasrec") == ["sasrec"]  # named on its own: kept, then refused
    with pytest.raises(SASRecUnavailable, match="uv sync --extra sasrec"):
        next(sasrec_sweep(as_ragged([[1, 2]], 3), np.array([0]), np.array([[1, 2]]), [{}]))


def test_without_torch_eval_of_sasrec_stops_before_running(monkeypatch, tmp_path) -> None:
    from cli.eval_cmds import register

    _no_torch(monkeypatch)
    app = typer.Typer()
    register(app)
    args = ["eval", "--dataset", TINY_MOVIES, "--method", "sasrec", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "uv sync --extra sasrec" in result.output
    assert not list(tmp_path.glob("*.json"))


def _shifted_sequences(n_users: int = 120, length: int = 16) -> tuple:
    """Each user walks the catalogue one item at a time from a random start (next = last + 1)."""
    rng = np.random.default_rng(1)
    starts = rng.integers(0, N_ITEMS, n_users)
    seqs = as_ragged([[(s + j) % N_ITEMS for j in range(length)] for s in starts], N_ITEMS)
    targets = (starts + length) % N_ITEMS
    cands = np.stack(
        [np.r_[t, rng.choice(np.setdiff1d(np.arange(N_ITEMS), [t]), 9, replace=False)]
         for t in targets]
    )  # fmt: skip
    return seqs, np.arange(n_users), cands, targets


@needs_torch
def test_sasrec_learns_the_next_item_and_is_deterministic() -> None:
    seqs, users, cands, targets = _shifted_sequences()
    points = grid(
        epochs=[1, 40], hidden=[32], blocks=[1], max_len=[20], dropout=[0.0], lr=[1e-2],
        batch=[32], time_limit_s=[120.0],
    )  # fmt: skip
    also: dict[int, np.ndarray] = {}
    scored = list(sasrec_sweep(seqs, users[:7], cands[:7], points, (seqs, users, cands), also))
    assert [p["epochs"] for p, _ in scored] == [1, 40]
    assert np.allclose(also[id(points[1])][:7], scored[1][1])  # the test is ranked by the same
    scored = [(p, also[id(p)]) for p, _ in scored]  # checkpoint, no second training
    h1 = [float(np.mean(target_ranks(s, users, cands, targets) == 1)) for _, s in scored]
    assert h1[1] > 0.9 > h1[0]  # random is 0.1; training is what makes it right
    again = list(sasrec_sweep(seqs, users, cands, points[1:]))
    assert np.allclose(again[0][1], scored[1][1], atol=1e-5)  # seeded: the same ranks again


@needs_torch
def test_sasrec_stops_at_its_time_limit_after_the_first_checkpoint() -> None:
    seqs, users, cands, _ = _shifted_sequences(40, 8)
    points = grid(
        epochs=[1, 2, 500], hidden=[8], blocks=[1], max_len=[8], dropout=[0.0], lr=[1e-3],
        batch=[16], time_limit_s=[0.0],
    )  # fmt: skip
    assert [p["epochs"] for p, _ in sasrec_sweep(seqs, users, cands, points)] == [1]


@needs_torch
def test_sasrec_runs_under_the_strong_baseline_protocol() -> None:
    ws = base_workspace(TINY_MOVIES)
    valid = read_candidates(candidates_path(ws.directory, "valid", 10, 0), ws.dataset)
    test = read_candidates(candidates_path(ws.directory, "test", 10, 0), ws.dataset)
    users = sorted(ws.split.test["user"].tolist())
    points = [p | {"hidden": 16, "max_len": 20} for p in default_grid("sasrec", 1)[:2]]
    run, extra = run_strong("sasrec", ws.dataset, ws.split, valid, test, users, points)
    assert run.params in points and extra["grid_points"] == 2
    assert set(run.ranks) == set(users) and all(1 <= r <= 10 for r in run.ranks.values())
