"""A self-contained interactive explorer of permutation importance: one HTML file per model.

The page embeds its data as JSON and draws with plain JavaScript (canvas and SVG): no server, no
network, no external scripts, so it opens from disk and works offline. Controls follow the
`aim` package's Shiny app: class, number of top dimensions, sort by importance, hide unused
dimensions, rotate and flip, light or dark mode, and values on hover.

Tables with the significance test (`significant`, `interval_low`, `interval_high` columns) add
the mask (pixels not declared are grey, with a checkbox for the unmasked map) and the interval
over images and permutations to the hover readout; older tables give the page as before.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from latent_atlas.io import write_text

TEMPLATE = Path(__file__).with_name("templates") / "importance_explorer.html"

# A dimension counts as unused for a class when its importance is below this fraction of the
# class's largest ("hide unused dimensions").
UNUSED_FRACTION = 1e-3


def _round(values: np.ndarray, digits: int = 6) -> list:
    """Floats with `digits` significant digits (keeps the page small; display shows 4)."""
    out = []
    for v in np.asarray(values, dtype=np.float64).ravel():
        out.append(0.0 if v == 0 or not math.isfinite(v) else float(f"{v:.{digits}g}"))
    return out


def _per_dimension(pixel: pd.DataFrame, value: str, n_dims: int, h: int, w: int) -> np.ndarray:
    """(n_dims, h * w) array of column `value`: a pixel's value sits at row * w + col (0 where the
    table has no row)."""
    arr = np.zeros((n_dims, h * w))
    arr[pixel["dim"].to_numpy(), pixel["row"].to_numpy() * w + pixel["col"].to_numpy()] = \
        pixel[value].to_numpy()
    return arr


def explorer_data(pixel: pd.DataFrame, latent: pd.DataFrame, title: str, top_k: int = 4,
                  n_perm: int | None = None, axes=None, fdr: float | None = None) -> dict:
    """The JSON the page embeds.

    Parameters
    ----------
    pixel : pixel_importance table (pixel, row, col, dim, importance, std, directional, ...;
        with the significance test also interval_low, interval_high, significant).
    latent : latent_importance table (class, class_name, dim, importance, std, rank).
    axes : data.store.ImageAxes or None
        Physical axes of the images (spectrograms); the page then ticks each map in Hz and s.
    fdr : the false discovery rate the `significant` column was declared at (shown on the page).

    With a `significant` column the data gains `declared` (per dimension, 1 where the pixel was
    declared, 0 elsewhere, at row * W + col) and `fdr`; with `interval_low` and `interval_high`,
    `pixel` gains those two maps. Without them the data is what older pages embedded.
    """
    h, w = int(pixel["row"].max()) + 1, int(pixel["col"].max()) + 1
    dims = sorted(int(d) for d in pixel["dim"].unique())
    if sorted(int(d) for d in latent["dim"].unique()) != dims:
        raise ValueError("pixel and latent importance tables have different dimensions")
    values = ["importance", "directional", "std"]
    if {"interval_low", "interval_high"} <= set(pixel.columns):
        values += ["interval_low", "interval_high"]
    maps = {value: [_round(row) for row in _per_dimension(pixel, value, len(dims), h, w)]
            for value in values}
    classes = []
    for cls, sub in latent.sort_values(["class", "dim"]).groupby("class", sort=True):
        classes.append({
            "id": int(cls),
            "name": str(sub["class_name"].iloc[0]),
            "importance": _round(sub["importance"].to_numpy()),
            "std": _round(sub["std"].to_numpy()),
            "rank": [int(r) for r in sub["rank"]],
        })
    data = {"title": title, "height": h, "width": w, "dims": dims, "classes": classes,
            "pixel": maps, "top_k": int(top_k), "n_perm": n_perm,
            "unused_fraction": UNUSED_FRACTION}
    if "significant" in pixel.columns:
        declared = _per_dimension(pixel, "significant", len(dims), h, w)
        data["declared"] = [[int(v) for v in row] for row in declared]
        data["fdr"] = fdr
    if axes is not None:
        if (len(axes.rows), len(axes.cols)) != (h, w):
            raise ValueError(f"image axes of {len(axes.rows)} x {len(axes.cols)} do not match the "
                             f"importance maps of {h} x {w} pixels")
        data["axes"] = {"rows": _round(axes.rows), "cols": _round(axes.cols),
                        "row_label": axes.row_label, "col_label": axes.col_label}
    return data


def render_explorer(data: dict) -> str:
    """The page's HTML with `data` embedded (a '</' inside the JSON cannot end the script)."""
    text = TEMPLATE.read_text(encoding="utf-8")
    payload = json.dumps(data, sort_keys=True, separators=(",", ":")).replace("</", "<\\/")
    title = str(data["title"]).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("__TITLE__", title).replace("__DATA__", payload)


def write_explorer(pixel: pd.DataFrame, latent: pd.DataFrame, path: str | os.PathLike,
                   title: str, top_k: int = 4, n_perm: int | None = None, axes=None,
                   fdr: float | None = None) -> None:
    """Write the explorer of one model to `path` (atomic, deterministic)."""
    write_text(render_explorer(explorer_data(pixel, latent, title, top_k, n_perm, axes, fdr)), path)
