"""The dataset's figure: a grid of example images, one row per class."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from latent_atlas.data.store import Dataset
from latent_atlas.plotting import display_image, label_image_axes, use_style


def example_indices(ds: Dataset, per_class: int, random_state: int = 0) -> list[np.ndarray]:
    """For each class, up to `per_class` sample positions (test split preferred), drawn with a seed."""
    rng = np.random.default_rng(random_state)
    picks = []
    for c in range(ds.n_classes):
        members = np.flatnonzero((ds.labels == c) & (ds.split == "test"))
        if len(members) < per_class:
            members = np.flatnonzero(ds.labels == c)
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False)
        picks.append(np.sort(chosen))
    return picks


def plot_examples(ds: Dataset, per_class: int = 8, random_state: int = 0, cmap: str = "gray"):
    """Grid of example images: one row per class (labelled with its name and count), upright.

    Gray images use `cmap` on the fixed range [0, 1]; RGB images are shown in colour. With
    physical axes (`ds.axes`, spectrograms) the last row carries them: time under its first
    image, frequency on the right of its last.
    Returns the matplotlib Figure.
    """
    use_style()
    picks = example_indices(ds, per_class, random_state)
    n_rows = ds.n_classes
    c, h, w = ds.input_shape
    cell = 0.55 if max(h, w) <= 32 else 0.8  # inches per image
    gap = 0.06  # between images, as a fraction of a cell
    grid_w, grid_h = per_class * cell * w / max(h, w), n_rows * cell * h / max(h, w)
    title_h = 0.35
    fig, axes = plt.subplots(
        n_rows,
        per_class,
        squeeze=False,
        figsize=(grid_w, grid_h + title_h),
        gridspec_kw={"wspace": gap, "hspace": gap},
    )
    # The grid fills the figure below the title; row labels sit left of it (kept by bbox "tight").
    fig.subplots_adjust(left=0, right=1, bottom=0, top=grid_h / (grid_h + title_h))
    counts = np.bincount(ds.labels, minlength=ds.n_classes)
    for r, chosen in enumerate(picks):
        for col in range(per_class):
            ax = axes[r, col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(chosen):
                img = display_image(ds.images[chosen[col]])
                if c == 3:
                    ax.imshow(img, interpolation="nearest")
                else:
                    ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        axes[r, 0].set_ylabel(
            f"{ds.class_names[r]}\n(n={counts[r]:,})", rotation=0, ha="right", va="center", fontsize=8
        )
    if ds.axes is not None:
        label_image_axes(axes[n_rows - 1, 0], ds.axes, y=False, n_ticks=2, fontsize=5)
        right = axes[n_rows - 1, per_class - 1]
        label_image_axes(right, ds.axes, x=False, n_ticks=3, fontsize=5)
        right.yaxis.tick_right()
        right.yaxis.set_label_position("right")
    n_train = int((ds.split == "train").sum())
    fig.suptitle(
        f"{ds.name}: {len(ds):,} images {c}\u00d7{h}\u00d7{w} "
        f"({n_train:,} train / {len(ds) - n_train:,} test)",
        fontsize=9,
        y=1 - 0.08 / (grid_h + title_h),
        va="top",
    )
    return fig
