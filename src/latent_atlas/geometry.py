"""Latent geometry: how a model's latent points fill their space.

Reproduces and extends a study of an autoencoder's latent space (are the points spread densely
and uniformly, or do they lie on thin filaments around voids?). Every function here is pure: it
takes arrays or frames and returns frames (tables); the workflow writes them to Parquet and draws
figures from them in separate rules.

Throughout, `Z` is an ndarray of shape (n_samples, d) of latent vectors, and the baseline a cloud
is compared with is "a filled Gaussian": samples of a normal distribution with the latents' own
mean and covariance (`gaussian_like`), drawn with the same count, so every statistic has a
like-for-like reference.
"""

from __future__ import annotations

import logging
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

log = logging.getLogger("latent_atlas")

# A histogram over a huge range at a fine bin width would take unbounded memory.
MAX_BINS = 20000


# ----------------------------------------------------------------------------------- baseline
def gaussian_like(Z: np.ndarray, n: int | None = None, random_state: int = 0) -> np.ndarray:
    """Samples of N(mean(Z), cov(Z)): the "filled Gaussian" baseline of a cloud.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, d)
    n : int, optional
        Number of samples (default n_samples).
    random_state : int

    Returns
    -------
    ndarray of shape (n, d), float64.
    """
    Z = _check_cloud(Z)
    n = len(Z) if n is None else int(n)
    mean = Z.mean(axis=0)
    cov = np.atleast_2d(np.cov(Z, rowvar=False))
    # eigh instead of Cholesky: a rank-deficient covariance (dead latent axes) stays valid.
    w, V = np.linalg.eigh(cov)
    root = V * np.sqrt(np.clip(w, 0.0, None))
    rng = np.random.default_rng(random_state)
    return mean + rng.standard_normal((n, Z.shape[1])) @ root.T


def _check_cloud(Z, name: str = "Z", min_samples: int = 2) -> np.ndarray:
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"{name} must have shape (n_samples, d); got shape {Z.shape}")
    if len(Z) < min_samples:
        raise ValueError(f"{name} needs at least {min_samples} samples; got {len(Z)}")
    if not np.isfinite(Z).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return Z


# ------------------------------------------------------------------------- 1. density per axis
def _edges(lo: float, hi: float, bin_width: float) -> np.ndarray:
    """Bin edges at multiples of `bin_width` covering [lo, hi] (shared by every axis)."""
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


def _fwhm(centers: np.ndarray, h: np.ndarray) -> float:
    """Full width at half maximum of a histogram: outermost half-maximum crossings, interpolated."""
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


def axis_histograms(Z: np.ndarray, bin_width: float = 0.25) -> pd.DataFrame:
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
    Z = _check_cloud(Z)
    edges = _edges(Z.min(), Z.max(), bin_width)
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


def axis_summary(hist: pd.DataFrame, Z: np.ndarray, off_centre_ratio: float = 0.5,
                 width_ratio: float = 2.0) -> pd.DataFrame:
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
    Z = _check_cloud(Z)
    rows = []
    for a, g in hist.groupby("axis", sort=True):
        c, h = g["bin_center"].to_numpy(), g["count"].to_numpy()
        rows.append({"axis": int(a), "mode": float(c[np.argmax(h)]), "fwhm": _fwhm(c, h)})
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


def most_off_centre_axes(summary: pd.DataFrame, count: int = 2) -> list[int]:
    """The `count` axes with the highest off-centre score (ties by axis number)."""
    return summary.sort_values("off_centre_rank")["axis"].head(count).astype(int).tolist()


# ------------------------------------------------------------------------------------ 2. radius
def radius_peak(r: np.ndarray, grid_points: int = 1024, max_samples: int = 20000,
                random_state: int = 0) -> float:
    """Mode of the radius distribution from a Gaussian kernel density estimate.

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


def radius_tables(Z: np.ndarray, bin_widths: Sequence[float] = (0.5, 0.05),
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
    Z = _check_cloud(Z)
    n, d = Z.shape
    r = np.linalg.norm(Z, axis=1)
    rg = np.linalg.norm(gaussian_like(Z, random_state=random_state), axis=1)
    chi = stats.chi(d)
    frames, peaks = [], {"latents": {}, "gaussian_matched": {}, "chi": {}}
    for w in bin_widths:
        edges = _edges(0.0, max(r.max(), rg.max(), chi.ppf(0.999)), w)
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


# --------------------------------------------------------------------------------------- 3. PCA
def pca_tables(Z: np.ndarray, sample_info: pd.DataFrame,
               thresholds: Sequence[float] = (0.5, 0.85, 0.95), random_state: int = 0
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
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
    variance : DataFrame, one row per component: `component` (1-based), `explained_variance`,
        `ratio`, `cumulative`, `components_for_{t}`.
    loadings : DataFrame, one row per component: `component`, then `z0 .. z{d-1}` (unit vectors).
    scores : DataFrame, id columns then `pc1 .. pc{d}` float32.
    """
    from .projections import pca_fit

    Z = _check_cloud(Z)
    pca = pca_fit(Z, random_state=random_state)
    k = len(pca.explained_variance_ratio_)
    ratio = pca.explained_variance_ratio_
    cumulative = np.cumsum(ratio)
    variance = pd.DataFrame({"component": np.arange(1, k + 1), "explained_variance": pca.explained_variance_,
                             "ratio": ratio, "cumulative": cumulative})
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
    """Smallest number of components whose cumulative explained-variance ratio reaches `fraction`."""
    # A tolerance: 1.0 must be reachable although float sums stop a hair short of it.
    return int(min(np.searchsorted(np.asarray(cumulative) + 1e-9, fraction) + 1, len(cumulative)))


