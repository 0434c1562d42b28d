"""Classical baselines (Random, MostPop, ItemKNN, BPR, ALS) over a binary user x item CSR matrix.

Every baseline scores candidate items per user (higher = better); rankings follow the one tie rule
of every method (``dataio/ties.py``), and ``tune`` picks hyper-parameters on the validation split
(never the test split), as BENCHMARK.md asks.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from pydantic import BaseModel

from dataio.ties import h1_mrr, target_ranks
from evaluation.methods import BASELINES
from memory_store.similarity import as_binary_csr, item_cosine

logger = logging.getLogger(__name__)

# Users whose dense score rows ItemKNN materialises at once (bounds memory on big catalogues).
_USER_CHUNK = 256


def _grid(**axes: list[Any]) -> list[dict[str, Any]]:
    """Cartesian product of parameter axes, as a list of parameter dicts."""
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]


GRIDS: dict[str, list[dict[str, Any]]] = {
    "random": [{}],
    "mostpop": [{}],
    "itemknn": _grid(k=[20, 50, 100, 200], shrink=[0.0, 10.0]),
    "bpr": _grid(factors=[32, 64], learning_rate=[0.01, 0.05], iterations=[50, 100]),
    "als": _grid(factors=[32, 64], regularization=[0.01, 0.1], iterations=[15]),
}


@runtime_checkable
class Baseline(Protocol):
    """A fitted-then-queried recommender that scores candidate items for a user."""

    name: str

    def fit(self, train: sp.csr_matrix) -> None:
        """Learn from a binary user x item train matrix."""
        ...

    def score(self, user: int, items: np.ndarray) -> np.ndarray:
        """Scores of ``items`` for ``user`` (higher = better)."""
        ...

    def score_many(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores ``[n_users, n_cand]`` of candidate row ``items[i]`` for ``users[i]``."""
        ...


class TrialResult(BaseModel):
    """One grid point tried by ``tune`` and its validation metrics."""

    params: dict[str, int | float]
    valid_h1: float
    valid_mrr: float


class TunedBaseline(BaseModel):
    """The chosen parameters of a baseline and their validation metrics."""

    name: str
    params: dict[str, int | float]
    valid_h1: float
    valid_mrr: float
    trials: list[TrialResult] = []


