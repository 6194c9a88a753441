"""The radius |z| of the latents against the chi distribution and the filled Gaussian.

A standard Gaussian in d dimensions puts its points on a thin shell of radius about sqrt(d); a
latent cloud that peaks elsewhere, or more broadly, is not filling its space like one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from latent_atlas.geometry.axes import bin_edges
from latent_atlas.geometry.baseline import check_cloud, gaussian_like


def radius_peak(r: np.ndarray, grid_points: int = 1024, max_samples: int = 20000,
                random_state: int = 0) -> float:
    """Mode of the radius distribution (r: (n,)) from a Gaussian kernel density estimate.

    A histogram's peak is only as precise as its bin width; the KDE's mode is not tied to bins.
    At most `max_samples` radii (seeded subsample) enter the KDE.
    """
    r = np.asarray(r, dtype=np.float64)
    if len(r) > max_samples:
        r = np.random.default_rng(random_state).choice(r, size=max_samples, replace=False)
    if np.ptp(r) == 0:
        return float(r[0])
    grid = np.linspace(r.min(), r.max(), grid_points)
    return float(grid[np.argmax(stats.gaussian_kde(r)(grid))])


def radius_tables(Z: np.ndarray, bin_widths: Sequence[float],
                  random_state: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Histograms of the L2 norm of the latents against two references, and their peaks.

    References: the chi distribution with d degrees of freedom (the radius of a standard
    Gaussian in d dimensions, mode sqrt(d - 1), mean about sqrt(d)), and the radii of a Gaussian
    with the latents' own mean and covariance (same count).

    Parameters
    ----------
    Z : ndarray of shape (n_samples, d)
    bin_widths : sequence of float
        One histogram per width (0.5 and 0.05 in the study).
    random_state : int
        Seed of the Gaussian baseline.

    Returns
    -------
    hist : DataFrame, one row per (bin_width, bin): `bin_width`, `bin_center`, `count`,
        `density`, `gaussian_density` (matched Gaussian), `chi_density` (chi pdf at the centre).
    summary : DataFrame, one row per source ("latents", "gaussian_matched", "chi"): `source`,
        `d`, `n`, `peak_radius` (KDE mode; the chi row: exact mode sqrt(d-1)), `mean_radius`,
        `median_radius`, `sqrt_d`, `peak_over_sqrt_d`, and `hist_peak_{w}` for each bin width.
    """
    Z = check_cloud(Z)
    n, d = Z.shape
    r = np.linalg.norm(Z, axis=1)
    rg = np.linalg.norm(gaussian_like(Z, random_state=random_state), axis=1)
    chi = stats.chi(d)
    frames, peaks = [], {"latents": {}, "gaussian_matched": {}, "chi": {}}
    for w in bin_widths:
        edges = bin_edges(0.0, max(r.max(), rg.max(), chi.ppf(0.999)), w)
        centers = (edges[:-1] + edges[1:]) / 2
        counts, _ = np.histogram(r, bins=edges)
        gcounts, _ = np.histogram(rg, bins=edges)
        frames.append(pd.DataFrame({
            "bin_width": np.full(len(centers), float(w)),
            "bin_center": centers,
            "count": counts.astype(np.int64),
            "density": counts / (n * w),
            "gaussian_density": gcounts / (n * w),
            "chi_density": chi.pdf(centers),
        }))
        key = f"hist_peak_{w:g}"
        peaks["latents"][key] = float(centers[np.argmax(counts)])
        peaks["gaussian_matched"][key] = float(centers[np.argmax(gcounts)])
        peaks["chi"][key] = float(centers[np.argmax(chi.pdf(centers))])
    rows = []
    for source, radii in (("latents", r), ("gaussian_matched", rg), ("chi", None)):
        if radii is None:
            row = {"peak_radius": float(np.sqrt(d - 1)), "mean_radius": float(chi.mean()),
                   "median_radius": float(chi.median())}
        else:
            row = {"peak_radius": radius_peak(radii, random_state=random_state),
                   "mean_radius": float(radii.mean()), "median_radius": float(np.median(radii))}
        rows.append({"source": source, "d": d, "n": n, **row, "sqrt_d": float(np.sqrt(d)),
                     "peak_over_sqrt_d": row["peak_radius"] / np.sqrt(d), **peaks[source]})
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows)