# ------------------------------------------------------------------------- 4. planes and windows
def window_mask(xy: np.ndarray, centre: Sequence[float], side: float | None) -> np.ndarray:
    """Boolean mask of the points of `xy` (n, 2) inside the closed square of `side` around `centre`.

    `side=None` is the full extent (every point).
    """
    xy = np.asarray(xy)
    if side is None:
        return np.ones(len(xy), dtype=bool)
    if side <= 0:
        raise ValueError(f"window side must be > 0; got {side}")
    half = side / 2.0
    return (np.abs(xy[:, 0] - centre[0]) <= half) & (np.abs(xy[:, 1] - centre[1]) <= half)


def plane_centre(xy: np.ndarray, how: str = "median") -> np.ndarray:
    """Centre of the zoom windows in a plane: the points' median, mean, or the origin."""
    if how == "median":
        return np.median(xy, axis=0)
    if how == "mean":
        return xy.mean(axis=0)
    if how == "origin":
        return np.zeros(2)
    raise ValueError(f"planes.centre must be median, mean or origin; got {how!r}")


def window_extent(xy: np.ndarray, centre: np.ndarray, side: float | None) -> float:
    """Side of the square actually drawn: `side`, or for the full extent the smallest square
    around `centre` holding every point."""
    if side is not None:
        return float(side)
    return float(2 * np.abs(xy - centre).max()) or 1.0


def occupied_fraction(xy: np.ndarray, centre: np.ndarray, side: float, grid: int) -> float:
    """Fraction of the grid x grid cells of the square window that hold at least one point."""
    half = side / 2.0
    inside = window_mask(xy, centre, side)
    ij = np.floor((xy[inside] - (np.asarray(centre) - half)) / side * grid).astype(np.int64)
    ij = np.clip(ij, 0, grid - 1)
    return len(np.unique(ij[:, 0] * grid + ij[:, 1])) / grid**2


def plane_pairs(pca_pairs: Iterable[Sequence[int]], axis_pairs: Iterable[Sequence[int]] | None,
                d: int, axis_summary_df: pd.DataFrame) -> list[dict]:
    """The planes to draw: PCA pairs (1-based components) that exist in d dimensions, and pairs
    of raw axes (0-based z indices); `axis_pairs=None` uses the two most off-centre axes.

    Returns a list of dicts: `plane` (name, e.g. "PC1-PC2" or "z3-z7"), `kind` ("pca"/"axis"),
    `columns` (the two score/latent column names).
    """
    planes = []
    for a, b in pca_pairs:
        if 1 <= a <= d and 1 <= b <= d and a != b:
            planes.append({"plane": f"PC{a}-PC{b}", "kind": "pca", "columns": (f"pc{a}", f"pc{b}")})
        else:
            log.info("skipping PCA plane (%s, %s): the latents have %d components", a, b, d)
    if axis_pairs is None:
        axis_pairs = [most_off_centre_axes(axis_summary_df, 2)] if d >= 2 else []
    for a, b in axis_pairs:
        if not (0 <= a < d and 0 <= b < d and a != b):
            raise ValueError(f"geometry.planes.axis_pairs: ({a}, {b}) is not a pair of distinct axes in 0..{d - 1}")
        planes.append({"plane": f"z{a}-z{b}", "kind": "axis", "columns": (f"z{a}", f"z{b}")})
    return planes


