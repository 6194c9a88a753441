"""2-D maps (t-SNE, UMAP, PCA) of seeded, stratified subsamples of the latents."""

from __future__ import annotations

import logging
from typing import Mapping

import numpy as np
import pandas as pd

from latent_atlas.projections import project, subsample_indices

log = logging.getLogger("latent_atlas")


def parse_space(space: str) -> int | None:
    """Projection input name -> PCA components: "raw" -> None, "pca4" -> 4."""
    if space == "raw":
        return None
    if space.startswith("pca") and space[3:].isdigit() and int(space[3:]) >= 1:
        return int(space[3:])
    raise ValueError(f"projection space must be 'raw' or 'pca<k>'; got {space!r}")


def projection_table(Z: np.ndarray, ids: pd.DataFrame, method: str, params: Mapping, space: str, n: int,
                     random_state: int = 0, n_jobs: int = 1) -> pd.DataFrame:
    """2-D t-SNE / UMAP / PCA map of a stratified, seeded subsample of `n` latents.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, d)
    ids : DataFrame with n_samples rows: the id columns of the latents (`Latents.ids`).
    method : "tsne", "umap" or "pca"
    params : keyword arguments of the method (sample_sizes is dropped here).
    space : "raw" or "pca<k>" (PCA to k components first, capped at d).
    n : int
        Sample size, capped at the number of latents.
    n_jobs : int
        openTSNE threads (its result depends on them).

    Returns
    -------
    DataFrame, one row per sampled latent: id columns, `x`, `y` (float32), `method`, `space`,
    `n_requested`.
    """
    Z = np.asarray(Z, dtype=np.float64)
    k = parse_space(space)
    if k is not None and k > Z.shape[1]:
        log.info("PCA to %d components capped at the latent dimension %d", k, Z.shape[1])
        k = Z.shape[1]
    idx = subsample_indices(len(Z), n, random_state, labels=ids["label"].to_numpy())
    if len(idx) < n:
        log.info("sample size %d capped at the %d latents available", n, len(idx))
    params = {key: v for key, v in params.items() if key != "sample_sizes"}
    coords, _ = project(Z[idx], method, params, pca_components=k, random_state=random_state, n_jobs=n_jobs)
    out = ids.reset_index(drop=True).iloc[idx].reset_index(drop=True)
    out["x"], out["y"] = coords[:, 0], coords[:, 1]
    out["method"], out["space"], out["n_requested"] = method, space, np.int64(n)
    return out
