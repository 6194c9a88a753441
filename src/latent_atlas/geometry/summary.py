"""How far a latent cloud is from the filled Gaussian, in one table per model and one per dataset."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from scipy import stats


def filled_gaussian_summary(axes: pd.DataFrame, radius: pd.DataFrame, variance: pd.DataFrame,
                            points: pd.DataFrame, dimension: pd.DataFrame,
                            zoom: pd.DataFrame) -> pd.DataFrame:
    """One table saying how far a latent cloud is from a Gaussian with its mean and covariance.

    Parameters
    ----------
    axes : DataFrame from `axes.axis_summary`
    radius : summary DataFrame from `radius.radius_tables`
    variance : DataFrame from `pca.pca_tables`
    points, dimension : DataFrames from `neighbours.neighbour_tables`
    zoom : DataFrame from `planes.zoom_table`

    Returns
    -------
    A long DataFrame: `metric`, `latents`, `gaussian` (the same number for the baseline; NaN
    where it is not defined), `ratio` (latents / gaussian), `note`.
    """
    r = radius.set_index("source")
    dim = dimension.set_index("source")
    lat = points[points["source"] == "latents"]["nn_distance"].to_numpy()
    gau = points[points["source"] == "gaussian"]["nn_distance"].to_numpy()
    ks = stats.ks_2samp(lat, gau)
    d = int(r.loc["latents", "d"])
    rows = [
        ("latent_dim", d, d, "dimension d of the latent space"),
        ("n_samples", r.loc["latents", "n"], r.loc["gaussian_matched", "n"], "latent vectors used"),
        ("radius_peak", r.loc["latents", "peak_radius"], r.loc["gaussian_matched", "peak_radius"],
         "KDE mode of |z|; a standard Gaussian peaks at sqrt(d-1) = %.3f" % np.sqrt(d - 1)),
        ("radius_peak_over_sqrt_d", r.loc["latents", "peak_over_sqrt_d"],
         r.loc["gaussian_matched", "peak_over_sqrt_d"], "peak radius / sqrt(d)"),
        ("off_centre_axes", int(axes["off_centre"].sum()), np.nan, "axes with |mode| > ratio * FWHM"),
        ("unusual_width_axes", int(axes["unusual_width"].sum()), np.nan, "axes with FWHM far from the median"),
    ]
    for col in [c for c in variance.columns if c.startswith("components_for_")]:
        rows.append((col, int(variance[col].iloc[0]), int(variance[col].iloc[0]),
                     "PCA components for that fraction of variance (same covariance by construction)"))
    rows += [
        ("pc1_variance_ratio", variance["explained_variance_ratio"].iloc[0], variance["explained_variance_ratio"].iloc[0], "variance explained by PC1"),
        ("nn_distance_median", np.median(lat), np.median(gau), "median nearest-neighbour distance"),
        ("nn_distance_ks", ks.statistic, 0.0, "two-sample KS statistic, latents vs Gaussian NN distances"),
        ("twonn_dimension", dim.loc["latents", "twonn"], dim.loc["gaussian", "twonn"], "TwoNN intrinsic dimension"),
        ("mle_dimension", dim.loc["latents", "mle"], dim.loc["gaussian", "mle"],
         "Levina-Bickel MLE intrinsic dimension (k = %d)" % dim.loc["latents", "k"]),
        ("local_dimension_median", dim.loc["latents", "local_median"], dim.loc["gaussian", "local_median"],
         "median local MLE dimension"),
    ]
    for _, z in zoom.iterrows():
        rows.append((f"occupied_fraction[{z['plane']}, side {z['side']:.3g}]", z["occupied_fraction"],
                     z["gaussian_occupied_fraction"], "fraction of occupied grid cells in the zoom window"))
    df = pd.DataFrame(rows, columns=["metric", "latents", "gaussian", "note"]).astype(
        {"latents": float, "gaussian": float})
    with np.errstate(divide="ignore", invalid="ignore"):
        df["ratio"] = np.where(df["gaussian"] != 0, df["latents"] / df["gaussian"], np.nan)
    return df[["metric", "latents", "gaussian", "ratio", "note"]]


def compare_summaries(summaries: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The `filled_gaussian_summary` of several models stacked: `model`, then its columns."""
    summary = pd.concat([s.assign(model=m) for m, s in summaries.items()], ignore_index=True)
    return summary[["model"] + [c for c in summary.columns if c != "model"]]
