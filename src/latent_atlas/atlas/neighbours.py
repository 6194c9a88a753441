"""Neighbourhoods of every point, in the latent space and in each 2-D map.

The atlas shows, per point, how much a map distorts the latent space: the Jaccard overlap of a
point's k nearest neighbours in the latent space and in the map (1 = the map keeps the point's
neighbourhood, 0 = none of its latent neighbours are near it in the map). Neighbours near in the
map but not in the latent space are *false* neighbours; near in the latent space but not in the
map, *missing* ones. With the same k in both spaces there are as many of one as of the other.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors


def nearest_neighbours(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other points of every point (Euclidean, exact).

    X : ndarray (n_samples, n_features). Returns (indices (n, k) int64, distances (n, k) float64),
    nearest first; a point is never its own neighbour, also when another point coincides with it.
    """
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    if not 1 <= k < n:
        raise ValueError(f"atlas.k: need 1 <= k < n_samples = {n}, got {k}")
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    # Drop the point itself; where duplicates put it elsewhere than first, drop it there.
    is_self = idx == np.arange(n)[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
    keep = np.ones_like(is_self)
    keep[np.arange(n), drop] = False
    return idx[keep].reshape(n, k), dist[keep].reshape(n, k)


def overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, how many indices two neighbour sets share: a, b (n, k) int -> (n,) int64."""
    # Each set has distinct members, so a shared index is exactly one equal adjacent pair.
    both = np.sort(np.concatenate([np.asarray(a), np.asarray(b)], axis=1), axis=1)
    return (both[:, 1:] == both[:, :-1]).sum(axis=1).astype(np.int64)


def jaccard(shared: np.ndarray, k: int) -> np.ndarray:
    """Jaccard index of two k-sets that share `shared` members: shared / (2k - shared), float32."""
    shared = np.asarray(shared, np.float64)
    return (shared / (2 * k - shared)).astype(np.float32)


def false_and_missing(latent: np.ndarray, mapped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One point's false neighbours (in `mapped`, not in `latent`) and missing ones (in `latent`,
    not in `mapped`), each in the order of the set it comes from."""
    latent, mapped = np.asarray(latent), np.asarray(mapped)
    return mapped[~np.isin(mapped, latent)], latent[~np.isin(latent, mapped)]


def local_density(distances: np.ndarray) -> np.ndarray:
    """Local density of each point: 1 / mean distance to its k nearest neighbours (n,) float32.

    distances : ndarray (n, k) from `nearest_neighbours`. A point whose neighbours all coincide
    with it gets the largest finite density of the others (not infinity).
    """
    mean = np.asarray(distances, np.float64).mean(axis=1)
    positive = mean > 0
    density = np.empty_like(mean)
    density[positive] = 1.0 / mean[positive]
    density[~positive] = density[positive].max() if positive.any() else 1.0
    return density.astype(np.float32)