def plane_table(planes: list[dict], points: pd.DataFrame) -> pd.DataFrame:
    """Long table of plane coordinates: id columns, `plane`, `x`, `y` (float32) per point and plane.

    `points` holds the id columns plus every column the planes name (latents z*, scores pc*).
    """
    ids = [c for c in ("sample_id", "split", "label", "label_name") if c in points]
    frames = []
    for p in planes:
        cx, cy = p["columns"]
        f = points[ids].copy()
        f["plane"] = p["plane"]
        f["x"] = points[cx].to_numpy(np.float32)
        f["y"] = points[cy].to_numpy(np.float32)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def zoom_table(planes: pd.DataFrame, baseline: pd.DataFrame, windows: Sequence[float | None],
               centre: str = "median", grid: int = 20) -> pd.DataFrame:
    """Per plane and zoom window: points inside and fraction of occupied cells, latents vs baseline.

    Parameters
    ----------
    planes, baseline : DataFrames from `plane_table` (latents, and the Gaussian baseline put
        through the same projections); same planes.
    windows : sequence of float or None
        Window sides; None = the full extent of the latents.
    centre : "median", "mean" or "origin" (of the latents in that plane; the baseline uses the
        same centre and square, so both are measured on identical windows).
    grid : int
        Cells per side of the occupancy grid.

    Returns
    -------
    DataFrame: `plane`, `window` (0 = full extent, then 1, 2, ...), `side`, `centre_x`,
    `centre_y`, `n_inside`, `occupied_fraction`, `gaussian_n_inside`,
    `gaussian_occupied_fraction`, `occupancy_ratio` (latents / Gaussian).
    """
    rows = []
    for name, g in planes.groupby("plane", sort=False):
        xy = g[["x", "y"]].to_numpy(np.float64)
        bxy = baseline.loc[baseline["plane"] == name, ["x", "y"]].to_numpy(np.float64)
        c = plane_centre(xy, centre)
        for i, side in enumerate(windows):
            s = window_extent(xy, c, side)
            occ = occupied_fraction(xy, c, s, grid)
            bocc = occupied_fraction(bxy, c, s, grid)
            rows.append({
                "plane": name, "window": i, "side": s, "centre_x": float(c[0]), "centre_y": float(c[1]),
                "n_inside": int(window_mask(xy, c, s).sum()), "occupied_fraction": occ,
                "gaussian_n_inside": int(window_mask(bxy, c, s).sum()),
                "gaussian_occupied_fraction": bocc,
                "occupancy_ratio": occ / bocc if bocc > 0 else float("nan"),
            })
    return pd.DataFrame(rows)


# ------------------------------------------------------ 6. nearest neighbours, intrinsic dimension
def _neighbour_distances(X: np.ndarray, k: int) -> np.ndarray:
    """(n, k) distances to the k nearest other points, ascending (exact, deterministic)."""
    from sklearn.neighbors import NearestNeighbors

    if len(X) <= k:
        raise ValueError(f"need more than k={k} points for neighbour distances; got {len(X)}")
    dist, _ = NearestNeighbors(n_neighbors=k + 1, algorithm="auto").fit(X).kneighbors(X)
    return dist[:, 1:]


def nn_distances(X: np.ndarray) -> np.ndarray:
    """Distance of every point of X (n, d) to its nearest other point: (n,)."""
    return _neighbour_distances(_check_cloud(X), 1)[:, 0]


def twonn_dimension(X: np.ndarray, discard_fraction: float = 0.1) -> float:
    """TwoNN intrinsic dimension (Facco et al. 2017) of X (n, d).

    mu = r2 / r1 (second over first neighbour distance) follows a Pareto law with exponent equal
    to the dimension; the estimate is the slope of -log(1 - F(mu)) against log(mu) through the
    origin, after discarding the largest `discard_fraction` of mu (the noisy tail).
    """
    X = _check_cloud(X, min_samples=4)
    r = _neighbour_distances(X, 2)
    ok = r[:, 0] > 0  # duplicate points carry no scale information
    mu = np.sort(r[ok, 1] / r[ok, 0])
    n = len(mu)
    if n < 3:
        raise ValueError("TwoNN needs at least 3 points with distinct nearest neighbours")
    keep = max(2, int(np.floor(n * (1 - discard_fraction))))
    x = np.log(mu[:keep])
    y = -np.log(1 - np.arange(keep) / n)
    return float((x @ y) / (x @ x))


def local_mle_dimension(X: np.ndarray, k: int = 20) -> np.ndarray:
    """Levina-Bickel maximum-likelihood intrinsic dimension around every point: (n,).

    m(x) = [1/(k-1) * sum_{j<k} log(T_k(x) / T_j(x))]^-1 with T_j the distance to the j-th
    neighbour. Points with coincident neighbours get NaN.
    """
    if k < 3:
        raise ValueError(f"the MLE intrinsic dimension needs k >= 3 neighbours; got {k}")
    T = _neighbour_distances(_check_cloud(X), k)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(T[:, -1:] / T[:, :-1]).sum(axis=1) / (k - 1)
        out = 1.0 / logs
    out[~np.isfinite(out)] = np.nan
    return out


def mle_dimension(X: np.ndarray, k: int = 20) -> float:
    """Global Levina-Bickel estimate with MacKay and Ghahramani's correction: the inverse of the
    mean inverse local estimate (averaging m(x) directly is biased upwards)."""
    local = local_mle_dimension(X, k)
    inv = 1.0 / local[np.isfinite(local) & (local > 0)]
    return float(1.0 / inv.mean())


