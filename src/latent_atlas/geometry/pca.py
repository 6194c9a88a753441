"""PCA of the latents: how many directions carry their variance."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from latent_atlas.geometry.baseline import check_cloud
from latent_atlas.projections import pca_fit, pca_variance_table


def pca_tables(Z: np.ndarray, sample_info: pd.DataFrame, thresholds: Sequence[float],
               random_state: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """PCA of the latents: variance per component, loadings, and every point's scores.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, d)
    sample_info : DataFrame with n_samples rows
        Id columns (sample_id, split, label, label_name) copied into the scores table.
    thresholds : sequence of float in (0, 1]
        Fractions of variance; `variance` gets `components_for_{t}` = the smallest number of
        components whose cumulative ratio reaches t (the same on every row).

    Returns
    -------
    variance : DataFrame, one row per component: `projections.pca_variance_table` (`component`,
        `explained_variance`, `explained_variance_ratio`, `cumulative`), then `components_for_{t}`.
    loadings : DataFrame, one row per component: `component`, then `z0 .. z{d-1}` (unit vectors).
    scores : DataFrame, id columns then `pc1 .. pc{d}` float32.
    """
    Z = check_cloud(Z)
    pca = pca_fit(Z, random_state=random_state)
    k = len(pca.explained_variance_ratio_)
    variance = pca_variance_table(pca)
    cumulative = variance["cumulative"].to_numpy()
    for t in thresholds:
        if not 0 < t <= 1:
            raise ValueError(f"PCA variance thresholds must lie in (0, 1]; got {t}")
        variance[f"components_for_{t:g}"] = components_for(cumulative, t)
    loadings = pd.DataFrame(pca.components_, columns=[f"z{i}" for i in range(Z.shape[1])])
    loadings.insert(0, "component", np.arange(1, k + 1))
    scores = sample_info.reset_index(drop=True).copy()
    pcs = pca.transform(Z).astype(np.float32)
    scores = pd.concat([scores, pd.DataFrame(pcs, columns=[f"pc{i + 1}" for i in range(k)])], axis=1)
    return variance, loadings, scores


def components_for(cumulative: np.ndarray, fraction: float) -> int:
    """Smallest number of components whose cumulative explained-variance ratio (k,) reaches `fraction`."""
    # A tolerance: 1.0 must be reachable although float sums stop a hair short of it.
    return int(min(np.searchsorted(np.asarray(cumulative) + 1e-9, fraction) + 1, len(cumulative)))
