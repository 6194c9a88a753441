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
