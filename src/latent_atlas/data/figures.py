"""The dataset's figure: a grid of example images, one row per class (`plot_examples`); for a
sensor series, a few windows per class as line plots (`plot_series_examples`); for a table, the
class means of its standardised features (`plot_table_means`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from latent_atlas.data.store import Dataset
from latent_atlas.plotting import (channel_offset, class_colors, display_image, label_image_axes, plot_channels,
                                  use_style)

# Features named in a table's class-means figure; past this many, those whose class means differ
# most (the standard deviation of the means across classes).
MAX_FEATURES = 40


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


def _split_counts(ds: Dataset) -> str:
    n_train = int((ds.split == "train").sum())
    return f"{n_train:,} train / {len(ds) - n_train:,} test"


def plot_series_examples(ds: Dataset, per_class: int = 3, random_state: int = 0):
    """A sensor series' windows (`ds.kind` "series", samples (1, C, L)) as line plots: one row per
    class (labelled with its name and count), `per_class` windows each (`example_indices`), one
    line per channel against seconds from the window's start, channel i shifted down by a
    shared offset and named on the axis (and in the legend). Values are standardised (train
    mean 0, std 1 per channel). Returns the matplotlib Figure.
    """
    axes = ds.axes
    if ds.kind != "series" or axes is None or axes.row_names is None:
        raise ValueError(f"dataset {ds.name!r}: plot_series_examples takes a series (kind 'series' with "
                         f"channel names in its axes), got kind {ds.kind!r}")
    use_style()
    picks = example_indices(ds, per_class, random_state)
    windows = [ds.images[chosen][:, 0] for chosen in picks]  # (n, C, L) per class
    offset = channel_offset(np.concatenate(windows))
    n_channels = len(axes.row_names)
    fig, panels = plt.subplots(ds.n_classes, per_class, squeeze=False, sharex=True, sharey=True,
                               figsize=(2.4 * per_class + 1.2, (0.5 + 0.3 * n_channels) * ds.n_classes + 0.9),
                               constrained_layout=True)
    counts = np.bincount(ds.labels, minlength=ds.n_classes)
    lines = []
    for r, (chosen, w) in enumerate(zip(picks, windows)):
        for col in range(per_class):
            ax = panels[r, col]
            if col >= len(chosen):
                ax.set_axis_off()
                continue
            lines = plot_channels(ax, w[col], axes, offset, names=col == 0, lw=0.7)
            ax.set_title(f"sample {ds.sample_id[chosen[col]]}", fontsize=6, pad=2)
            ax.tick_params(labelsize=6, length=2, pad=1)
            ax.set_xlabel(axes.col_label if r == ds.n_classes - 1 else "", fontsize=7)
        panels[r, 0].set_ylabel(f"{ds.class_names[r]}\n(n={counts[r]:,})", rotation=0, ha="right", va="center",
                                fontsize=8)
    fig.legend(lines, axes.row_names, loc="outside right center", fontsize=7, title="channel", title_fontsize=7)
    rate = axes.settings.get("sample_rate")
    fig.suptitle(f"{ds.name}: {len(ds):,} windows of {n_channels} channels \u00d7 {len(axes.cols)} steps"
                 f"{f' at {rate:g} Hz' if rate else ''} ({_split_counts(ds)}); standardised values, "
                 f"channels {offset:.3g} apart", fontsize=9)
    return fig


def class_means(ds: Dataset, per_class: int, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The mean of each class's features over up to `per_class` of its samples (`example_indices`:
    test split preferred), and those sample counts: ((n_classes, F) float64, (n_classes,) int)."""
    picks = example_indices(ds, per_class, random_state)
    means = np.stack([ds.images[chosen].reshape(len(chosen), -1).mean(axis=0, dtype=np.float64)
                      if len(chosen) else np.full(ds.input_shape[-1], np.nan) for chosen in picks])
    return means, np.array([len(chosen) for chosen in picks])


def plot_table_means(ds: Dataset, per_class: int = 500, random_state: int = 0):
    """A table's classes (`ds.kind` "table", samples (1, 1, F)) as a heatmap of the class means of
    its standardised features (`class_means` over up to `per_class` samples of each class): one
    column per class, one row per feature (its name on the axis), blue below the train mean,
    red above, in train standard deviations. Past MAX_FEATURES features, those whose class means
    differ most, in the table's order, and the axis says how many are left out.
    Returns the matplotlib Figure.
    """
    axes = ds.axes
    if ds.kind != "table" or axes is None or axes.col_names is None:
        raise ValueError(f"dataset {ds.name!r}: plot_table_means takes a table (kind 'table' with feature "
                         f"names in its axes), got kind {ds.kind!r}")
    use_style()
    means, counts = class_means(ds, per_class, random_state)
    names = axes.col_names
    shown = np.arange(len(names))
    if len(names) > MAX_FEATURES:
        spread = np.nan_to_num(np.nanstd(means, axis=0), nan=-1.0)
        shown = np.sort(np.argsort(-spread, kind="stable")[:MAX_FEATURES])
    m = max(float(np.nanmax(np.abs(means[:, shown]), initial=0.0)), 1e-6)
    fig, ax = plt.subplots(figsize=(1.6 + 0.45 * ds.n_classes, 1.3 + 0.16 * len(shown)), constrained_layout=True)
    im = ax.imshow(means[:, shown].T, cmap="RdBu_r", vmin=-m, vmax=m, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(shown)), [names[i] for i in shown], fontsize=6)
    ax.set_xticks(range(ds.n_classes), [f"{c} (mean of {k:,})" for c, k in zip(ds.class_names, counts)], fontsize=7,
                  rotation=45, ha="right")
    ax.tick_params(length=2, pad=1)
    left_out = len(names) - len(shown)
    ax.set_ylabel(f"{len(shown)} of {len(names)} features ({left_out} not shown: least different between "
                  f"classes)" if left_out else axes.col_label, fontsize=7)
    fig.colorbar(im, ax=ax, shrink=0.6, label="class mean (train std units)")
    fig.suptitle(f"{ds.name}: {len(ds):,} samples of {len(names)} features ({_split_counts(ds)})", fontsize=9)
    return fig
