"""Neighbourhoods of every point, in the latent space and in each 2-D map.

The atlas shows, per point, how much a map distorts the latent space: the Jaccard overlap of a
point's k nearest neighbours in the latent space and in the map (1 = the map keeps the point's
neighbourhood, 0 = none of its latent neighbours are near it in the map). Neighbours near in the
map but not in the latent space are *false* neighbours; near in the latent space but not in the
map, *missing* ones. With the same k in both spaces there are as many of one as of the other.

`nearest_neighbours` is the one neighbour search of the package (the atlas and the compare
stage's k-NN overlap use it). It is exact (scikit-learn) while the brute-force distance matrix is
cheap, n^2 d <= `EXACT_MAX_COST` multiply-adds (70,000 points of 100 dimensions; the atlas's tests,
the test config and the default run's atlases of 5,000 points are far below it, so their outputs
keep their bytes); above it, it searches with NN-descent (pynndescent), seeded and
single-threaded so that the same `random_state` gives the same neighbours on any machine. Its
recall against the exact search is measured in benchmarks/compare.py (docs/benchmarks.md).
pynndescent compiles its search with numba on the first call in a process: about 37 s in a fresh
environment, ~15 s once `numba_cache` has kept what numba can cache on disk (its core search
loop it cannot). The exact search never imports it.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

# Where NN-descent starts to pay for itself (benchmarks/compare.py, one core): brute force costs
# 5.3e-11 s per multiply-add (67 s for 70,000 x 256), NN-descent 9-12 s at 70,000 points plus ~37 s
# of numba compilation once per process (15 s with a warm numba cache), so a pair's two searches
# break even near 5e11.
EXACT_MAX_COST = 5e11
# NN-descent's recall falls with the degree of the graph it refines: below pynndescent's default
# of 30 neighbours it drops steeply (recall@10 0.84 at 11, 0.98 at 20, 0.996 at 30 on latents like
# the benchmark's).
MIN_GRAPH_DEGREE = 30
SEARCHES = ("auto", "exact", "nndescent")


def nearest_neighbours(X: np.ndarray, k: int, *, search: str = "auto",
                       random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other points of every point (Euclidean).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    k : int
        Neighbours per point, 1 <= k < n_samples.
    search : {"auto", "exact", "nndescent"}
        "auto": exact when n_samples^2 n_features <= EXACT_MAX_COST, else NN-descent.
    random_state : int
        Seed of NN-descent (the exact search does not use it).

    Returns
    -------
    indices : ndarray of shape (n_samples, k), int64, nearest first
    distances : ndarray of shape (n_samples, k), float64
        A point is never its own neighbour, also when another point coincides with it.
    """
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    if not 1 <= k < n:
        raise ValueError(f"atlas.k: need 1 <= k < n_samples = {n}, got {k}")
    if search not in SEARCHES:
        raise ValueError(f"search: expected one of {SEARCHES}, got {search!r}")
    if search == "exact" or (search == "auto" and float(n) ** 2 * X.shape[1] <= EXACT_MAX_COST):
        dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
        return _without_self(idx, dist, k)
    return _nndescent_neighbours(X, k, random_state)


def _without_self(idx: np.ndarray, dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first k of each row's candidates (n, >k) other than the point itself."""
    n = len(idx)
    # Drop the point itself; where duplicates put it elsewhere than first, drop it there, and where
    # it is missing (an approximate search), drop the last candidate.
    is_self = idx == np.arange(n)[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), idx.shape[1] - 1)
    keep = np.ones_like(is_self)
    keep[np.arange(n), drop] = False
    width = idx.shape[1] - 1
    return idx[keep].reshape(n, width)[:, :k], dist[keep].reshape(n, width)[:, :k]


def _nndescent_neighbours(X: np.ndarray, k: int, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """NN-descent's k nearest others of every point, with float64 distances, nearest first."""
    import numba
    import pynndescent

    from latent_atlas.numba_cache import enable_cache

    enable_cache("pynndescent")
    degree = min(max(k + 1, MIN_GRAPH_DEGREE), len(X) - 1)
    threads = numba.get_num_threads()
    try:
        # One thread: pynndescent's candidate sampling depends on the thread count.
        idx, _ = pynndescent.NNDescent(X, n_neighbors=degree, random_state=random_state,
                                       n_jobs=1).neighbor_graph
    finally:
        numba.set_num_threads(threads)  # pynndescent sets numba's global thread count
    # pynndescent ranks in float32: measure the k + 1 nearest candidates again in float64 and
    # re-rank them (a candidate further down could only move up across a float32 rounding).
    idx = idx[:, :k + 1].astype(np.int64)
    dist = np.empty(idx.shape)
    for j in range(k + 1):
        dist[:, j] = np.linalg.norm(X - X[idx[:, j]], axis=1)
    order = np.argsort(dist, axis=1, kind="stable")
    idx, dist = np.take_along_axis(idx, order, axis=1), np.take_along_axis(dist, order, axis=1)
    return _without_self(idx, dist, k)


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
