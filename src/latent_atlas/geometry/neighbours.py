"""Nearest-neighbour distances and intrinsic dimension (TwoNN, Levina-Bickel MLE).

Points on thin filaments have much closer neighbours, and a lower intrinsic dimension, than a
Gaussian with the same mean and covariance; both are measured on equal counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from latent_atlas.geometry.baseline import check_cloud, gaussian_like
from latent_atlas.projections import subsample_indices


def _neighbour_distances(X: np.ndarray, k: int) -> np.ndarray:
    """(n, k) distances to the k nearest other points of X (n, d), ascending (exact, deterministic)."""
    from sklearn.neighbors import NearestNeighbors

    if len(X) <= k:
        raise ValueError(f"need more than k={k} points for neighbour distances; got {len(X)}")
    dist, _ = NearestNeighbors(n_neighbors=k + 1, algorithm="auto").fit(X).kneighbors(X)
    return dist[:, 1:]


def nn_distances(X: np.ndarray) -> np.ndarray:
    """Distance of every point of X (n, d) to its nearest other point: (n,)."""
    return _neighbour_distances(check_cloud(X), 1)[:, 0]


def twonn_dimension(X: np.ndarray, discard_fraction: float = 0.1) -> float:
    """TwoNN intrinsic dimension (Facco et al. 2017) of X (n, d).

    mu = r2 / r1 (second over first neighbour distance) follows a Pareto law with exponent equal
    to the dimension; the estimate is the slope of -log(1 - F(mu)) against log(mu) through the
    origin, after discarding the largest `discard_fraction` of mu (the noisy tail).
    """
    X = check_cloud(X, min_samples=4)
    r = _neighbour_distances(X, 2)
    ok = r[:, 0] > 0  # duplicate points carry no scale information
    mu = np.sort(r[ok, 1] / r[ok, 0])
    n = len(mu)
    if n < 3:
        raise ValueError("TwoNN needs at least 3 points with distinct nearest neighbours")
    keep = max(2, int(np.floor(n * (1 - discard_fraction))))
    x = np.log(mu[:keep])
    y = -np.log(1 - np.arange(keep) / n)
    return float((x @ y) / (x @ x))


def local_mle_dimension(X: np.ndarray, k: int) -> np.ndarray:
    """Levina-Bickel maximum-likelihood intrinsic dimension around every point of X (n, d): (n,).

    m(x) = [1/(k-1) * sum_{j<k} log(T_k(x) / T_j(x))]^-1 with T_j the distance to the j-th
    neighbour. Points with coincident neighbours get NaN.
    """
    if k < 3:
        raise ValueError(f"the MLE intrinsic dimension needs k >= 3 neighbours; got {k}")
    T = _neighbour_distances(check_cloud(X), k)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(T[:, -1:] / T[:, :-1]).sum(axis=1) / (k - 1)
        out = 1.0 / logs
    out[~np.isfinite(out)] = np.nan
    return out


def mle_dimension(X: np.ndarray, k: int) -> float:
    """Global Levina-Bickel estimate with MacKay and Ghahramani's correction: the inverse of the
    mean inverse local estimate (averaging m(x) directly is biased upwards)."""
    local = local_mle_dimension(X, k)
    inv = 1.0 / local[np.isfinite(local) & (local > 0)]
    return float(1.0 / inv.mean())


def neighbour_tables(Z: np.ndarray, sample_info: pd.DataFrame, n_samples: int, k_local: int,
                     random_state: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Nearest-neighbour distances and local intrinsic dimension, latents vs the Gaussian baseline.

    A seeded stratified subsample of `n_samples` latents (Z: (n, d); `sample_info`: their id
    columns, n rows) is compared with as many points of `gaussian_like(Z)` (seed random_state + 1),
    so density-dependent numbers are measured at the same count.

    Returns
    -------
    points : DataFrame, one row per (source, point): `source` ("latents" / "gaussian"),
        `sample_id`, `label` (-1 for the baseline), `nn_distance`, `local_dimension`.
    dimension : DataFrame, one row per source: `source`, `n`, `k`, `twonn`, `mle` (global, k),
        `local_median`, `local_q25`, `local_q75`, `nn_median`, `nn_mean`.
    """
    Z = check_cloud(Z)
    idx = subsample_indices(len(Z), n_samples, random_state, labels=sample_info["label"].to_numpy())
    X = Z[idx]
    k = int(min(k_local, len(X) - 1))
    G = gaussian_like(Z, n=len(X), random_state=random_state + 1)
    frames, rows = [], []
    for source, P, ids, labels in (
        ("latents", X, sample_info["sample_id"].to_numpy()[idx], sample_info["label"].to_numpy()[idx]),
        ("gaussian", G, np.arange(len(G)), np.full(len(G), -1)),
    ):
        nn = nn_distances(P)
        local = local_mle_dimension(P, k)
        frames.append(pd.DataFrame({"source": source, "sample_id": ids.astype(np.int64),
                                    "label": labels.astype(np.int64), "nn_distance": nn,
                                    "local_dimension": local}))
        q25, q50, q75 = np.nanpercentile(local, [25, 50, 75])
        rows.append({"source": source, "n": len(P), "k": k, "twonn": twonn_dimension(P),
                     "mle": mle_dimension(P, k), "local_median": q50, "local_q25": q25,
                     "local_q75": q75, "nn_median": float(np.median(nn)), "nn_mean": float(nn.mean())})
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows)
