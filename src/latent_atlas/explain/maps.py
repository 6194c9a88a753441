"""The maps: which samples they are drawn from, PCA, t-SNE and UMAP of those samples, and where
new samples land in them.

The explained samples are never part of a map: they are placed afterwards with each method's
`transform`, as a new input would be. Projections come from `latent_atlas.projections`, shared
with the geometry stage.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from latent_atlas import projections
from latent_atlas.latents import ID_COLUMNS
from latent_atlas.projections import METHODS


def split_rows(ids: pd.DataFrame, split: str) -> pd.DataFrame:
    """Rows of `split` ('train', 'test' or 'all') of an id frame, in the frame's order."""
    if split == "all":
        return ids
    rows = ids[ids["split"] == split]
    if rows.empty:
        raise ValueError(f"explain.split: no rows with split {split!r} (have {sorted(ids['split'].unique())})")
    return rows


def map_subset(ids: pd.DataFrame, split: str, n_samples: int, exclude: Sequence[int] = (),
               random_state: int = 0) -> np.ndarray:
    """The samples every map is fitted on: at most `n_samples` rows of `split`, seeded.

    ids : the id frame of the latents (n_rows, 4). The explained samples (`exclude`, sample ids)
    are left out, so that their placement in each map is a true out-of-sample `transform`.
    Returns ndarray of shape (n_map,), int64: positions of the chosen rows in `ids`, ascending.
    """
    rows = split_rows(ids.reset_index(drop=True), split)
    rows = rows[~rows["sample_id"].isin(list(exclude))]
    if len(rows) < 10:
        raise ValueError(f"explain: only {len(rows)} samples of split {split!r} to map; need at least 10")
    idx = projections.subsample_indices(len(rows), min(n_samples, len(rows)), random_state)
    return rows.index.to_numpy()[idx].astype(np.int64)


def embed_maps(X: np.ndarray, *, tsne: Mapping[str, Any], umap: Mapping[str, Any],
               random_state: int = 0, n_jobs: int = 1) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit PCA, t-SNE and UMAP on the same samples.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    tsne, umap : keyword arguments of `projections.tsne_fit` / `projections.umap_fit`.

    Returns
    -------
    coords : dict method -> ndarray of shape (n_samples, 2), float64
        PCA coordinates are the first two principal components of the full PCA.
    models : dict method -> fitted model (sklearn PCA with every component, openTSNE
        TSNEEmbedding, umap.UMAP); each has `transform` for new samples.
    """
    X = np.asarray(X, dtype=np.float64)
    pca = projections.pca_fit(X, n_components=None, random_state=random_state)
    tsne_model = projections.tsne_fit(X, random_state=random_state, n_jobs=n_jobs, **tsne)
    umap_model = projections.umap_fit(X, random_state=random_state, **umap)
    coords = {
        "pca": pca.transform(X)[:, :2],
        "tsne": np.array(tsne_model, dtype=np.float64),
        "umap": np.array(umap_model.embedding_, dtype=np.float64),
    }
    return coords, {"pca": pca, "tsne": tsne_model, "umap": umap_model}


def place_samples(models: Mapping[str, Any], X_new: np.ndarray) -> dict[str, np.ndarray]:
    """Where new samples land in each fitted map (PCA projection, openTSNE and UMAP `transform`).

    X_new : ndarray (n_new, n_features). Returns method -> ndarray (n_new, 2), float64.
    """
    X_new = np.asarray(X_new, dtype=np.float64)
    return {
        "pca": models["pca"].transform(X_new)[:, :2],
        "tsne": np.asarray(models["tsne"].transform(X_new), dtype=np.float64),
        "umap": np.asarray(models["umap"].transform(X_new), dtype=np.float64),
    }


def coords_table(ids: pd.DataFrame, coords: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Long table: the id columns of `ids` (n rows) repeated per method, with `method`, `x`, `y`
    (float32), 3 n rows in METHODS order."""
    parts = []
    for method in METHODS:
        xy = np.asarray(coords[method])
        if xy.shape != (len(ids), 2):
            raise ValueError(f"{method} coordinates have shape {xy.shape}, expected ({len(ids)}, 2)")
        part = ids[ID_COLUMNS].reset_index(drop=True).copy()
        part.insert(0, "method", method)
        part["x"] = xy[:, 0].astype(np.float32)
        part["y"] = xy[:, 1].astype(np.float32)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def method_rows(table: pd.DataFrame, method: str) -> pd.DataFrame:
    """The rows of one method of a `coords_table`, in row order."""
    rows = table[table["method"] == method]
    if rows.empty:
        raise ValueError(f"no coordinates for method {method!r} (have {sorted(table['method'].unique())})")
    return rows


def coords_of(table: pd.DataFrame, method: str) -> np.ndarray:
    """(n, 2) float64 coordinates of one method from a `coords_table`, in row order."""
    return method_rows(table, method)[["x", "y"]].to_numpy(dtype=np.float64)
