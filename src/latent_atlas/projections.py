"""2-D projections of point clouds shared by the geometry and explain stages: PCA, t-SNE, UMAP.

Every function is deterministic for fixed inputs, `random_state` and `n_jobs`:

- openTSNE's result depends on its thread count (`n_jobs`), so callers pass `numeric_threads`
  from config and never `--cores`.
- umap-learn is reproducible only with `random_state` set, which makes it single-threaded; we
  always set it (and `n_jobs=1` explicitly, which silences umap's warning about the override).

`project` is the one entry point the workflow uses: an optional PCA to k components, then the
chosen 2-D method; it returns float32 coordinates and a fitted `Projection` that places new
points with `.transform`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from latent_atlas.numba_cache import enable_cache

METHODS = ("pca", "tsne", "umap")

TSNE_PARAMS = ("perplexity", "early_exaggeration", "n_iter", "early_exaggeration_iter",
               "initialization", "metric")
UMAP_PARAMS = ("n_neighbors", "min_dist", "metric")


def _as_matrix(X, name: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{name} must have shape (n_samples, n_features); got shape {X.shape}")
    if len(X) < 2:
        raise ValueError(f"{name} needs at least 2 samples to project; got {len(X)}")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return X


def pca_fit(X, n_components: int | None = None, random_state: int = 0) -> PCA:
    """Fit a PCA (full SVD: exact and deterministic).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int or None
        Components to keep (capped at min(n_samples, n_features)); None keeps all.
    random_state : int
        Passed to scikit-learn (unused by the full solver, kept for a uniform signature).

    Returns
    -------
    sklearn.decomposition.PCA, fitted; `explained_variance_ratio_` sums to 1 when all
    components are kept.
    """
    X = _as_matrix(X)
    k_max = min(X.shape)
    k = k_max if n_components is None else int(n_components)
    if k < 1:
        raise ValueError(f"n_components must be >= 1; got {n_components}")
    return PCA(n_components=min(k, k_max), svd_solver="full", random_state=random_state).fit(X)


def pca_variance_table(pca: PCA) -> pd.DataFrame:
    """The variance table of a fitted PCA, the same in every stage (geometry `pca_variance`,
    explain `pca_scree`): one row per component, `component` (1-based, int64),
    `explained_variance`, `explained_variance_ratio` and its running sum `cumulative` (float64)."""
    ratio = np.asarray(pca.explained_variance_ratio_, np.float64)
    return pd.DataFrame({"component": np.arange(1, len(ratio) + 1, dtype=np.int64),
                         "explained_variance": np.asarray(pca.explained_variance_, np.float64),
                         "explained_variance_ratio": ratio, "cumulative": np.cumsum(ratio)})


def tsne_fit(X, *, perplexity: float = 30.0, early_exaggeration: float = 12.0, n_iter: int = 500,
             early_exaggeration_iter: int = 250, initialization: str = "pca",
             metric: str = "euclidean", random_state: int = 0, n_jobs: int = 1):
    """Fit a 2-D t-SNE embedding with openTSNE.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    perplexity : float
        Capped at (n_samples - 1) / 3, the most the affinity model supports.
    early_exaggeration, n_iter, early_exaggeration_iter, initialization, metric
        As in `openTSNE.TSNE` (`n_iter` counts the iterations after the exaggeration phase).
    random_state : int
    n_jobs : int
        Threads; the result depends on it, so pass `numeric_threads` from config.

    Returns
    -------
    openTSNE.TSNEEmbedding of shape (n_samples, 2): `np.asarray(emb)` gives the coordinates,
    `emb.transform(X_new)` places new points into the fixed embedding. The embedding is
    centred on its bounding box (as openTSNE's `transform` would otherwise do in place later).
    """
    from openTSNE import TSNE

    X = _as_matrix(X)
    perplexity = float(min(perplexity, (len(X) - 1) / 3.0))
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        early_exaggeration=float(early_exaggeration),
        early_exaggeration_iter=int(early_exaggeration_iter),
        n_iter=int(n_iter),
        initialization=initialization,
        metric=metric,
        n_jobs=int(n_jobs),
        random_state=int(random_state),
        verbose=False,
    )
    embedding = tsne.fit(X)
    # openTSNE's `transform` centres the embedding in place on its bounding box before placing new
    # points; centre it now, so the fitted map and later placements share one frame.
    embedding -= (np.max(embedding, axis=0) + np.min(embedding, axis=0)) / 2
    return embedding


def umap_fit(X, *, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "euclidean",
             random_state: int = 0):
    """Fit a 2-D UMAP with umap-learn, seeded (hence single-threaded and reproducible).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_neighbors : int
        Capped at n_samples - 1.
    min_dist, metric
        As in `umap.UMAP`.
    random_state : int
        Seeds the layout and `transform` of new points.

    Returns
    -------
    umap.UMAP, fitted: `.embedding_` of shape (n_samples, 2), `.transform(X_new)`.
    """
    import umap  # imported here: ~3 s, and numba compiles its functions on the first fit

    enable_cache("umap", "pynndescent")  # ... once per machine, not once per process (12-14 s)

    _use_numpy_knn_indices()
    X = _as_matrix(X)
    model = umap.UMAP(
        n_neighbors=int(max(2, min(n_neighbors, len(X) - 1))),
        n_components=2,
        min_dist=float(min_dist),
        metric=metric,
        random_state=int(random_state),
        transform_seed=int(random_state),
        n_jobs=1,
        verbose=False,
    )
    return model.fit(X)


def knn_indices(distances: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Each row's `n_neighbors` smallest entries of a distance matrix, nearest first: (n, k) int32.

    The same indices as umap-learn's `umap.utils.fast_knn_indices` (a stable argsort of each row,
    so ties go to the lower index), in numpy.
    """
    return np.argsort(distances, axis=1, kind="stable")[:, :n_neighbors].astype(np.int32)


def _use_numpy_knn_indices() -> None:
    """Let umap-learn find the neighbours of a small data set (< 4,096 samples: it computes all
    distances, then `fast_knn_indices`) with `knn_indices`, which gives the same indices.

    umap's function is numba with parallel=True, which numba compiled again in every new process
    (9 s of a 12 s fit of 300 points here, for milliseconds of work) before `enable_cache`; it
    still skips that compilation in a fresh environment. Left as it is if umap-learn's layout is
    not the one this was written for (0.5.x).
    """
    import umap.umap_
    import umap.utils

    if getattr(umap.umap_, "fast_knn_indices", None) is getattr(umap.utils, "fast_knn_indices", False):
        umap.umap_.fast_knn_indices = knn_indices


@dataclass
class Projection:
    """A fitted projection: optional PCA reduction (`pca`) followed by `model` (`method`).

    `model` is a `PCA` (method "pca"), an `openTSNE.TSNEEmbedding` ("tsne") or a `umap.UMAP`
    ("umap"); `pca` is the PCA to `pca_components` applied first, or None.
    """

    method: str
    model: Any
    pca: PCA | None = None

    def reduce(self, X) -> np.ndarray:
        """X (m, n_features) -> the input the 2-D method saw (after the optional PCA)."""
        X = _as_matrix(X)
        return X if self.pca is None else self.pca.transform(X)

    def transform(self, X) -> np.ndarray:
        """Place new points (m, n_features) into the fitted 2-D map: float32 (m, 2)."""
        Z = self.reduce(X)
        if self.method == "pca":
            out = self.model.transform(Z)[:, :2]
        elif self.method == "tsne":
            out = np.asarray(self.model.transform(Z))
        else:
            out = self.model.transform(Z)
        return np.asarray(out, dtype=np.float32)


def _check_params(method: str, params: Mapping[str, Any]) -> dict:
    allowed = {"pca": (), "tsne": TSNE_PARAMS, "umap": UMAP_PARAMS}[method]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {method} parameter(s) {unknown}; allowed: {list(allowed)}")
    return dict(params)


def project(X, method: str, params: Mapping[str, Any] | None = None, *,
            pca_components: int | None = None, random_state: int = 0, n_jobs: int = 1):
    """Project X to 2-D with `method`, optionally after PCA to `pca_components` components.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    method : {"pca", "tsne", "umap"}
    params : dict
        Keyword arguments of `tsne_fit` (perplexity, early_exaggeration, n_iter,
        early_exaggeration_iter, initialization, metric) or `umap_fit` (n_neighbors, min_dist,
        metric); empty for "pca".
    pca_components : int or None
        Reduce to this many principal components first (capped at n_features); None = raw X.
    random_state : int
    n_jobs : int
        openTSNE threads (results depend on it); UMAP and PCA ignore it.

    Returns
    -------
    coords : ndarray of shape (n_samples, 2), float32
    model : Projection
        Fitted; `model.transform(X_new)` gives float32 (m, 2) coordinates of new points.
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r}; use one of {list(METHODS)}")
    params = _check_params(method, params or {})
    X = _as_matrix(X)
    pca = None
    if pca_components is not None:
        if int(pca_components) < 1:
            raise ValueError(f"pca_components must be >= 1; got {pca_components}")
        pca = pca_fit(X, n_components=pca_components, random_state=random_state)
        X = pca.transform(X)
    if method == "pca":
        if X.shape[1] < 2:
            raise ValueError(f"PCA to 2-D needs at least 2 features; got {X.shape[1]}")
        model = pca_fit(X, n_components=2, random_state=random_state)
        coords = model.transform(X)
    elif method == "tsne":
        model = tsne_fit(X, random_state=random_state, n_jobs=n_jobs, **params)
        coords = np.asarray(model)
    else:
        model = umap_fit(X, random_state=random_state, **params)
        coords = model.embedding_
    return np.asarray(coords, dtype=np.float32), Projection(method=method, model=model, pca=pca)


def subsample_indices(n: int, size: int | None, random_state: int = 0,
                      labels: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of a seeded subsample of `size` out of `n` (all of them if size >= n).

    Parameters
    ----------
    n : int
        Population size.
    size : int or None
        Sample size; None or >= n returns `arange(n)`.
    random_state : int
    labels : ndarray of shape (n,), optional
        Stratify: each class gets a share proportional to its count (largest remainders fill
        the rest), drawn within the class.

    Returns
    -------
    ndarray of shape (min(size, n),), int64, sorted ascending.
    """
    n = int(n)
    if size is None or int(size) >= n:
        return np.arange(n, dtype=np.int64)
    size = int(size)
    if size < 1:
        raise ValueError(f"subsample size must be >= 1; got {size}")
    rng = np.random.default_rng(random_state)
    if labels is None:
        idx = rng.choice(n, size=size, replace=False)
        return np.sort(idx).astype(np.int64)
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},); got {labels.shape}")
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * size / n
    take = np.floor(quota).astype(int)
    rest = size - take.sum()
    order = np.lexsort((classes, -(quota - take)))  # largest remainder first, ties by class
    take[order[:rest]] += 1
    picked = [rng.choice(np.flatnonzero(labels == c), size=t, replace=False)
              for c, t in zip(classes, take) if t > 0]
    return np.sort(np.concatenate(picked)).astype(np.int64)
