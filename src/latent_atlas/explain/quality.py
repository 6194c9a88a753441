"""How faithful each 2-D map is, in numbers: trustworthiness, continuity and k-NN class accuracy,
in the map against the full feature space."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from sklearn.manifold import trustworthiness as _sk_trustworthiness
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from latent_atlas.projections import METHODS


def trustworthiness(X: np.ndarray, Y: np.ndarray, k: int) -> float:
    """How far the k nearest neighbours in the map `Y` are true neighbours in `X` (1 = all are).

    X : ndarray (n_samples, n_features), the original space; Y : ndarray (n_samples, 2).
    Penalises points that are near in the map but far in the original space (sklearn's measure).
    """
    _check_k(len(X), k)
    return float(_sk_trustworthiness(np.asarray(X, np.float64), np.asarray(Y, np.float64), n_neighbors=k))


def continuity(X: np.ndarray, Y: np.ndarray, k: int) -> float:
    """How far true k nearest neighbours in `X` stay neighbours in the map `Y` (1 = all do).

    Trustworthiness with the roles of the two spaces swapped: it penalises points that are near
    in the original space but torn apart in the map.
    """
    return trustworthiness(Y, X, k)


def _check_k(n: int, k: int) -> None:
    if not 1 <= k < n / 2:
        raise ValueError(f"explain.quality.k: need 1 <= k < n_samples / 2 = {n / 2:g}, got {k}")


def knn_accuracy(X: np.ndarray, labels: np.ndarray, k: int, n_folds: int,
                 random_state: int = 0) -> tuple[float, float]:
    """Cross-validated accuracy of a k-NN classifier of the class labels on `X`.

    X : ndarray (n_samples, n_dims); labels : ndarray (n_samples,). Returns (mean, std) over the
    folds of `cross_validated_accuracy`.
    """
    return cross_validated_accuracy(KNeighborsClassifier(n_neighbors=k), X, labels, n_folds=n_folds,
                                    random_state=random_state)


def cross_validated_accuracy(model, X: np.ndarray, labels: np.ndarray, *, n_folds: int,
                             random_state: int) -> tuple[float, float]:
    """Accuracy of a scikit-learn classifier `model` on held-out folds of (X, labels).

    X : ndarray (n_samples, n_dims); labels : ndarray (n_samples,). Folds are stratified (every
    class in every fold in proportion) and shuffled with `random_state`. Returns (mean, std) over
    the folds.
    """
    folds = StratifiedKFold(n_splits=_n_folds(labels, n_folds), shuffle=True, random_state=random_state)
    scores = cross_val_score(model, np.asarray(X, np.float64), labels, cv=folds)
    return float(scores.mean()), float(scores.std())


def _n_folds(labels: np.ndarray, n_folds: int) -> int:
    """At most `n_folds`, but no more than the smallest class has members (at least 2)."""
    counts = np.unique(labels, return_counts=True)[1]
    smallest = int(counts.min()) if len(counts) else 0
    if smallest < 2:
        raise ValueError("cross-validated class accuracy needs at least 2 samples of every class; "
                         f"the smallest class has {smallest}")
    return max(2, min(n_folds, smallest))


def map_quality(X: np.ndarray, coords: Mapping[str, np.ndarray], labels: np.ndarray, *, k: int,
                knn_k: int, n_folds: int, random_state: int = 0) -> pd.DataFrame:
    """Trustworthiness, continuity and k-NN accuracy of every map, and k-NN accuracy in full space.

    X : ndarray (n_samples, n_features); coords : method -> ndarray (n_samples, 2);
    labels : ndarray (n_samples,). Returns one row per space (`full`, then each method): space,
    dims, k, trustworthiness, continuity (both NaN for `full`), knn_k, knn_accuracy,
    knn_accuracy_std, n_samples.
    """
    X = np.asarray(X, np.float64)
    rows = []
    acc, sd = knn_accuracy(X, labels, knn_k, n_folds, random_state)
    rows.append({"space": "full", "dims": X.shape[1], "k": k, "trustworthiness": np.nan,
                 "continuity": np.nan, "knn_k": knn_k, "knn_accuracy": acc, "knn_accuracy_std": sd})
    for method in METHODS:
        Y = np.asarray(coords[method], np.float64)
        acc, sd = knn_accuracy(Y, labels, knn_k, n_folds, random_state)
        rows.append({"space": method, "dims": Y.shape[1], "k": k,
                     "trustworthiness": trustworthiness(X, Y, k), "continuity": continuity(X, Y, k),
                     "knn_k": knn_k, "knn_accuracy": acc, "knn_accuracy_std": sd})
    out = pd.DataFrame(rows)
    out["n_samples"] = len(X)
    return out
