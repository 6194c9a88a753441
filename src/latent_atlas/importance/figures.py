"""Figures of the permutation-importance tables, drawn from the tables alone.

Images are drawn upright: a pixel's value lands at its (row, col) of the image (row 0 at the top).
With the dataset's physical axes (`axes`, a `data.store.ImageAxes`: spectrograms) one heatmap
per figure carries frequency (Hz, low at the bottom) and time (s) ticks; the others share them.
Colour scales: plain importance white -> red, directional importance blue (negative) - white (0) -
red (positive).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from latent_atlas.plotting import label_image_axes, use_style

DIVERGING = "RdBu_r"  # blue (negative) - white (0) - red (positive)
SEQUENTIAL = "Reds"   # white (0) -> red

# Shared colour scales end at this quantile of |value|, so that a few extreme pixels (rarely lit
# edge pixels) do not wash out every map; the colour bar marks the clipping.
SCALE_QUANTILE = 0.998


def grid(frame: pd.DataFrame, value: str, shape: tuple[int, int], dim: int) -> np.ndarray:
    """(H, W) image of column `value` for one dimension: a pixel's value lands at (row, col)."""
    sub = frame[frame["dim"] == dim]
    img = np.zeros(shape)
    img[sub["row"].to_numpy(), sub["col"].to_numpy()] = sub[value].to_numpy()
    return img


def top_dimensions(latent: pd.DataFrame, cls: int, k: int) -> list[int]:
    """The k most important dimensions of class `cls` (ties: lower dimension first)."""
    sub = latent[latent["class"] == cls].sort_values(["importance", "dim"], ascending=[False, True],
                                                    kind="stable")
    return [int(v) for v in sub["dim"].head(k)]


def image_shape_of(pixel: pd.DataFrame) -> tuple[int, int]:
    return int(pixel["row"].max()) + 1, int(pixel["col"].max()) + 1


def _heatmap(ax, img: np.ndarray, cmap: str, vmin: float, vmax: float, title: str | None = None):
    """Draw an (H, W) image upright (row 0 at the top) without axes ticks."""
    im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, origin="upper", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():  # a thin frame shows the image's extent on white
        spine.set_visible(True)
        spine.set_linewidth(0.5)
        spine.set_color("0.6")
    if title:
        ax.set_title(title, fontsize=8)
    return im


def _symmetric_limit(values: np.ndarray, quantile: float = 1.0) -> float:
    values = np.abs(np.asarray(values, dtype=np.float64))
    m = float(np.quantile(values, quantile)) if len(values) else 0.0
    if m <= 0 and len(values):
        m = float(values.max())
    return m if m > 0 else 1.0


def plot_directional(pixel: pd.DataFrame, title: str | None = None, axes=None):
    """Directional importance of every pixel for every encoded dimension, one shared scale."""
    use_style()
    shape = image_shape_of(pixel)
    dims = sorted(pixel["dim"].unique())
    ncol = min(8, len(dims))
    nrow = -(-len(dims) // ncol)
    m = _symmetric_limit(pixel["directional"].to_numpy(), SCALE_QUANTILE)
    image_axes = axes
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.25 * ncol + 0.8, 1.35 * nrow + 0.5),
                             squeeze=False, constrained_layout=True)
    im = None
    for ax, dim in zip(axes.ravel(), dims):
        im = _heatmap(ax, grid(pixel, "directional", shape, dim), DIVERGING, -m, m, f"z{dim}")
    for ax in axes.ravel()[len(dims):]:
        ax.axis("off")
    if image_axes is not None:
        label_image_axes(axes[-1, 0], image_axes, n_ticks=3, fontsize=5)
    fig.colorbar(im, ax=axes, shrink=0.6, extend="both",
                 label="directional importance (sign of slope x MSE)")
    if title:
        fig.suptitle(title)
    return fig


def most_important_dimension(latent: pd.DataFrame) -> int:
    """The dimension with the largest latent importance averaged over classes (ties: lowest)."""
    mean = latent.groupby("dim")["importance"].mean()
    return int(mean.sort_index().idxmax())


def plot_dimension(pixel: pd.DataFrame, dim: int, title: str | None = None, axes=None):
    """Plain (white->red) beside directional (blue-white-red) importance of one dimension."""
    use_style()
    shape = image_shape_of(pixel)
    plain = grid(pixel, "importance", shape, dim)
    directional = grid(pixel, "directional", shape, dim)
    fig, (a, b) = plt.subplots(1, 2, figsize=(7, 3.4), constrained_layout=True)
    m = _symmetric_limit(plain.ravel())
    fig.colorbar(_heatmap(a, plain, SEQUENTIAL, 0, m, f"z{dim}: importance"), ax=a, shrink=0.85)
    fig.colorbar(_heatmap(b, directional, DIVERGING, -m, m, f"z{dim}: directional"), ax=b,
                 shrink=0.85)
    if axes is not None:
        label_image_axes(a, axes)
        label_image_axes(b, axes, y=False)
    if title:
        fig.suptitle(title)
    return fig


