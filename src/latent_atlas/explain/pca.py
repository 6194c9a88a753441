"""PCA as tables: scree, loadings, and one sample's PCA coordinates split into per-feature
contributions (what puts the sample where it lands on PC1 and PC2)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from latent_atlas.explain.features import magnitude_rank
from latent_atlas.projections import pca_variance_table


def pca_tables(pca, columns: Sequence[str], n_components: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scree and loadings of a fitted sklearn PCA (fitted on features named `columns`).

    Returns
    -------
    scree : `projections.pca_variance_table` (component, explained_variance,
        explained_variance_ratio, cumulative), the table geometry writes too
    loadings : component (1-based, first `n_components`), feature, loading (the unit-length
        principal axis entry, so a sample's coordinate is sum_i (x_i - mean_i) * loading_i),
        mean (the feature's mean, the centre of the projection)
    """
    scree = pca_variance_table(pca)
    m = min(n_components, pca.components_.shape[0])
    loadings = pd.DataFrame({
        "component": np.repeat(np.arange(1, m + 1, dtype=np.int32), len(columns)),
        "feature": list(columns) * m,
        "loading": pca.components_[:m].ravel(),
        "mean": np.tile(pca.mean_, m),
    })
    return scree, loadings


def variance_at(scree: pd.DataFrame, n_components: int) -> float:
    """Cumulative explained variance ratio of the first `n_components` (all, if fewer exist)."""
    cum = scree.sort_values("component")["cumulative"].to_numpy()
    return float(cum[min(n_components, len(cum)) - 1])


def pca_contributions(x: np.ndarray, pca, columns: Sequence[str], components: Sequence[int] = (1, 2)) -> pd.DataFrame:
    """One sample's PCA coordinates split into per-feature contributions.

    x : ndarray (n_features,). For component c (1-based): contribution_i = (x_i - mean_i) *
    loading_ci, and the contributions sum to the sample's coordinate on c. Returns component,
    feature, value, mean, loading, contribution, rank (1 = largest |contribution|).
    """
    x = np.asarray(x, np.float64).ravel()
    if x.shape[0] != pca.mean_.shape[0]:
        raise ValueError(f"sample has {x.shape[0]} features, the PCA was fitted on {pca.mean_.shape[0]}")
    parts = []
    for c in components:
        load = pca.components_[c - 1]
        contrib = (x - pca.mean_) * load
        parts.append(pd.DataFrame({"component": np.int32(c), "feature": list(columns), "value": x,
                                   "mean": pca.mean_, "loading": load, "contribution": contrib,
                                   "rank": magnitude_rank(contrib)}))
    return pd.concat(parts, ignore_index=True)
