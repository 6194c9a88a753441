"""Shared figure helpers: one style, deterministic and atomic saving, class colours.

Figures are drawn from tables by separate rules; these helpers make every figure look alike and
come out byte-identical for the same input (no timestamps or software stamps in the files).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from latent_atlas.io import atomic_path  # noqa: E402

STYLE = Path(__file__).with_name("latent_atlas.mplstyle")

# Per-format metadata that would otherwise stamp a date or the software version into the file.
_METADATA = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "Producer": None, "Creator": None},
    "svg": {"Date": None, "Creator": None},
}


def use_style() -> None:
    """Apply the bundled style (call once before drawing)."""
    plt.style.use(STYLE)
    matplotlib.rcParams["svg.hashsalt"] = "latent-atlas"


def save_figure(fig: plt.Figure, paths: str | os.PathLike | Sequence[str | os.PathLike]) -> None:
    """Save `fig` atomically to each of `paths` (format from each suffix), deterministically; close it.

    Rules pass every configured format's path at once (`figures.formats`), e.g. x.png and x.pdf.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for path in map(Path, paths):
        fmt = path.suffix.lstrip(".").lower()
        if fmt not in _METADATA:
            raise ValueError(f"unsupported figure format {fmt!r} for {path}; use png, pdf or svg")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, metadata=_METADATA[fmt])
    plt.close(fig)


def class_colors(n_classes: int) -> np.ndarray:
    """(n_classes, 4) RGBA colours: tab10 up to 10 classes, tab20 up to 20, else a hue wheel."""
    if n_classes <= 10:
        cmap = plt.get_cmap("tab10")
    elif n_classes <= 20:
        cmap = plt.get_cmap("tab20")
    else:
        cmap = plt.get_cmap("hsv", n_classes + 1)
    return np.array([cmap(i) for i in range(n_classes)])


def point_size(n_points: int) -> float:
    """Marker area for a scatter of `n_points`: large for a few points, fine for a cloud."""
    return float(np.clip(2000.0 / max(n_points, 1), 0.2, 20.0))


def scatter_by_class(ax, xy: np.ndarray, labels: np.ndarray, class_names: list[str],
                     legend: bool = True, size: float | None = None) -> None:
    """Scatter 2-D points coloured by integer class label, with a legend of class names."""
    colors = class_colors(len(class_names))
    s = point_size(len(xy)) if size is None else size
    for c, name in enumerate(class_names):
        m = labels == c
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=s, color=colors[c], label=name, linewidths=0,
                       rasterized=len(xy) > 5000)
    if legend:
        ax.legend(markerscale=max(1.0, 6.0 / np.sqrt(s)), loc="best", fontsize=7)


def display_image(x: np.ndarray, clip: bool = False) -> np.ndarray:
    """One (C, H, W) image as imshow takes it: (H, W) for one channel, (H, W, 3) for colour.

    `clip` clips colour images to [0, 1] (imshow clips them anyway, with a warning; one-channel
    images are left alone: their colour map has its own vmin/vmax).
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"display_image takes one image of shape (C, H, W), got {x.shape}")
    if x.shape[0] == 1:
        return x[0]
    return np.transpose(np.clip(x, 0, 1) if clip else x, (1, 2, 0))


def _tick_positions(values: np.ndarray, n: int) -> tuple[np.ndarray, list[str]]:
    """Pixel positions and labels of round values inside the range of `values` (one per pixel,
    monotonic, either direction)."""
    from matplotlib.ticker import MaxNLocator

    lo, hi = float(values.min()), float(values.max())
    ticks = [t for t in MaxNLocator(nbins=n, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= t <= hi]
    order = np.argsort(values)
    pos = np.interp(ticks, values[order], np.arange(len(values), dtype=float)[order])
    return pos, [f"{t:g}" for t in ticks]


# Names a named axis ticks at most (a series' channels); past this many, every k-th name.
MAX_NAMED_TICKS = 24


def axes_kind(axes) -> str:
    """What a dataset's axes (`data.store.ImageAxes` or None) say its samples are: "table" (named
    columns: features), "series" (named rows: channels) or "image" (no axes, or numeric ones:
    spectrograms); the store's `kind`, for files that carry the axes but not the kind."""
    if axes is not None and axes.col_names is not None:
        return "table"
    if axes is not None and axes.row_names is not None:
        return "series"
    return "image"


def label_image_axes(ax, axes, x: bool = True, y: bool = True, n_ticks: int = 4, fontsize: float = 6) -> None:
    """Tick and label an imshow'd image with its physical axes (`data.store.ImageAxes`: a value
    per row and per column, e.g. Hz and s of a spectrogram; a series' channel names down the
    rows); `x` / `y` choose which axes get ticks and labels (the rest stay bare, as in a grid
    where one panel carries the scale). A named axis ticks its names (every k-th past
    MAX_NAMED_TICKS), a numeric one `n_ticks` round values."""
    for on, values, names, label, set_ticks, set_labels, set_label in (
        (x, axes.cols, axes.col_names, axes.col_label, ax.set_xticks, ax.set_xticklabels, ax.set_xlabel),
        (y, axes.rows, axes.row_names, axes.row_label, ax.set_yticks, ax.set_yticklabels, ax.set_ylabel),
    ):
        if not on:
            continue
        if names is not None:
            pos = np.arange(0, len(names), -(-len(names) // MAX_NAMED_TICKS))
            labels = [names[i] for i in pos]
        else:
            pos, labels = _tick_positions(np.asarray(values, dtype=float), n_ticks)
        set_ticks(pos)
        set_labels(labels, fontsize=fontsize)
        set_label(label, fontsize=fontsize + 1, labelpad=1)
    ax.tick_params(length=2, pad=1)


def channel_offset(windows: np.ndarray) -> float:
    """Vertical distance between the channels of offset line plots (`plot_channels`) of
    standardised series windows (..., C, L): twice the 99th percentile of |value|, at least 2
    (two train standard deviations), so that neighbouring channels rarely cross."""
    return max(2.0, 2.0 * float(np.percentile(np.abs(windows), 99)))


def plot_channels(ax, window: np.ndarray, axes, offset: float, color=None, names: bool = True,
                  **line_kw) -> list:
    """One series window (C, L) as C lines against time in seconds (`axes.cols`, an ImageAxes of
    a series), channel i shifted down by i x `offset` (channel 0 at the top); `color` one colour
    for every line, else channel i in `class_colors(C)[i]`; the channels are ticked at their
    offsets, named (`axes.row_names`) where `names`, else unlabelled (a panel beside a named one).
    Returns the lines, in channel order."""
    window = np.asarray(window)
    if window.ndim != 2 or window.shape != (len(axes.rows), len(axes.cols)):
        raise ValueError(f"plot_channels takes one window of shape ({len(axes.rows)}, {len(axes.cols)}) "
                         f"(channels, steps of the axes), got {window.shape}")
    colors = class_colors(len(window)) if color is None else [color] * len(window)
    base = -offset * np.arange(len(window))
    lines = [ax.plot(axes.cols, values + b, color=c, **line_kw)[0] for values, b, c in zip(window, base, colors)]
    ax.set_xlim(float(axes.cols[0]), float(axes.cols[-1]))
    ax.set_yticks(base, axes.row_names)
    ax.tick_params(axis="y", labelleft=names)
    return lines
