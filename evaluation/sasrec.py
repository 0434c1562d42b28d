"""SASRec (Kang and McAuley, 2018), small and on CPU: the optional strong baseline.

PyTorch is an optional extra (``uv sync --extra sasrec``); without it ``--method strong`` runs the
other strong baselines and says SASRec was skipped, and ``--method sasrec`` stops with the install
command (``evaluation/methods.missing_extra``).

The model: the user's last ``max_len`` items (left-padded; training cuts longer histories into
windows of that length), learned item and position embeddings,
``blocks`` causal self-attention blocks of ``hidden`` units (one head, pre-norm), trained with one
uniformly sampled negative per position (binary cross-entropy) and Adam; a candidate's score is the
dot product of the last position's state with the candidate's embedding. Seeded (torch and numpy,
one thread count), so the same data gives the same ranks.

Tuning on validation H@1 is over the number of epochs: one training run scores the validation
candidates at every epoch checkpoint of the grid. ``time_limit_s`` is a safety net (600 s): past it,
once one checkpoint is scored, later ones are not tried and a warning says so (the choice then
depends on the machine's speed; within the limit it does not). Unlike the other strong baselines
it is not refitted: the chosen checkpoint (trained on train only) ranks the test candidates from
the histories with the warm-up item appended, as SASRec's own protocol does, which halves its cost.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from evaluation.methods import missing_extra
from memory_store.item_models import Params, grid
from memory_store.sequences import Ragged

logger = logging.getLogger(__name__)

SEED = 0
# Torch threads: every core, or the share `memrec eval --jobs N` gives each of its processes.
THREADS_ENV = "MEMREC_TORCH_THREADS"
# One training run per combination of the fixed axes; the epochs axis is read at checkpoints.
SASREC_GRID = grid(
    epochs=[10, 20, 40],
    hidden=[64],
    blocks=[2],
    max_len=[50],
    dropout=[0.2],
    lr=[1e-2],
    batch=[128],
    time_limit_s=[600.0],
)


class SASRecUnavailable(RuntimeError):
    """PyTorch is not installed (the message says how to install it)."""


def available() -> bool:
    """Whether PyTorch can be imported here."""
    return missing_extra("sasrec") is None


def _torch() -> Any:
    reason = missing_extra("sasrec")
    if reason is not None:
        raise SASRecUnavailable(reason)
    import torch

    return torch


def _build(torch: Any, n_items: int, p: Params) -> Any:
    nn = torch.nn
    hidden, max_len = int(p["hidden"]), int(p["max_len"])

    class SASRec(nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.item = nn.Embedding(n_items + 1, hidden, padding_idx=0)  # 0: padding
            self.pos = nn.Embedding(max_len, hidden)
            self.drop = nn.Dropout(float(p["dropout"]))
            layer = nn.TransformerEncoderLayer(
                hidden, 1, hidden, float(p["dropout"]), batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(
                layer, int(p["blocks"]), enable_nested_tensor=False
            )
            self.norm = nn.LayerNorm(hidden)
            self.register_buffer(
                "causal", torch.triu(torch.ones(max_len, max_len, dtype=torch.bool), 1)
            )

        def forward(self, seq: Any) -> Any:
            x = self.item(seq) * hidden**0.5 + self.pos.weight[None]
            x = self.drop(x) * (seq > 0).unsqueeze(-1)
            return self.norm(self.encoder(x, mask=self.causal))

    return SASRec()


def _windows(seqs: Ragged, users: np.ndarray, length: int) -> np.ndarray:
    """Each user's last ``length`` items shifted by one (0 = padding), left-padded."""
    out = np.zeros((len(users), length), np.int64)
    for row, u in enumerate(users.tolist()):
        h = seqs.history(u)[-length:]
        if len(h):
            out[row, length - len(h) :] = h + 1
    return out


def _training_windows(seqs: Ragged, length: int) -> np.ndarray:
    """Every sequence cut from its end into windows of ``length`` (0 = padding, left-padded).

    A history longer than the window trains on all of it, not only on its last ``length`` items;
    windows shorter than two items teach nothing and are dropped.
    """
    rows = []
    for u in np.flatnonzero(seqs.lengths >= 2).tolist():
        h = seqs.history(u) + 1
        for end in range(len(h), 1, -length):
            chunk = h[max(0, end - length) : end]
            if len(chunk) >= 2:
                rows.append(np.r_[np.zeros(length - len(chunk), np.int64), chunk])
    return np.asarray(rows, np.int64).reshape(-1, length)


