"""Per-feature statistics and the feature correlation matrix: which features are dead or
near-constant, and which move together (in hierarchical-clustering order)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform


def feature_stats(X: np.ndarray, columns: Sequence[str], near_constant: float) -> pd.DataFrame:
    """Per feature: mean, std, share of samples where it is non-zero, dead / near-constant flags.

    X : ndarray (n_samples, n_features), one column per name of `columns`; one row per feature.

    A feature is *dead* when it is zero on every sample (a ReLU unit that never fires), and
    *near-constant* when its standard deviation is below `near_constant` times the largest
    feature standard deviation (dead features are near-constant too). Also returns `order`, the
    feature's position in the clustered order of `clustered_correlation`.
    """
    X = np.asarray(X, np.float64)
    std = X.std(axis=0)
    top = std.max() if std.size and std.max() > 0 else 1.0
    out = pd.DataFrame({
        "feature": list(columns),
        "mean": X.mean(axis=0),
        "std": std,
        "active_fraction": (np.abs(X) > 0).mean(axis=0),
        "dead": ~(np.abs(X) > 0).any(axis=0),
        "near_constant": std < near_constant * top,
    })
    out["order"] = np.argsort(correlation_order(X))
    return out


def magnitude_rank(values: np.ndarray) -> np.ndarray:
    """Rank of each entry of `values` (n_features,) by its absolute value: int32 (n_features,),
    1 = largest; ties keep the features' order, NaN ranks last."""
    rank = np.empty(len(values), dtype=np.int32)
    rank[np.argsort(-np.abs(values), kind="stable")] = np.arange(1, len(values) + 1)
    return rank


def correlation_matrix(X: np.ndarray) -> np.ndarray:
    """(n_features, n_features) Pearson correlation; NaN in rows/columns of constant features."""
    X = np.asarray(X, np.float64)
    Xc = X - X.mean(axis=0)
    norm = np.sqrt((Xc ** 2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (Xc.T @ Xc) / np.outer(norm, norm)
    r[np.outer(norm == 0, norm == 0) & np.eye(len(norm), dtype=bool)] = np.nan
    return np.clip(r, -1.0, 1.0)


def correlation_order(X: np.ndarray) -> np.ndarray:
    """Feature indices in hierarchical-clustering order (average linkage on 1 - |r|).

    Constant features (undefined correlation) count as uncorrelated with everything and end up
    together. The order is made deterministic by scipy's optimal leaf ordering.
    """
    r = correlation_matrix(X)
    n = r.shape[0]
    if n < 3:
        return np.arange(n)
    d = 1.0 - np.abs(np.nan_to_num(r, nan=0.0))
    np.fill_diagonal(d, 0.0)
    d = (d + d.T) / 2
    z = linkage(squareform(np.clip(d, 0.0, None), checks=False), method="average", optimal_ordering=True)
    return leaves_list(z)


def clustered_correlation(X: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
    """Long table of the correlation matrix in clustered order: feature_a, feature_b, i, j, r.

    `i`, `j` are positions in the clustered order (row, column of the drawn matrix).
    """
    order = correlation_order(X)
    r = correlation_matrix(X)[np.ix_(order, order)]
    names = np.asarray(columns)[order]
    n = len(order)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return pd.DataFrame({"feature_a": names[i.ravel()], "feature_b": names[j.ravel()],
                         "i": i.ravel().astype(np.int32), "j": j.ravel().astype(np.int32),
                         "r": r.ravel().astype(np.float32)})
