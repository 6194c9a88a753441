"""Classical anomaly detectors as baselines for an autoencoder's scores (PyOD).

Each detector is fitted on a training matrix (n_train, d), at most `max_fit` of its rows (a seeded
subsample), and scores a matrix (n, d) a chunk of rows at a time; higher = more anomalous. The
rows are flattened inputs or latents: the caller decides. Every score is a function of the fitted
rows and the scored row alone, so chunking changes nothing and the scores are reproducible:

- iforest: PyOD's IForest (Liu et al. 2008), `random_state` = seed, n_jobs 1; `decision_function`.
- knn: PyOD's KNN (Ramaswamy et al. 2000), the distance to the k-th nearest fitted row
  ("largest"); `decision_function`.
- ecod: ECOD (Li et al. 2022), the score PyOD's `ECOD.decision_function` gives a row scored on its
  own. PyOD's own call on a matrix ranks every row among the training rows *and the other rows
  scored with it* (its ECDF and skewness take the union), so a row's score would depend on which
  rows share its call, and memory would grow with n. `ecod_scores` computes the same formula per
  row: tail probabilities from the fitted columns (sorted once) with the row counted in, the
  sign of each column's skewness from the fitted rows plus that row (closed-form update of their
  moments).

A row of the scored matrix that is also a fitted row scores as an in-sample point (kNN finds the
row itself at distance 0, so its score is its (k-1)-th neighbour's distance; Isolation Forest saw
it): thresholds set on fitted rows are lower than on unseen rows.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from latent_atlas.data.store import CHUNK_BYTES, chunk_rows

METHODS = ("iforest", "ecod", "knn")


def fit_rows(n_train: int, max_fit: int, seed: int) -> np.ndarray:
    """Positions of the training rows the detectors are fitted on: all of them, or a seeded
    subsample of `max_fit`, ascending."""
    if max_fit < 1:
        raise ValueError(f"anomaly.baselines.max_fit must be >= 1, got {max_fit}")
    if n_train <= max_fit:
        return np.arange(n_train)
    return np.sort(np.random.default_rng(seed).choice(n_train, size=max_fit, replace=False))


def _skew_sign(n: int, mean: np.ndarray, s2: np.ndarray, s3: np.ndarray, q: np.ndarray) -> np.ndarray:
    """sign of scipy's (biased) skewness of each column of the n fitted rows plus the query row,
    (m, d), from the fitted rows' mean and central sums s2 = sum (x - mean)^2, s3 = sum (x - mean)^3
    (d,); 0 where the column is constant, as scipy's NaN turned 0 by PyOD."""
    a = q - mean
    delta = a / (n + 1)
    m2 = s2 + n * delta ** 2 + (a - delta) ** 2
    m3 = s3 - 3 * delta * s2 - n * delta ** 3 + (a - delta) ** 3
    # scipy's test for a constant column: m2 / N <= (resolution x the column's mean)^2
    constant = m2 / (n + 1) <= (np.finfo(np.float64).resolution * (mean + delta)) ** 2
    return np.where(constant, 0.0, np.sign(m3))


class ECODScorer:
    """ECOD fitted on `train` (n, d): `score(x)` gives each row of x (m, d) the score PyOD's ECOD
    gives that row alone (see the module docstring); float64 (m,)."""

    def __init__(self, train: np.ndarray):
        train = np.asarray(train)
        self.n = len(train)
        self.sorted = np.sort(train, axis=0)
        t = train.astype(np.float64)
        self.mean = t.mean(axis=0)
        c = t - self.mean
        self.s2, self.s3 = (c ** 2).sum(axis=0), (c ** 3).sum(axis=0)

    def score(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        n = self.n
        # ECDF of the n fitted values plus the row itself, at the row: P(X <= q) and P(X >= q)
        below = np.empty(x.shape, np.float64)
        above = np.empty(x.shape, np.float64)
        for j in range(x.shape[1]):
            col = self.sorted[:, j]
            below[:, j] = np.searchsorted(col, x[:, j], side="right")
            above[:, j] = n - np.searchsorted(col, x[:, j], side="left")
        u_l = -np.log((below + 1) / (n + 1))
        u_r = -np.log((above + 1) / (n + 1))
        sign = _skew_sign(n, self.mean, self.s2, self.s3, x.astype(np.float64))
        # PyOD: the tail matching the skew (right for positive, left for negative, both for none)
        u_skew = u_l * -np.sign(sign - 1) + u_r * np.sign(sign + 1)
        return np.maximum(np.maximum(u_l, u_r), u_skew).sum(axis=1)


def _detector(method: str, train: np.ndarray, seed: int, k_neighbors: int) -> Callable[[np.ndarray], np.ndarray]:
    """The fitted detector `method` as a function of a row chunk (m, d) -> scores (m,)."""
    if method == "ecod":
        return ECODScorer(train).score
    if method == "iforest":
        from pyod.models.iforest import IForest

        return IForest(random_state=seed, n_jobs=1).fit(train).decision_function
    if method == "knn":
        from pyod.models.knn import KNN

        if k_neighbors < 1 or k_neighbors >= len(train):
            raise ValueError(f"anomaly.baselines.k must be in [1, {len(train) - 1}] for {len(train)} "
                             f"fitted rows, got {k_neighbors}")
        return KNN(n_neighbors=k_neighbors, method="largest", n_jobs=1).fit(train).decision_function
    raise ValueError(f"anomaly.baselines.methods: unknown method {method!r}; use {list(METHODS)}")


def baseline_scores(train_x: np.ndarray, x: np.ndarray, *, methods: Sequence[str], seed: int, max_fit: int,
                    k_neighbors: int, chunk: int | None = None) -> dict[str, np.ndarray]:
    """Each detector of `methods` fitted on (at most `max_fit` seeded rows of) `train_x`
    (n_train, d) and scoring every row of `x` (n, d): {method: (n,) float64}, higher = more
    anomalous. `chunk`: rows scored per call (default: 16 MiB of float32 rows).
    """
    if train_x.ndim != 2 or x.ndim != 2 or train_x.shape[1] != x.shape[1]:
        raise ValueError(f"baselines need matrices (n_train, d) and (n, d); got {train_x.shape} and {x.shape}")
    if not len(train_x):
        raise ValueError("anomaly.baselines: no training rows to fit the detectors on")
    train = np.asarray(train_x[fit_rows(len(train_x), max_fit, seed)], dtype=np.float32)
    if not np.isfinite(train).all():
        raise ValueError("anomaly.baselines: the training rows hold non-finite values")
    step = chunk or chunk_rows(x, CHUNK_BYTES)
    out = {}
    for method in methods:
        score = _detector(method, train, seed, k_neighbors)
        parts = [score(np.asarray(x[start:start + step], dtype=np.float32)) for start in range(0, len(x), step)]
        out[method] = np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)
    return out
