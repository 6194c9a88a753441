"""Context clusters of conditional permutation importance: k-means of each group's context ring.

A conditional permutation (`groups`, `importance.permutation: conditional`) moves images only within
clusters of their context, so every group of a block needs its own clustering of N images. A
library call per group (scikit-learn's KMeans, SciPy's kmeans2) costs 10-25 ms in set-up and
checks alone, more than the compiled kernel spends on a pixel's whole permutation importance
(about 3 ms for 10,000 images), so the clusterings of a block run here in one compiled call,
parallel over groups:

- the centres are fitted on `FIT_SAMPLES` images drawn per group (seeded by (seed, the group's first
  pixel), so a group's clusters never depend on its block): k-means++ seeding (Arthur &
  Vassilvitskii 2007) and `ITERATIONS` Lloyd iterations (a centre left without points stays);
- every image then joins its nearest centre (squared Euclidean distance, float64).

`within_clusters` turns a group's marginal permutation into one within its clusters in O(N).

tests/test_importance_groups.py checks the clusters against scikit-learn's KMeans on the same data
(within-cluster sum of squares) and on separated blobs (the same partition).
"""

from __future__ import annotations

import numba
import numpy as np

from latent_atlas.importance.groups import context_ring

FIT_SAMPLES = 500  # images the centres of a group's clusters are fitted on
ITERATIONS = 10  # Lloyd iterations on them
FEATURE_BYTES = 1 << 27  # the context values of the groups clustered in one call


@numba.njit(cache=True, inline="always")
def _sqdist(x, c, f):
    s = 0.0
    for j in range(f):
        d = np.float64(x[j]) - c[j]
        s += d * d
    return s


@numba.njit(cache=True)
def _nearest(x, centres, kk, f):
    best, arg = np.inf, 0
    for c in range(kk):
        d = _sqdist(x, centres[c], f)
        if d < best:
            best, arg = d, c
    return arg


@numba.njit(parallel=True, cache=True)
def _kmeans(features, n_features, fit, uniforms, k, iterations, labels):
    """labels[g] (N,) of features[g, :, :n_features[g]] (N, F): k-means++ seeding with
    uniforms[g] (k,) on the rows fit[g] (S,), then Lloyd iterations on them, then every row to its
    nearest centre."""
    n_groups, n, width = features.shape
    s_count = fit.shape[1]
    for g in numba.prange(n_groups):
        x = features[g]
        f = n_features[g]
        centres = np.zeros((k, width))
        first = fit[g, min(int(uniforms[g, 0] * s_count), s_count - 1)]
        for j in range(f):
            centres[0, j] = x[first, j]
        d2 = np.empty(s_count)
        for s in range(s_count):
            d2[s] = _sqdist(x[fit[g, s]], centres[0], f)
        kk = 1
        for c in range(1, k):
            total = d2.sum()
            if total <= 0.0:  # every fitted row sits on a centre: fewer distinct rows than clusters
                break
            target, acc, pick = uniforms[g, c] * total, 0.0, s_count - 1
            for s in range(s_count):
                acc += d2[s]
                if acc >= target and d2[s] > 0.0:
                    pick = s
                    break
            for j in range(f):
                centres[c, j] = x[fit[g, pick], j]
            kk += 1
            for s in range(s_count):
                d = _sqdist(x[fit[g, s]], centres[c], f)
                if d < d2[s]:
                    d2[s] = d
        sums = np.zeros((k, width))
        counts = np.zeros(k)
        for _ in range(iterations):
            sums[:] = 0.0
            counts[:] = 0.0
            for s in range(s_count):
                row = fit[g, s]
                a = _nearest(x[row], centres, kk, f)
                counts[a] += 1.0
                for j in range(f):
                    sums[a, j] += x[row, j]
            for c in range(kk):
                if counts[c] > 0:
                    for j in range(f):
                        centres[c, j] = sums[c, j] / counts[c]
        for i in range(n):
            labels[g, i] = _nearest(x[i], centres, kk, f)


def context_clusters(flat: np.ndarray, groups: list[np.ndarray], height: int, width: int, *, ring: int,
                     n_clusters: int, seed: int) -> list[np.ndarray]:
    """Cluster labels (N,) per group: the images clustered by the group's context (its
    `groups.context_ring` of width `ring`, all channels) into at most `n_clusters` k-means
    clusters (fewer where the context has fewer distinct values; one where the group has no
    context).

    flat : ndarray (N, C, H * W) float32, the evaluation images.
    """
    n, c, _ = flat.shape
    k = max(1, min(int(n_clusters), n))
    rings = [context_ring(g, height, width, ring) for g in groups]
    out: list[np.ndarray] = [np.zeros(n, dtype=np.int64) for _ in groups]
    todo = [i for i, r in enumerate(rings) if len(r) and k > 1]
    if not todo:
        return out
    size = min(FIT_SAMPLES, n)
    widest = c * max(len(rings[i]) for i in todo)
    per_call = max(1, FEATURE_BYTES // (4 * n * widest))
    for start in range(0, len(todo), per_call):
        chunk = todo[start:start + per_call]
        features = np.zeros((len(chunk), n, widest), dtype=np.float32)
        n_features = np.empty(len(chunk), dtype=np.int64)
        fit = np.empty((len(chunk), size), dtype=np.int64)
        uniforms = np.empty((len(chunk), k))
        for q, i in enumerate(chunk):
            values = flat[:, :, rings[i]].reshape(n, -1)
            features[q, :, :values.shape[1]] = values
            n_features[q] = values.shape[1]
            rng = np.random.default_rng([int(seed), int(np.min(groups[i]))])
            fit[q] = np.sort(rng.choice(n, size, replace=False))
            uniforms[q] = rng.random(k)
        labels = np.empty((len(chunk), n), dtype=np.int64)
        _kmeans(features, n_features, fit, uniforms, k, ITERATIONS, labels)
        for q, i in enumerate(chunk):
            out[i] = labels[q]
    return out


@numba.njit(cache=True)
def _within(perm, labels, by_index, starts, out):
    """Visit the images in their order in `perm` (image perm[i] has position i) and deal each to the
    next slot of its cluster: each cluster's members ordered by position, in O(N)."""
    slot = starts.copy()
    ordered = np.empty(len(perm), dtype=np.int64)
    for i in range(len(perm)):
        s = perm[i]
        c = labels[s]
        ordered[slot[c]] = s
        slot[c] += 1
    for j in range(len(perm)):
        out[by_index[j]] = ordered[j]


def cluster_order(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The images in cluster order (by cluster, then index) and each cluster's first slot: what
    `within_clusters` needs of a labelling, computed once per group."""
    labels = np.asarray(labels, dtype=np.int64)
    by_index = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(labels))[:-1]]).astype(np.int64)
    return by_index, starts


def within_clusters(perm: np.ndarray, labels: np.ndarray, order=None) -> np.ndarray:
    """A permutation that moves every image only within its cluster, drawn from `perm`: the
    members of a cluster (in index order) are mapped to the same members ordered by their position
    in `perm`. A uniform permutation gives a uniform permutation within each cluster; with one
    cluster it is `perm` itself. `order`: `cluster_order(labels)`, when computed already."""
    labels = np.asarray(labels, dtype=np.int64)
    by_index, starts = cluster_order(labels) if order is None else order
    out = np.empty(len(perm), dtype=np.int64)
    _within(np.asarray(perm, dtype=np.int64), labels, by_index, starts, out)
    return out
