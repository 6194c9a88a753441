"""Planes through the latents and zoom windows in them: are the points spread evenly or on thin
filaments around voids?

A plane is a pair of PCA components or of raw axes. In each plane, square windows of shrinking
side around a common centre count the points inside and the fraction of grid cells they occupy,
for the latents and for the filled Gaussian put through the very same projections.
"""

from __future__ import annotations

import logging
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from latent_atlas.geometry.axes import most_off_centre_axes
from latent_atlas.geometry.baseline import gaussian_like
from latent_atlas.latents import ID_COLUMNS
from latent_atlas.projections import pca_fit

log = logging.getLogger("latent_atlas")


def window_mask(xy: np.ndarray, centre: Sequence[float], side: float | None) -> np.ndarray:
    """Boolean mask (n,) of the points of `xy` (n, 2) inside the closed square of `side` around `centre`.

    `side=None` is the full extent (every point).
    """
    xy = np.asarray(xy)
    if side is None:
        return np.ones(len(xy), dtype=bool)
    if side <= 0:
        raise ValueError(f"window side must be > 0; got {side}")
    half = side / 2.0
    return (np.abs(xy[:, 0] - centre[0]) <= half) & (np.abs(xy[:, 1] - centre[1]) <= half)


def plane_centre(xy: np.ndarray, how: str) -> np.ndarray:
    """Centre (2,) of the zoom windows in a plane of points `xy` (n, 2): their median, mean, or the origin."""
    if how == "median":
        return np.median(xy, axis=0)
    if how == "mean":
        return xy.mean(axis=0)
    if how == "origin":
        return np.zeros(2)
    raise ValueError(f"planes.centre must be median, mean or origin; got {how!r}")


def window_extent(xy: np.ndarray, centre: np.ndarray, side: float | None) -> float:
    """Side of the square actually drawn: `side`, or for the full extent the smallest square
    around `centre` holding every point of `xy` (n, 2)."""
    if side is not None:
        return float(side)
    return float(2 * np.abs(xy - centre).max()) or 1.0


def occupied_fraction(xy: np.ndarray, centre: np.ndarray, side: float, grid: int) -> float:
    """Fraction of the grid x grid cells of the square window that hold at least one point of `xy` (n, 2)."""
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

    `points` holds the id columns (where known) plus every column the planes name (latents z*,
    scores pc*).
    """
    ids = [c for c in ID_COLUMNS if c in points]
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
               centre: str, grid: int) -> pd.DataFrame:
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


def plane_tables(Z: np.ndarray, scores: pd.DataFrame, axis_summary: pd.DataFrame,
                 pca_pairs: Iterable[Sequence[int]], axis_pairs: Iterable[Sequence[int]] | None,
                 windows: Sequence[float | None], centre: str, grid: int,
                 random_state: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The planes of the latents and their zoom windows against the filled Gaussian.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, d), float64
    scores : DataFrame from `pca.pca_tables` (id columns, `pc1 .. pc{d}`) of the same latents.
    axis_summary : DataFrame from `axes.axis_summary` (picks the axis plane when `axis_pairs` is None).
    pca_pairs, axis_pairs : see `plane_pairs`.
    windows, centre, grid : see `zoom_table`.
    random_state : int
        The baseline is drawn with seed random_state + 2 (independent of the radius and
        neighbour baselines, drawn with + 0 and + 1).

    Returns
    -------
    planes : DataFrame from `plane_table` (the latents).
    zoom : DataFrame from `zoom_table`.
    """
    d = Z.shape[1]
    planes = plane_pairs(pca_pairs, axis_pairs, d, axis_summary)
    zcols = pd.DataFrame(Z.astype(np.float32), columns=[f"z{i}" for i in range(d)])
    points = plane_table(planes, pd.concat([scores, zcols], axis=1))
    # The baseline goes through the very same projections (same PCA axes, same raw axes).
    G = gaussian_like(Z, random_state=random_state + 2)
    pca = pca_fit(Z, random_state=random_state)
    gpoints = pd.concat([
        pd.DataFrame(pca.transform(G), columns=[f"pc{i + 1}" for i in range(pca.n_components_)]),
        pd.DataFrame(G, columns=[f"z{i}" for i in range(d)]),
    ], axis=1)
    baseline = plane_table(planes, gpoints)
    return points, zoom_table(points, baseline, windows, centre, grid)