def neighbour_tables(Z: np.ndarray, sample_info: pd.DataFrame, n_samples: int, k_local: int = 20,
                     random_state: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Nearest-neighbour distances and local intrinsic dimension, latents vs the Gaussian baseline.

    A seeded stratified subsample of `n_samples` latents is compared with as many points of
    `gaussian_like(Z)`, so density-dependent numbers are measured at the same count.

    Returns
    -------
    points : DataFrame, one row per (source, point): `source` ("latents" / "gaussian"),
        `sample_id`, `label` (-1 for the baseline), `nn_distance`, `local_dimension`.
    dimension : DataFrame, one row per source: `source`, `n`, `twonn`, `mle` (global, k_local),
        `local_median`, `local_q25`, `local_q75`, `nn_median`, `nn_mean`.
    """
    from .projections import subsample_indices

    Z = _check_cloud(Z)
    idx = subsample_indices(len(Z), n_samples, random_state, labels=sample_info["label"].to_numpy())
    X = Z[idx]
    k = int(min(k_local, len(X) - 1))
    G = gaussian_like(Z, n=len(X), random_state=random_state + 1)
    frames, rows = [], []
    for source, P, ids, labels in (
        ("latents", X, sample_info["sample_id"].to_numpy()[idx], sample_info["label"].to_numpy()[idx]),
        ("gaussian", G, np.arange(len(G)), np.full(len(G), -1)),
    ):
        nn = nn_distances(P)
        local = local_mle_dimension(P, k)
        frames.append(pd.DataFrame({"source": source, "sample_id": ids.astype(np.int64),
                                    "label": labels.astype(np.int64), "nn_distance": nn,
                                    "local_dimension": local}))
        q25, q50, q75 = np.nanpercentile(local, [25, 50, 75])
        rows.append({"source": source, "n": len(P), "k": k, "twonn": twonn_dimension(P),
                     "mle": mle_dimension(P, k), "local_median": q50, "local_q25": q25,
                     "local_q75": q75, "nn_median": float(np.median(nn)), "nn_mean": float(nn.mean())})
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows)


# --------------------------------------------------------------------------------- 6. summary
def filled_gaussian_summary(axes: pd.DataFrame, radius: pd.DataFrame, variance: pd.DataFrame,
                            points: pd.DataFrame, dimension: pd.DataFrame,
                            zoom: pd.DataFrame) -> pd.DataFrame:
    """One table saying how far a latent cloud is from a Gaussian with its mean and covariance.

    Returns a long DataFrame: `metric`, `latents`, `gaussian` (the same number for the baseline;
    NaN where it is not defined), `ratio` (latents / gaussian), `note`.
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
        ("pc1_variance_ratio", variance["ratio"].iloc[0], variance["ratio"].iloc[0], "variance explained by PC1"),
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


# ------------------------------------------------------------------------ 7. random latent points
def random_latents(Z: np.ndarray, n: int, offset_scale: float = 0.1,
                   random_state: int = 0) -> dict[str, np.ndarray]:
    """Latent vectors to decode, one set per way of drawing them, each (n, d) float32.

    Sets: `standard_normal` N(0, I); `fitted_gaussian` N(mean, cov) of the latents;
    `bounding_box` uniform in the latents' per-axis [min, max]; `offsets` real latents plus
    N(0, (offset_scale * std_axis)^2) noise; `real` the real latents themselves (reference).
    """
    Z = _check_cloud(Z)
    rng = np.random.default_rng(random_state)
    d = Z.shape[1]
    real = Z[np.sort(rng.choice(len(Z), size=min(n, len(Z)), replace=False))]
    sets = {
        "standard_normal": rng.standard_normal((n, d)),
        "fitted_gaussian": gaussian_like(Z, n=n, random_state=random_state + 1),
        "bounding_box": rng.uniform(Z.min(axis=0), Z.max(axis=0), size=(n, d)),
        "offsets": real + rng.standard_normal(real.shape) * offset_scale * Z.std(axis=0),
        "real": real,
    }
    return {k: v.astype(np.float32) for k, v in sets.items()}


def nearest_image_distance(images: np.ndarray, reference: np.ndarray, batch: int = 256) -> np.ndarray:
    """RMS pixel distance of each image (m, ...) to its nearest reference image (N, ...): (m,).

    Pixel values in [0, 1]; 0 = an exact copy of a training image.
    """
    A = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
    B = np.asarray(reference, dtype=np.float32).reshape(len(reference), -1)
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"images have {A.shape[1]} pixels, reference images {B.shape[1]}")
    b2 = (B * B).sum(axis=1)
    out = np.empty(len(A))
    for s in range(0, len(A), batch):
        a = A[s:s + batch]
        d2 = (a * a).sum(axis=1)[:, None] - 2 * a @ B.T + b2[None, :]
        out[s:s + batch] = np.sqrt(np.clip(d2.min(axis=1), 0, None) / A.shape[1])
    return out


