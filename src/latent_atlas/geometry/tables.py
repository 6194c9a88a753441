"""Every geometry table of one model's latents (rule geometry_tables), in one pass."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from latent_atlas.geometry.axes import axis_histograms, axis_summary
from latent_atlas.geometry.baseline import check_cloud
from latent_atlas.geometry.neighbours import neighbour_tables
from latent_atlas.geometry.pca import pca_tables
from latent_atlas.geometry.planes import plane_tables
from latent_atlas.geometry.radius import radius_tables
from latent_atlas.geometry.summary import filled_gaussian_summary


def model_tables(Z: np.ndarray, ids: pd.DataFrame, cfg: Mapping,
                    random_state: int = 0) -> dict[str, pd.DataFrame]:
    """Density along axes, radius, PCA, planes, neighbours and the summary of one model's latents.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, d)
    ids : DataFrame with n_samples rows: the id columns of the latents (`Latents.ids`).
    cfg : the `geometry` config section (defaults filled in by the schema).
    random_state : int

    Returns
    -------
    dict name -> DataFrame with keys axis_density, axis_summary, radius_histogram,
    radius_summary, pca_variance, pca_loadings, pca_scores, planes, zoom, neighbours,
    intrinsic_dimension, summary (see the functions that make them for their columns).
    """
    Z = check_cloud(Z)
    ids = ids.reset_index(drop=True)
    out: dict[str, pd.DataFrame] = {}
    out["axis_density"] = axis_histograms(Z, cfg["axes"]["bin_width"])
    out["axis_summary"] = axis_summary(out["axis_density"], Z, cfg["axes"]["off_centre_ratio"],
                                       cfg["axes"]["width_ratio"])
    out["radius_histogram"], out["radius_summary"] = radius_tables(Z, cfg["radius"]["bin_widths"], random_state)
    out["pca_variance"], out["pca_loadings"], out["pca_scores"] = pca_tables(
        Z, ids, cfg["pca"]["thresholds"], random_state)
    pc = cfg["planes"]
    out["planes"], out["zoom"] = plane_tables(Z, out["pca_scores"], out["axis_summary"], pc["pca_pairs"],
                                              pc["axis_pairs"], pc["windows"], pc["centre"],
                                              pc["occupancy_grid"], random_state)
    nc = cfg["neighbours"]
    out["neighbours"], out["intrinsic_dimension"] = neighbour_tables(Z, ids, nc["n_samples"], nc["k_local"],
                                                                    random_state)
    out["summary"] = filled_gaussian_summary(out["axis_summary"], out["radius_summary"], out["pca_variance"],
                                             out["neighbours"], out["intrinsic_dimension"], out["zoom"])
    return out
