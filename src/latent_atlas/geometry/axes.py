"""Density along every latent axis: histograms on shared bins, each axis's centre and width.

The study behind this stage asked whether some axes sit off-centre or are unusually wide
("axis 52: centre 5.0, width 8"); `axis_summary` flags such axes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from latent_atlas.geometry.baseline import check_cloud

# A histogram over a huge range at a fine bin width would take unbounded memory.
MAX_BINS = 20000


def bin_edges(lo: float, hi: float, bin_width: float) -> np.ndarray:
    """Bin edges at multiples of `bin_width` covering [lo, hi]: (n_bins + 1,), at most MAX_BINS bins."""
    if bin_width <= 0:
        raise ValueError(f"bin width must be > 0; got {bin_width}")
    start = np.floor(lo / bin_width) * bin_width
    stop = np.ceil(hi / bin_width) * bin_width
    if stop <= start:
        stop = start + bin_width
    n_bins = int(round((stop - start) / bin_width))
    if n_bins > MAX_BINS:
        raise ValueError(
            f"bin width {bin_width} over the range [{lo:.3g}, {hi:.3g}] gives {n_bins} bins "
            f"(more than {MAX_BINS}); choose a larger bin width"
        )
    return start + bin_width * np.arange(n_bins + 1)


def fwhm(centers: np.ndarray, h: np.ndarray) -> float:
    """Full width at half maximum of a histogram (bin centres, counts; both (n_bins,)): outermost
    half-maximum crossings, interpolated."""
    peak = h.max()
    if peak <= 0:
        return float("nan")
    half = peak / 2.0
    above = np.flatnonzero(h >= half)
    i, j = above[0], above[-1]
    bw = centers[1] - centers[0] if len(centers) > 1 else 1.0
    left = centers[i] - bw / 2 if i == 0 else np.interp(half, [h[i - 1], h[i]], [centers[i - 1], centers[i]])
    right = (centers[j] + bw / 2 if j == len(h) - 1
             else np.interp(half, [h[j + 1], h[j]], [centers[j + 1], centers[j]]))
    return float(right - left)


def axis_histograms(Z: np.ndarray, bin_width: float) -> pd.DataFrame:
    """Number density along every latent axis on shared bins.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, d)
    bin_width : float
        Bin width in latent units (0.25 in the study).

    Returns
    -------
    DataFrame with one row per (axis, bin): `axis` (0-based, as in column z{axis}),
    `bin_center`, `count`, `density` (count / (n_samples * bin_width), integrates to 1).
    """
    Z = check_cloud(Z)
    edges = bin_edges(Z.min(), Z.max(), bin_width)
    centers = (edges[:-1] + edges[1:]) / 2
    frames = []
    for a in range(Z.shape[1]):
        counts, _ = np.histogram(Z[:, a], bins=edges)
        frames.append(pd.DataFrame({
            "axis": np.full(len(centers), a, dtype=np.int64),
            "bin_center": centers,
            "count": counts.astype(np.int64),
            "density": counts / (len(Z) * bin_width),
        }))
    return pd.concat(frames, ignore_index=True)


def axis_summary(hist: pd.DataFrame, Z: np.ndarray, off_centre_ratio: float,
                 width_ratio: float) -> pd.DataFrame:
    """Centre and width of every axis, with flags for axes that stand out.

    Parameters
    ----------
    hist : DataFrame from `axis_histograms`
    Z : ndarray of shape (n_samples, d)
        The same latents (for mean and standard deviation).
    off_centre_ratio : float
        An axis is off-centre when |mode| > off_centre_ratio * its own FWHM (its peak lies
        further from 0 than that fraction of its width).
    width_ratio : float
        An axis has an unusual width when its FWHM is more than `width_ratio` times, or less
        than 1 / `width_ratio` times, the median FWHM over all axes.

    Returns
    -------
    DataFrame with one row per axis: `axis`, `mode`, `mean`, `std`, `fwhm`,
    `off_centre_score` (|mode| / fwhm), `width_vs_median` (fwhm / median fwhm), `off_centre`,
    `unusual_width` (bool), `off_centre_rank` (1 = most off-centre).
    """
    Z = check_cloud(Z)
    rows = []
    for a, g in hist.groupby("axis", sort=True):
        c, h = g["bin_center"].to_numpy(), g["count"].to_numpy()
        rows.append({"axis": int(a), "mode": float(c[np.argmax(h)]), "fwhm": fwhm(c, h)})
    df = pd.DataFrame(rows)
    df["mean"] = Z.mean(axis=0)
    df["std"] = Z.std(axis=0)
    median_width = float(np.nanmedian(df["fwhm"]))
    df["off_centre_score"] = df["mode"].abs() / df["fwhm"]
    df["width_vs_median"] = df["fwhm"] / median_width
    df["off_centre"] = df["off_centre_score"] > off_centre_ratio
    df["unusual_width"] = (df["width_vs_median"] > width_ratio) | (df["width_vs_median"] < 1 / width_ratio)
    order = np.lexsort((df["axis"].to_numpy(), -df["off_centre_score"].to_numpy()))
    rank = np.empty(len(df), dtype=np.int64)
    rank[order] = np.arange(1, len(df) + 1)
    df["off_centre_rank"] = rank
    return df[["axis", "mode", "mean", "std", "fwhm", "off_centre_score", "width_vs_median",
               "off_centre", "unusual_width", "off_centre_rank"]]


def most_off_centre_axes(summary: pd.DataFrame, count: int) -> list[int]:
    """The `count` axes of an `axis_summary` with the highest off-centre score (ties by axis number)."""
    return summary.sort_values("off_centre_rank")["axis"].head(count).astype(int).tolist()