class _Scorer:
    """Shared validation and the single-user entry point; subclasses implement ``_score``."""

    name = "base"
    _shape: tuple[int, int] | None = None

    def fit(self, train: sp.csr_matrix) -> None:
        """Learn from a binary user x item train matrix."""
        matrix = as_binary_csr(train)
        self._shape = (int(matrix.shape[0]), int(matrix.shape[1]))
        self._fit(matrix)

    def score(self, user: int, items: np.ndarray) -> np.ndarray:
        """Scores of ``items`` for ``user`` (higher = better)."""
        row = np.asarray(items, dtype=np.int64).reshape(1, -1)
        return self.score_many(np.array([user], dtype=np.int64), row)[0]

    def score_many(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores ``[n_users, n_cand]`` of candidate row ``items[i]`` for ``users[i]``."""
        users_arr, items_arr = self._check_query(users, items)
        return self._score(users_arr, items_arr).astype(np.float64, copy=False)

    def _check_query(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Validate ids against the fitted matrix shape."""
        if self._shape is None:
            raise RuntimeError(f"{self.name}: call fit(train) before scoring")
        users_arr = np.asarray(users, dtype=np.int64).reshape(-1)
        items_arr = np.asarray(items, dtype=np.int64)
        if items_arr.ndim != 2 or items_arr.shape[0] != users_arr.size:
            raise ValueError(
                f"{self.name}: items must have shape (n_users={users_arr.size}, n_cand), "
                f"got {items_arr.shape}"
            )
        n_users, n_items = self._shape
        if users_arr.size and (users_arr.min() < 0 or users_arr.max() >= n_users):
            raise ValueError(
                f"{self.name}: user codes must be in [0, {n_users}) of the train matrix"
            )
        if items_arr.size and (items_arr.min() < 0 or items_arr.max() >= n_items):
            raise ValueError(
                f"{self.name}: item codes must be in [0, {n_items}) of the train matrix"
            )
        return users_arr, items_arr

    def _fit(self, train: sp.csr_matrix) -> None:
        raise NotImplementedError

    def _score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a fast, well-mixed hash of uint64 values."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


class Random(_Scorer):
    """Uniform random scores, a pure function of (seed, user, item): reproducible in any order."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _fit(self, train: sp.csr_matrix) -> None:
        """Nothing to learn."""

    def _score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        seed = _splitmix64(np.array([self.seed], dtype=np.uint64))
        with np.errstate(over="ignore"):
            h = _splitmix64(seed + users.astype(np.uint64)[:, None])
            h = _splitmix64(h + items.astype(np.uint64))
        return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


class MostPop(_Scorer):
    """Scores an item by its number of train interactions."""

    name = "mostpop"

    def __init__(self) -> None:
        self.popularity = np.zeros(0)

    def _fit(self, train: sp.csr_matrix) -> None:
        self.popularity = np.asarray(train.sum(axis=0)).ravel().astype(np.float64)

    def _score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.popularity[items]


class ItemKNN(_Scorer):
    """Item-item cosine: a candidate's score is the sum of its similarities to the user's items."""

    name = "itemknn"

    def __init__(self, k: int = 100, shrink: float = 0.0) -> None:
        if k < 1 or shrink < 0:
            raise ValueError(f"itemknn needs k >= 1 and shrink >= 0, got k={k}, shrink={shrink}")
        self.k = k
        self.shrink = shrink
        self._user_items = sp.csr_matrix((0, 0))
        self._sim_t = sp.csr_matrix((0, 0))

    def _fit(self, train: sp.csr_matrix) -> None:
        self._user_items = train
        # Row j of the similarity holds j's neighbours; the transpose turns scoring into X_u @ S^T.
        self._sim_t = item_cosine(train, self.k, self.shrink).T.tocsr()

    def _score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = np.empty(items.shape, dtype=np.float64)
        for start in range(0, users.size, _USER_CHUNK):
            block = slice(start, start + _USER_CHUNK)
            dense = (self._user_items[users[block]] @ self._sim_t).toarray()
            out[block] = np.take_along_axis(dense, items[block], axis=1)
        return out


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Limit BLAS to one thread while ``implicit`` trains (it warns, and slows, otherwise)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with implicit
        logger.warning("threadpoolctl missing: set OPENBLAS_NUM_THREADS=1 to avoid slow training")
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


class _FactorModel(_Scorer):
    """A matrix factorisation from ``implicit``: score = user factors . item factors."""

    def __init__(self) -> None:
        self.user_factors = np.zeros((0, 0), dtype=np.float32)
        self.item_factors = np.zeros((0, 0), dtype=np.float32)

    def _model(self) -> Any:
        raise NotImplementedError

    def _fit(self, train: sp.csr_matrix) -> None:
        with _single_threaded_blas():
            # implicit checks the BLAS thread count when the model is built, so build it here.
            model = self._model()
            model.fit(train, show_progress=False)
        self.user_factors = np.asarray(model.user_factors)
        self.item_factors = np.asarray(model.item_factors)

    def _score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.einsum("nf,ncf->nc", self.user_factors[users], self.item_factors[items])


class BPR(_FactorModel):
    """Bayesian personalised ranking MF (implicit). One thread by default: Hogwild is not seeded."""

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        super().__init__()
        self.params = {
            "factors": factors,
            "learning_rate": learning_rate,
            "regularization": regularization,
            "iterations": iterations,
            "random_state": seed,
            "num_threads": num_threads,
        }

    def _model(self) -> BayesianPersonalizedRanking:
        return BayesianPersonalizedRanking(**self.params)


class ALS(_FactorModel):
    """Implicit-feedback alternating least squares (implicit); deterministic across threads."""

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        seed: int = 0,
        num_threads: int = 2,
    ) -> None:
        super().__init__()
        self.params = {
            "factors": factors,
            "regularization": regularization,
            "alpha": alpha,
            "iterations": iterations,
            "random_state": seed,
            "num_threads": num_threads,
        }

    def _model(self) -> AlternatingLeastSquares:
        return AlternatingLeastSquares(**self.params)


_CLASSES: dict[str, type[_Scorer]] = {
    "random": Random,
    "mostpop": MostPop,
    "itemknn": ItemKNN,
    "bpr": BPR,
    "als": ALS,
}


def make_baseline(name: str, seed: int = 0, **params: Any) -> Baseline:
    """Build an unfitted baseline by name; ``seed`` goes to the methods that are stochastic."""
    if name not in _CLASSES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
    cls = _CLASSES[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = set(params) - accepted
    if unknown:
        raise ValueError(
            f"unknown parameters {sorted(unknown)} for {name}; accepted: {sorted(accepted)}"
        )
    if "seed" in accepted:
        params = {**params, "seed": seed}
    baseline: Baseline = cls(**params)
    return baseline


def tune(
    name: str,
    train: sp.csr_matrix,
    valid_users: np.ndarray,
    valid_cands: np.ndarray,
    valid_targets: np.ndarray,
    seed: int = 0,
    grid: list[dict[str, Any]] | None = None,
) -> TunedBaseline:
    """Pick the grid point (``GRIDS[name]`` by default) with the best validation H@1, then MRR.

    ``train`` must not contain the validation targets; the earliest grid point wins a full tie.
    """
    if name not in GRIDS:
        raise ValueError(f"no grid for baseline {name!r}; expected one of {', '.join(BASELINES)}")
    points = GRIDS[name] if grid is None else grid
    if not points:
        raise ValueError(f"tune {name}: the grid is empty; pass at least one parameter dict")
    trials: list[TrialResult] = []
    for params in points:
        baseline = make_baseline(name, seed=seed, **params)
        baseline.fit(train)
        scores = baseline.score_many(valid_users, valid_cands)
        h1, mrr = h1_mrr(target_ranks(scores, valid_users, valid_cands, valid_targets))
        logger.info("tune %s %s: valid H@1=%.4f MRR=%.4f", name, params, h1, mrr)
        trials.append(TrialResult(params=params, valid_h1=h1, valid_mrr=mrr))
    best = max(trials, key=lambda t: (t.valid_h1, t.valid_mrr))
    return TunedBaseline(
        name=name,
        params=best.params,
        valid_h1=best.valid_h1,
        valid_mrr=best.valid_mrr,
        trials=trials,
    )