# Bars a class's chart draws, each with its name; past this many, the most important ones.
MAX_BARS = 40


def _bar(ax, sub: pd.DataFrame, top: list[int], horizontal: bool = False):
    """Latent importance of one class, sorted, with one-std error bars; top dimensions in red.

    Every bar carries its dimension's name (a reader takes the named bars for the ranking); with
    more than MAX_BARS dimensions the MAX_BARS most important are drawn and the axis says how
    many are left out.
    """
    sub = sub.sort_values(["importance", "dim"], ascending=[False, True], kind="stable")
    left_out = max(0, len(sub) - MAX_BARS)
    sub = sub.iloc[:MAX_BARS]
    colors = ["#c0392b" if d in top else "#7f8c8d" for d in sub["dim"]]
    pos = np.arange(len(sub))
    ax.bar(pos, sub["importance"], yerr=sub["std"], color=colors, width=0.8,
           error_kw={"elinewidth": 0.6, "capsize": 0})
    ax.set_xticks(pos)
    ax.set_xticklabels([f"z{d}" for d in sub["dim"]], rotation=90, fontsize=6 if len(sub) <= 24 else 5)
    if left_out:
        ax.set_xlabel(f"top {len(sub)} of {len(sub) + left_out} dimensions ({left_out} not shown)", fontsize=6)
    ax.set_ylabel("importance (MSE)", fontsize=7)
    ax.tick_params(axis="y", labelsize=6)


def plot_class(pixel: pd.DataFrame, latent: pd.DataFrame, cls: int, top_k: int, axes=None):
    """One class: sorted bar chart of latent importance beside the heatmaps of its top-k dims."""
    use_style()
    sub = latent[latent["class"] == cls]
    if sub.empty:
        raise ValueError(f"class {cls} not in the latent importance table "
                         f"(classes: {sorted(latent['class'].unique())})")
    name = str(sub["class_name"].iloc[0])
    top = top_dimensions(latent, cls, top_k)
    shape = image_shape_of(pixel)
    m = _symmetric_limit(pixel.loc[pixel["dim"].isin(top), "directional"].to_numpy(), SCALE_QUANTILE)
    fig = plt.figure(figsize=(4 + 2.0 * len(top), 3.2), constrained_layout=True)
    gs = fig.add_gridspec(1, len(top) + 1, width_ratios=[2.4] + [1] * len(top))
    _bar(fig.add_subplot(gs[0]), sub, top)
    im = None
    for i, dim in enumerate(top):
        ax = fig.add_subplot(gs[i + 1])
        im = _heatmap(ax, grid(pixel, "directional", shape, dim), DIVERGING, -m, m,
                      f"z{dim} (rank {i + 1})")
        if axes is not None:
            label_image_axes(ax, axes, y=i == 0, n_ticks=3, fontsize=5)
    fig.colorbar(im, ax=fig.axes[1:], shrink=0.7, extend="both", label="directional importance")
    fig.suptitle(f"class {cls}: {name}")
    return fig


def plot_classes(pixel: pd.DataFrame, latent: pd.DataFrame, top_k: int, axes=None):
    """Appendix grid: one row per class, the bar chart and the top-k heatmaps (one shared scale)."""
    use_style()
    classes = sorted(int(c) for c in latent["class"].unique())
    shape = image_shape_of(pixel)
    m = _symmetric_limit(pixel["directional"].to_numpy(), SCALE_QUANTILE)
    fig = plt.figure(figsize=(3.2 + 1.3 * top_k, 1.45 * len(classes) + 0.6), constrained_layout=True)
    gs = fig.add_gridspec(len(classes), top_k + 1, width_ratios=[2.6] + [1] * top_k)
    im = None
    for r, cls in enumerate(classes):
        sub = latent[latent["class"] == cls]
        top = top_dimensions(latent, cls, top_k)
        ax = fig.add_subplot(gs[r, 0])
        _bar(ax, sub, top)
        ax.set_ylabel(str(sub["class_name"].iloc[0]), fontsize=7)
        for i, dim in enumerate(top):
            ax = fig.add_subplot(gs[r, i + 1])
            im = _heatmap(ax, grid(pixel, "directional", shape, dim), DIVERGING, -m, m, f"z{dim}")
            if axes is not None and r == len(classes) - 1 and i == 0:
                label_image_axes(ax, axes, n_ticks=3, fontsize=5)
    fig.colorbar(im, ax=fig.axes, shrink=0.3, extend="both", label="directional importance")
    return fig