def _scores(torch: Any, model: Any, seqs: Ragged, users: np.ndarray, cands: np.ndarray, p: Params):
    model.eval()
    out = np.zeros(cands.shape, np.float64)
    with torch.no_grad():
        for lo in range(0, len(users), 512):
            seq = torch.from_numpy(_windows(seqs, users[lo : lo + 512], int(p["max_len"])))
            last = model(seq)[:, -1]  # (B, hidden)
            emb = model.item(torch.from_numpy(cands[lo : lo + 512] + 1))  # (B, C, hidden)
            out[lo : lo + 512] = torch.einsum("bh,bch->bc", last, emb).double().numpy()
    model.train()
    return out


def _train_epoch(torch: Any, model: Any, opt: Any, data: np.ndarray, p: Params, rng) -> float:
    """One pass over every training sequence; the mean loss."""
    inputs, targets = data[:, :-1], data[:, 1:]
    order = rng.permutation(len(data))
    total, batches = 0.0, 0
    for lo in range(0, len(order), int(p["batch"])):
        idx = order[lo : lo + int(p["batch"])]
        seq, pos = torch.from_numpy(inputs[idx]), torch.from_numpy(targets[idx])
        neg_np = rng.integers(1, model.item.num_embeddings, size=pos.shape)
        clash = neg_np == targets[idx]
        neg_np[clash] = neg_np[clash] % (model.item.num_embeddings - 1) + 1
        neg = torch.from_numpy(neg_np)
        h = model(seq)
        pos_logit = (h * model.item(pos)).sum(-1)
        neg_logit = (h * model.item(neg)).sum(-1)
        mask = (pos > 0).float()
        loss = (
            torch.nn.functional.softplus(-pos_logit) + torch.nn.functional.softplus(neg_logit)
        ) * mask
        loss = loss.sum() / mask.sum().clamp(min=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item()
        batches += 1
    return total / max(batches, 1)


def sasrec_sweep(
    seqs: Ragged,
    users: np.ndarray,
    cands: np.ndarray,
    points: list[Params],
    also: tuple[Ragged, np.ndarray, np.ndarray] | None = None,
    also_scores: dict[int, np.ndarray] | None = None,
) -> Iterator[tuple[Params, np.ndarray]]:
    """Scores of ``cands`` for ``users`` at every grid point (one training run per fixed setting).

    With ``also`` (other sequences, users and candidates: the test histories with the warm-up),
    the same checkpoint scores those too, into ``also_scores[id(point)]``: the chosen checkpoint
    ranks the test without training again.
    """
    torch = _torch()
    torch.set_num_threads(int(os.environ.get(THREADS_ENV, 0)) or os.cpu_count() or 1)
    fixed: dict[tuple, list[Params]] = {}
    for p in points:
        fixed.setdefault(tuple(sorted((k, v) for k, v in p.items() if k != "epochs")), []).append(p)
    for group in fixed.values():
        p0 = group[0]
        torch.manual_seed(SEED)
        rng = np.random.default_rng(SEED)
        model = _build(torch, seqs.n_items, p0)
        opt = torch.optim.Adam(model.parameters(), lr=float(p0["lr"]), betas=(0.9, 0.98))
        data = _training_windows(seqs, int(p0["max_len"]) + 1)
        start, epoch, scored = time.perf_counter(), 0, False
        for p in sorted(group, key=lambda q: int(q["epochs"])):
            while epoch < int(p["epochs"]):
                late = time.perf_counter() - start > float(p0["time_limit_s"])
                if scored and late:  # the first checkpoint is always reached
                    limit = p0["time_limit_s"]
                    logger.warning("SASRec: time limit %.0f s reached at epoch %d", limit, epoch)
                    break
                loss = _train_epoch(torch, model, opt, data, p0, rng)
                epoch += 1
                logger.info("SASRec epoch %d: loss %.4f", epoch, loss)
            if epoch < int(p["epochs"]):
                break  # the time limit: later checkpoints are not tried
            scored = True
            if also is not None and also_scores is not None:
                also_scores[id(p)] = _scores(torch, model, *also, p0)
            yield p, _scores(torch, model, seqs, users, cands, p0)