def plausibility_table(sets: Mapping[str, np.ndarray], nn_distance: Mapping[str, np.ndarray],
                       confidence: Mapping[str, np.ndarray] | None = None,
                       predicted: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One row per decoded image: `set`, `index`, `nn_distance`, and where a classifier was given
    `confidence` (max softmax probability) and `predicted` (class)."""
    frames = []
    for name in sets:
        f = pd.DataFrame({"set": name, "index": np.arange(len(sets[name]), dtype=np.int64),
                          "nn_distance": nn_distance[name]})
        if confidence is not None:
            f["confidence"] = confidence[name]
            f["predicted"] = predicted[name].astype(np.int64)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------- orchestration
ID_COLUMNS = ("sample_id", "split", "label", "label_name")


def latent_matrix(latents: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Split a latents table (contract: id columns, then z0..z{d-1}) into Z (n, d) and id columns."""
    try:
        from .latents import latent_columns
        cols = list(latent_columns(latents))
    except ImportError:  # the latents module is written by the models stage
        import re
        cols = sorted((c for c in latents.columns if re.fullmatch(r"z\d+", c)), key=lambda c: int(c[1:]))
    if not cols:
        raise ValueError(f"latents table has no z0..z{{d-1}} columns; columns: {list(latents.columns)[:10]}")
    missing = [c for c in ID_COLUMNS if c not in latents]
    if missing:
        raise ValueError(f"latents table lacks id column(s) {missing}")
    return latents[cols].to_numpy(np.float64), latents[list(ID_COLUMNS)].reset_index(drop=True)


def geometry_tables(latents: pd.DataFrame, cfg: Mapping, random_state: int = 0) -> dict[str, pd.DataFrame]:
    """Every table of analyses 1-4 and 6 for one model's latents.

    Parameters
    ----------
    latents : DataFrame following the latents.parquet contract.
    cfg : the `geometry` config section (defaults filled in).
    random_state : int

    Returns
    -------
    dict name -> DataFrame with keys axis_density, axis_summary, radius_histogram,
    radius_summary, pca_variance, pca_loadings, pca_scores, planes, zoom, neighbours,
    intrinsic_dimension, summary (see the functions above for their columns).
    """
    from .projections import pca_fit

    Z, info = latent_matrix(latents)
    d = Z.shape[1]
    out: dict[str, pd.DataFrame] = {}
    out["axis_density"] = axis_histograms(Z, cfg["axes"]["bin_width"])
    out["axis_summary"] = axis_summary(out["axis_density"], Z, cfg["axes"]["off_centre_ratio"],
                                       cfg["axes"]["width_ratio"])
    out["radius_histogram"], out["radius_summary"] = radius_tables(Z, cfg["radius"]["bin_widths"], random_state)
    out["pca_variance"], out["pca_loadings"], out["pca_scores"] = pca_tables(
        Z, info, cfg["pca"]["thresholds"], random_state)

    pc = cfg["planes"]
    planes = plane_pairs(pc["pca_pairs"], pc["axis_pairs"], d, out["axis_summary"])
    zcols = pd.DataFrame(Z.astype(np.float32), columns=[f"z{i}" for i in range(d)])
    points = pd.concat([out["pca_scores"], zcols], axis=1)
    out["planes"] = plane_table(planes, points)
    # The baseline goes through the very same projections (same PCA axes, same raw axes).
    G = gaussian_like(Z, random_state=random_state + 2)
    pca = pca_fit(Z, random_state=random_state)
    gpoints = pd.concat([
        pd.DataFrame(pca.transform(G), columns=[f"pc{i + 1}" for i in range(pca.n_components_)]),
        pd.DataFrame(G, columns=[f"z{i}" for i in range(d)]),
    ], axis=1)
    baseline = plane_table(planes, gpoints)
    out["zoom"] = zoom_table(out["planes"], baseline, pc["windows"], pc["centre"], pc["occupancy_grid"])

    nc = cfg["neighbours"]
    out["neighbours"], out["intrinsic_dimension"] = neighbour_tables(Z, info, nc["n_samples"], nc["k_local"],
                                                                    random_state)
    out["summary"] = filled_gaussian_summary(out["axis_summary"], out["radius_summary"], out["pca_variance"],
                                             out["neighbours"], out["intrinsic_dimension"], out["zoom"])
    return out


def parse_space(space: str) -> int | None:
    """Projection input name -> PCA components: "raw" -> None, "pca4" -> 4."""
    if space == "raw":
        return None
    if space.startswith("pca") and space[3:].isdigit() and int(space[3:]) >= 1:
        return int(space[3:])
    raise ValueError(f"projection space must be 'raw' or 'pca<k>'; got {space!r}")


def projection_table(latents: pd.DataFrame, method: str, params: Mapping, space: str, n: int,
                     random_state: int = 0, n_jobs: int = 1) -> pd.DataFrame:
    """2-D t-SNE / UMAP / PCA map of a stratified, seeded subsample of `n` latents.

    Parameters
    ----------
    latents : DataFrame following the latents.parquet contract.
    method : "tsne", "umap" or "pca"
    params : keyword arguments of the method (sample_sizes is dropped here).
    space : "raw" or "pca<k>" (PCA to k components first, capped at d).
    n : int
        Sample size, capped at the number of latents.

    Returns
    -------
    DataFrame, one row per sampled latent: id columns, `x`, `y` (float32), `method`, `space`,
    `n_requested`.
    """
    from .projections import project, subsample_indices

    Z, info = latent_matrix(latents)
    k = parse_space(space)
    if k is not None and k > Z.shape[1]:
        log.info("PCA to %d components capped at the latent dimension %d", k, Z.shape[1])
        k = Z.shape[1]
    idx = subsample_indices(len(Z), n, random_state, labels=info["label"].to_numpy())
    if len(idx) < n:
        log.info("sample size %d capped at the %d latents available", n, len(idx))
    params = {key: v for key, v in params.items() if key != "sample_sizes"}
    coords, _ = project(Z[idx], method, params, pca_components=k, random_state=random_state, n_jobs=n_jobs)
    out = info.iloc[idx].reset_index(drop=True)
    out["x"], out["y"] = coords[:, 0], coords[:, 1]
    out["method"], out["space"], out["n_requested"] = method, space, np.int64(n)
    return out


def decode_random_points(model, latents: pd.DataFrame, reference_images: np.ndarray, n: int,
                         offset_scale: float = 0.1, classifier=None, random_state: int = 0,
                         batch_size: int = 256) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Decode latents drawn in five ways (`random_latents`) and score how plausible the images are.

    Parameters
    ----------
    model : autoencoder with `decode(z) -> (B, C, H, W)` in [0, 1] (models contract), eval mode.
    latents : DataFrame following the latents.parquet contract (of this model).
    reference_images : ndarray of shape (N, C, H, W) in [0, 1]
        Training images; plausibility = RMS pixel distance to the nearest of them.
    n : int
        Images per set.
    classifier : optional classifier with `forward(x) -> logits` on the same dataset; adds its
        max softmax probability (`confidence`) and `predicted` class per image.

    Returns
    -------
    images : dict set -> float32 (n, C, H, W)
    scores : DataFrame from `plausibility_table`.
    """
    import torch

    Z, _ = latent_matrix(latents)
    sets = random_latents(Z, n, offset_scale, random_state)
    device = next(model.parameters()).device

    def run(net, X, fn):
        outs = []
        with torch.no_grad():
            for s in range(0, len(X), batch_size):
                outs.append(fn(net, torch.as_tensor(X[s:s + batch_size], device=device)).cpu().numpy())
        return np.concatenate(outs).astype(np.float32)

    images = {k: run(model, z, lambda m, t: m.decode(t)) for k, z in sets.items()}
    nn = {k: nearest_image_distance(v, reference_images) for k, v in images.items()}
    conf = pred = None
    if classifier is not None:
        probs = {k: run(classifier, v, lambda m, t: torch.softmax(m(t.to(next(m.parameters()).device)), dim=1))
                 for k, v in images.items()}
        conf = {k: p.max(axis=1) for k, p in probs.items()}
        pred = {k: p.argmax(axis=1) for k, p in probs.items()}
    return images, plausibility_table(images, nn, conf, pred)


# ------------------------------------------------------------------------------------- figures
def _class_names(frame: pd.DataFrame) -> list[str]:
    pairs = frame[["label", "label_name"]].drop_duplicates().sort_values("label")
    names = dict(zip(pairs["label"].astype(int), pairs["label_name"].astype(str)))
    return [names.get(i, str(i)) for i in range(max(names) + 1)] if names else []


def _grid(n_panels: int, ncols: int, size: float = 3.0):
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n_panels))
    nrows = int(np.ceil(n_panels / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, axes.flat


def plot_axis_density(density: pd.DataFrame, summary: pd.DataFrame, show_alone: int = 4,
                      selected: Sequence[int] = (), title: str = ""):
    """All axes' density curves in one panel, then the most off-centre and `selected` axes alone."""
    import matplotlib.pyplot as plt

    alone = list(dict.fromkeys(most_off_centre_axes(summary, show_alone) + [int(a) for a in selected]))
    alone = [a for a in alone if a in set(summary["axis"])]
    fig, axes = _grid(1 + len(alone), ncols=3, size=3.4)
    ax = axes[0]
    cmap = plt.get_cmap("viridis")
    n_axes = summary["axis"].nunique()
    for a, g in density.groupby("axis"):
        ax.plot(g["bin_center"], g["density"], lw=0.7, color=cmap(a / max(n_axes - 1, 1)))
    ax.set(title=f"all {n_axes} axes", xlabel="latent value", ylabel="density")
    s = summary.set_index("axis")
    for ax, a in zip(axes[1:], alone):
        g = density[density["axis"] == a]
        ax.step(g["bin_center"], g["density"], where="mid", lw=0.9, color="C0")
        row = s.loc[a]
        ax.axvline(row["mode"], color="C3", lw=0.8, ls="--")
        ax.axhline(g["density"].max() / 2, color="0.6", lw=0.6, ls=":")
        flags = ", ".join(f for f, on in (("off-centre", row["off_centre"]), ("unusual width", row["unusual_width"])) if on)
        ax.set(title=f"axis {a}: centre {row['mode']:.2f}, FWHM {row['fwhm']:.2f}" + (f"\n({flags})" if flags else ""),
               xlabel=f"z{a}", ylabel="density")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_radius(hist: pd.DataFrame, summary: pd.DataFrame, title: str = ""):
    """Radius histograms at each bin width with the chi pdf and the matched Gaussian."""
    widths = sorted(hist["bin_width"].unique(), reverse=True)
    fig, axes = _grid(len(widths), ncols=len(widths), size=4.0)
    s = summary.set_index("source")
    d = int(s.loc["latents", "d"])
    for ax, w in zip(axes, widths):
        g = hist[hist["bin_width"] == w]
        ax.bar(g["bin_center"], g["density"], width=w, color="C0", alpha=0.6, label="latents", linewidth=0)
        ax.step(g["bin_center"], g["gaussian_density"], where="mid", color="C1", lw=0.9,
                label="Gaussian, same mean/cov")
        ax.plot(g["bin_center"], g["chi_density"], color="k", lw=0.9, label=f"chi, d={d}")
        ax.axvline(np.sqrt(d), color="0.4", ls=":", lw=0.8, label=f"sqrt(d) = {np.sqrt(d):.2f}")
        ax.axvline(s.loc["latents", "peak_radius"], color="C3", ls="--", lw=0.8,
                   label=f"latent peak = {s.loc['latents', 'peak_radius']:.2f}")
        hi = g.loc[(g["density"] > 0) | (g["gaussian_density"] > 0) | (g["chi_density"] > 1e-3), "bin_center"].max()
        ax.set(xlim=(0, hi + w), xlabel="radius |z|", ylabel="density", title=f"bin width {w:g}")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_pca(variance: pd.DataFrame, title: str = ""):
    """Scree (variance ratio per component) and cumulative curve with the threshold counts."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.4))
    a1.bar(variance["component"], variance["ratio"], color="C0", linewidth=0)
    a1.set(xlabel="component", ylabel="explained variance ratio", title="scree")
    a2.plot(variance["component"], variance["cumulative"], marker=".", color="C0")
    for i, col in enumerate(c for c in variance.columns if c.startswith("components_for_")):
        t, k = float(col.rsplit("_", 1)[1]), int(variance[col].iloc[0])
        a2.axhline(t, color=f"C{i + 1}", ls=":", lw=0.8)
        a2.axvline(k, color=f"C{i + 1}", ls="--", lw=0.8, label=f"{t:.0%}: {k} components")
    a2.set(xlabel="components", ylabel="cumulative ratio", ylim=(0, 1.02), title="cumulative")
    a2.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_planes(planes: pd.DataFrame, zoom: pd.DataFrame, title: str = ""):
    """Rows = planes, columns = zoom windows; points inside each window, size suited to the count."""
    import matplotlib.pyplot as plt
    from .plotting import scatter_by_class

    names = list(dict.fromkeys(planes["plane"]))
    n_win = zoom["window"].nunique()
    class_names = _class_names(planes)
    fig, axes = plt.subplots(len(names), n_win, figsize=(2.8 * n_win, 2.8 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        g = planes[planes["plane"] == name]
        xy = g[["x", "y"]].to_numpy(np.float64)
        for c, (_, z) in enumerate(zoom[zoom["plane"] == name].sort_values("window").iterrows()):
            ax = axes[r, c]
            centre = (z["centre_x"], z["centre_y"])
            m = window_mask(xy, centre, z["side"])
            scatter_by_class(ax, xy[m], g["label"].to_numpy()[m], class_names, legend=False)
            h = z["side"] / 2
            ax.set(xlim=(centre[0] - h, centre[0] + h), ylim=(centre[1] - h, centre[1] + h), aspect="equal")
            ax.set_title(f"{name}, side {z['side']:.3g}\n{m.sum()} pts, occupied {z['occupied_fraction']:.2f}"
                         f" (Gauss {z['gaussian_occupied_fraction']:.2f})", fontsize=7)
            ax.tick_params(labelsize=6)
    handles = [plt.Line2D([], [], ls="", marker="o", color=col) for col in _colors(len(class_names))]
    fig.legend(handles, class_names, loc="lower center", ncol=min(len(class_names), 10), fontsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def _colors(n):
    from .plotting import class_colors

    return class_colors(n)


def plot_neighbours(points: pd.DataFrame, dimension: pd.DataFrame, title: str = ""):
    """Nearest-neighbour distances and local intrinsic dimension, latents vs the Gaussian baseline."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.4))
    dim = dimension.set_index("source")
    for source, color in (("latents", "C0"), ("gaussian", "C1")):
        g = points[points["source"] == source]
        label = "Gaussian, same mean/cov" if source == "gaussian" else "latents"
        a1.hist(g["nn_distance"], bins=60, density=True, histtype="step", color=color, label=label)
        loc = g["local_dimension"].dropna()
        a2.hist(loc, bins=60, density=True, histtype="step", color=color,
                label=f"{label}: TwoNN {dim.loc[source, 'twonn']:.1f}, MLE {dim.loc[source, 'mle']:.1f}")
    a1.set(xlabel="nearest-neighbour distance", ylabel="density", title="nearest-neighbour distance")
    a2.set(xlabel=f"local MLE dimension (k = {int(dim['k'].iloc[0])})", ylabel="density",
           title="intrinsic dimension")
    a1.legend(fontsize=7)
    a2.legend(fontsize=7, loc="upper right")
    a2.set_ylim(top=a2.get_ylim()[1] * 1.25)  # room for the legend
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_projections(tables: Sequence[pd.DataFrame], title: str = ""):
    """One panel per projection table (rows = sample sizes, columns = input spaces), by class."""
    import matplotlib.pyplot as plt
    from .plotting import scatter_by_class

    sizes = sorted({int(t["n_requested"].iloc[0]) for t in tables})
    spaces = list(dict.fromkeys(t["space"].iloc[0] for t in tables))
    class_names = _class_names(pd.concat([t[["label", "label_name"]] for t in tables]))
    fig, axes = plt.subplots(len(sizes), len(spaces), figsize=(3.2 * len(spaces), 3.2 * len(sizes)),
                             squeeze=False)
    for t in tables:
        ax = axes[sizes.index(int(t["n_requested"].iloc[0])), spaces.index(t["space"].iloc[0])]
        scatter_by_class(ax, t[["x", "y"]].to_numpy(), t["label"].to_numpy(), class_names, legend=False)
        space = "raw latents" if t["space"].iloc[0] == "raw" else f"PCA to {t['space'].iloc[0][3:]}"
        ax.set_title(f"{space}, n = {len(t)}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], ls="", marker="o", color=col) for col in _colors(len(class_names))]
    fig.legend(handles, class_names, loc="lower center", ncol=min(len(class_names), 5), fontsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08 if len(sizes) == 1 else 0.05, 1, 1))
    return fig


def plot_random_points(images: Mapping[str, np.ndarray], scores: pd.DataFrame, title: str = ""):
    """One square image grid per set side by side, titled with the set's mean plausibility scores."""
    import matplotlib.pyplot as plt

    names = list(images)
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        imgs = images[name]
        n, ch, h, w = imgs.shape
        cols = int(np.ceil(np.sqrt(n)))
        rows = int(np.ceil(n / cols))
        canvas = np.ones((rows * (h + 1), cols * (w + 1), ch), dtype=np.float32)
        for i in range(n):
            r, c = divmod(i, cols)
            canvas[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = imgs[i].transpose(1, 2, 0)
        ax.imshow(canvas[..., 0] if ch == 1 else canvas, cmap="gray" if ch == 1 else None, vmin=0, vmax=1)
        s = scores[scores["set"] == name]
        text = f"{name.replace('_', ' ')}\nNN dist {s['nn_distance'].mean():.3f}"
        if "confidence" in s:
            text += f", conf {s['confidence'].mean():.2f}"
        ax.set_title(text, fontsize=8)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_compare(models: Mapping[str, Mapping[str, pd.DataFrame]], title: str = ""):
    """Side-by-side comparison of models: radius (rescaled by sqrt(d)), axis centres and widths,
    cumulative PCA variance, nearest-neighbour distance ratio to the Gaussian, intrinsic dimension.

    `models` maps a model name to its tables (radius_histogram, radius_summary, axis_summary,
    pca_variance, neighbours, intrinsic_dimension).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    for i, (name, t) in enumerate(models.items()):
        color = f"C{i}"
        h = t["radius_histogram"]
        h = h[h["bin_width"] == h["bin_width"].max()]
        d = int(t["radius_summary"]["d"].iloc[0])
        peak = t["radius_summary"].set_index("source").loc["latents", "peak_radius"]
        axes[0].plot(h["bin_center"] / np.sqrt(d), h["density"] * np.sqrt(d), color=color,
                     label=f"{name}: peak {peak:.2f} = {peak / np.sqrt(d):.2f} sqrt(d)")
        a = t["axis_summary"]
        axes[1].errorbar(a["axis"] + 0.15 * i, a["mode"], yerr=a["fwhm"] / 2, fmt="o", ms=3, color=color,
                         lw=0.8, label=name)
        v = t["pca_variance"]
        axes[2].plot(v["component"], v["cumulative"], marker=".", color=color, label=name)
        dim = t["intrinsic_dimension"].set_index("source")
        nb = t["neighbours"]
        ratio = (nb.loc[nb["source"] == "latents", "nn_distance"].to_numpy()
                 / nb.loc[nb["source"] == "gaussian", "nn_distance"].median())
        axes[3].hist(ratio, bins=60, density=True, histtype="step", color=color,
                     label=f"{name}: ID TwoNN {dim.loc['latents', 'twonn']:.1f} "
                           f"(Gauss {dim.loc['gaussian', 'twonn']:.1f})")
    if models:
        d = int(next(iter(models.values()))["radius_summary"]["d"].iloc[0])
        axes[0].axvline(np.sqrt((d - 1) / d), color="k", ls=":", lw=0.8, label="chi mode")
    axes[0].set(xlabel="radius / sqrt(d)", ylabel="density", title="radius")
    axes[1].axhline(0, color="k", lw=0.5)
    axes[1].set(xlabel="axis", ylabel="mode +- FWHM/2", title="centre and width per axis")
    axes[2].set(xlabel="components", ylabel="cumulative variance", ylim=(0, 1.02), title="PCA")
    axes[3].axvline(1, color="k", ls=":", lw=0.8)
    axes[3].set(xlabel="NN distance / Gaussian median", ylabel="density", title="nearest neighbours")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
