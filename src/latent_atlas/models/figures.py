"""Figures of the models stage, drawn from the files that training and extraction wrote.

Each function takes arrays or frames and returns a matplotlib Figure; the plot jobs
(models.jobs) read the files and save the figures with `plotting.save_figure`.
"""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize

from latent_atlas.plotting import (axes_kind, channel_offset, display_image, label_image_axes, plot_channels,
                                  scatter_by_class, use_style)


def plot_training_curves(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Train/validation loss per epoch (and accuracy for classifiers); dotted lines mark the
    epochs where the learning rate changes.

    table : train_log.tsv as a frame (epoch, lr, train_loss, val_loss[, train_accuracy, val_accuracy]).
    """
    use_style()
    has_acc = "train_accuracy" in table.columns
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(8.0 if has_acc else 4.5, 3.2),
                             squeeze=False)
    axes = axes[0]
    epoch = table["epoch"].to_numpy()
    changes = epoch[1:][np.diff(table["lr"].to_numpy()) != 0]
    panels = [("loss", "train_loss", "val_loss")]
    if has_acc:
        panels.append(("accuracy", "train_accuracy", "val_accuracy"))
    for ax, (what, train, val) in zip(axes, panels):
        ax.plot(epoch, table[train], marker="o", ms=3, label="train")
        if table[val].notna().any():
            ax.plot(epoch, table[val], marker="o", ms=3, label="validation")
        for e in changes:
            lr = table.loc[table["epoch"] == e, "lr"].iloc[0]
            ax.axvline(e - 0.5, color="0.6", ls=":", lw=1)
            ax.annotate(f"lr {lr:g}", (e - 0.5, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(3, 0), textcoords="offset points", fontsize=7, color="0.4",
                        ha="left", va="top")
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def class_interleaved(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of up to `n` samples taking one of each class in turn (first of each class, then
    second of each, ...), so every class appears before any repeats."""
    labels = np.asarray(labels)
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        m = labels == c
        rank[m] = np.arange(m.sum())
    order = np.lexsort((labels, rank))
    return order[:n]


def plot_reconstructions(original: np.ndarray, reconstruction: np.ndarray, labels: np.ndarray,
                         class_names: Sequence[str], n_columns: int = 10, title: str = "",
                         axes=None, cmap: str = "gray") -> plt.Figure:
    """Three rows: originals, reconstructions, absolute error (mean over channels, one colour
    scale for the whole row), one column per sample, one class after another.

    original, reconstruction : float ndarray of shape (n, C, H, W) in [0, 1].
    axes : data.store.ImageAxes or None
        Physical axes of the images (spectrograms): the first column's images get frequency and
        time ticks, the bottom row's the time ticks. Axes with channel or feature names (a
        series', a table's) draw `plot_series_reconstructions` or `plot_table_reconstructions`.
    """
    if axes_kind(axes) == "series":
        return plot_series_reconstructions(original, reconstruction, labels, class_names, axes, n_columns, title)
    if axes_kind(axes) == "table":
        return plot_table_reconstructions(original, reconstruction, labels, class_names, axes, n_columns, title)
    use_style()
    idx = class_interleaved(labels, n_columns)
    err = np.abs(original[idx] - reconstruction[idx]).mean(axis=1)
    vmax = max(float(err.max()), 1e-6)
    ncol = len(idx)
    image_axes, axes = axes, None
    if image_axes is not None:
        fig, axes = plt.subplots(3, ncol, figsize=(1.0 * ncol + 1.4, 4.3), squeeze=False)
    else:
        fig, axes = plt.subplots(3, ncol, figsize=(1.0 * ncol + 0.9, 3.5), squeeze=False)
    for j, i in enumerate(idx):
        axes[0, j].imshow(display_image(original[i]), vmin=0, vmax=1, cmap=cmap)
        axes[1, j].imshow(display_image(reconstruction[i]), vmin=0, vmax=1, cmap=cmap)
        im = axes[2, j].imshow(err[j], vmin=0, vmax=vmax, cmap="magma")
        axes[0, j].set_title(str(class_names[labels[i]]), fontsize=7)
        mse = float(((original[i] - reconstruction[i]) ** 2).mean())
        axes[2, j].set_xlabel(f"MSE {mse:.3f}", fontsize=6)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
    for row, name in enumerate(["original", "reconstruction", "|error|"]):
        if image_axes is not None:
            mse_label = axes[row, 0].get_xlabel()
            label_image_axes(axes[row, 0], image_axes, x=row == 2)
            axes[row, 0].set_ylabel(f"{name}\n{image_axes.row_label}", fontsize=7)
            if row == 2:
                axes[row, 0].set_xlabel(f"{image_axes.col_label}\n{mse_label}", fontsize=6)
        else:
            axes[row, 0].set_ylabel(name, fontsize=8)
    fig.colorbar(im, ax=axes[2, :].tolist(), fraction=0.02, pad=0.01, label="|error|")
    if title:
        fig.suptitle(title)
    return fig


def _sample_title(class_names: Sequence[str], label: int, original: np.ndarray, reconstruction: np.ndarray) -> str:
    """A reconstruction panel's title: the sample's class and its mean squared error."""
    return f"{class_names[label]}, MSE {float(((original - reconstruction) ** 2).mean()):.3f}"


def _panel_grid(n: int) -> tuple[int, int]:
    """(rows, columns) of a grid of n panels, at most 5 to a row, the rows as full as can be."""
    nrow = -(-max(n, 1) // 5)
    return nrow, -(-max(n, 1) // nrow)


def plot_series_reconstructions(original: np.ndarray, reconstruction: np.ndarray, labels: np.ndarray,
                                class_names: Sequence[str], axes, n_samples: int = 10,
                                title: str = "") -> plt.Figure:
    """Series windows beside their reconstructions: one panel per sample (up to `n_samples`, one
    class after another, at most 5 to a row), its input (black) and reconstruction (red) as one line pair
    per channel against seconds from the window's start, channel i shifted down by a shared
    offset, the channel names on the first column's axis.

    original, reconstruction : float ndarray of shape (n, 1, C, L), standardised (train std units).
    axes : data.store.ImageAxes of the series (channel names down the rows, `cols` in seconds).
    """
    use_style()
    idx = class_interleaved(labels, n_samples)
    offset = channel_offset(original[idx])
    nrow, ncol = _panel_grid(len(idx))
    fig, panels = plt.subplots(nrow, ncol, squeeze=False, sharex=True, sharey=True, constrained_layout=True,
                               figsize=(2.5 * ncol + 0.9, (0.6 + 0.35 * len(axes.row_names)) * nrow + 0.6))
    for j, (ax, i) in enumerate(zip(panels.ravel(), idx)):
        first = plot_channels(ax, original[i, 0], axes, offset, color="black", names=j % ncol == 0, lw=0.8)[0]
        rebuilt = plot_channels(ax, reconstruction[i, 0], axes, offset, color="tab:red", names=j % ncol == 0,
                                lw=0.8, alpha=0.85)[0]
        ax.set_title(_sample_title(class_names, labels[i], original[i], reconstruction[i]), fontsize=7)
        ax.tick_params(labelsize=6, length=2, pad=1)
        if j >= len(idx) - ncol:  # the lowest panel of its column
            ax.set_xlabel(axes.col_label, fontsize=7)
            ax.tick_params(labelbottom=True)
    for ax in panels.ravel()[len(idx):]:
        ax.set_axis_off()
    fig.legend([first, rebuilt], ["input", "reconstruction"], loc="outside lower center", ncols=2, fontsize=7)
    fig.suptitle(f"{title + ': ' if title else ''}series windows and reconstructions (standardised, channels "
                 f"{offset:.3g} apart)", fontsize=9)
    return fig


# Features named in a table's reconstruction figure; past this many, those with the largest error
# over the samples shown.
MAX_FEATURES = 30


def plot_table_reconstructions(original: np.ndarray, reconstruction: np.ndarray, labels: np.ndarray,
                               class_names: Sequence[str], axes, n_samples: int = 10,
                               title: str = "") -> plt.Figure:
    """Table rows beside their reconstructions: one panel per sample (up to `n_samples`, one class
    after another, at most 5 to a row), each feature a row (its name on the first column's axis) with
    the input (black dot) and the reconstruction (red cross) joined by a grey line (the error).
    Past MAX_FEATURES features, those with the largest mean squared error over the samples
    shown, in the table's order; the axis says how many are left out.

    original, reconstruction : float ndarray of shape (n, 1, 1, F), standardised (train std units).
    axes : data.store.ImageAxes of the table (`col_names`: the F feature names).
    """
    use_style()
    idx = class_interleaved(labels, n_samples)
    names = axes.col_names
    x, r = original[idx].reshape(len(idx), -1), reconstruction[idx].reshape(len(idx), -1)
    if x.shape[1] != len(names):
        raise ValueError(f"the table's axes name {len(names)} features, the reconstructions have {x.shape[1]}")
    shown = np.arange(len(names))
    if len(names) > MAX_FEATURES:
        shown = np.sort(np.argsort(-((x - r) ** 2).mean(axis=0), kind="stable")[:MAX_FEATURES])
    nrow, ncol = _panel_grid(len(idx))
    fig, panels = plt.subplots(nrow, ncol, squeeze=False, sharex=True, sharey=True, constrained_layout=True,
                               figsize=(1.9 * ncol + 1.3, (0.7 + 0.12 * len(shown)) * nrow + 0.6))
    pos = np.arange(len(shown))
    for j, (ax, i) in enumerate(zip(panels.ravel(), idx)):
        ax.hlines(pos, x[j, shown], r[j, shown], color="0.6", lw=0.8)
        first = ax.scatter(x[j, shown], pos, s=9, color="black", zorder=3)
        rebuilt = ax.scatter(r[j, shown], pos, s=12, marker="x", color="tab:red", lw=0.8, zorder=3)
        ax.axvline(0, color="0.85", lw=0.5, zorder=0)
        ax.set_title(_sample_title(class_names, labels[i], original[i], reconstruction[i]), fontsize=7)
        ax.tick_params(labelsize=6, length=2, pad=1)
        if j >= len(idx) - ncol:  # the lowest panel of its column
            ax.set_xlabel("value (train std units)", fontsize=7)
            ax.tick_params(labelbottom=True)
    ax = panels[0, 0]
    ax.set_yticks(pos, [names[i] for i in shown])
    ax.set_ylim(len(shown) - 0.5, -0.5)  # the table's first feature at the top
    left_out = len(names) - len(shown)
    for row in panels[:, 0]:
        row.set_ylabel(f"{len(shown)} of {len(names)} features ({left_out} not shown: smallest error)"
                       if left_out else axes.col_label, fontsize=7)
    for ax in panels.ravel()[len(idx):]:
        ax.set_axis_off()
    fig.legend([first, rebuilt], ["input", "reconstruction"], loc="outside lower center", ncols=2, fontsize=7)
    fig.suptitle(f"{title + ': ' if title else ''}table rows and reconstructions (standardised)", fontsize=9)
    return fig


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes): rows true class, columns predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels), np.asarray(preds)), 1)
    return cm


def plot_confusion_matrix(labels: np.ndarray, preds: np.ndarray, class_names: Sequence[str],
                          title: str = "") -> plt.Figure:
    """Row-normalised confusion matrix (share of each true class predicted as each class), in %."""
    use_style()
    k = len(class_names)
    cm = confusion_matrix(labels, preds, k)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(3.5, 0.45 * k + 1.5)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    im = ax.imshow(share * 100, vmin=0, vmax=100, cmap="Blues")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    pct = 100 * share[i, j]
                    ax.text(j, i, f"{pct:.0f}" if pct >= 0.5 else "<1", ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for side in ax.spines.values():
        side.set_visible(False)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of true class")
    accuracy = float(np.trace(cm) / max(cm.sum(), 1))
    ax.set_title(f"{title + ': ' if title else ''}accuracy {100 * accuracy:.2f}% (n = {cm.sum()})")
    return fig


def plot_latent_scatter(z: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                        title: str = "") -> plt.Figure:
    """Scatter of 2-D latents coloured by class. z : float ndarray of shape (n, 2)."""
    use_style()
    if z.shape[1] != 2:
        raise ValueError(f"latent scatter needs 2-D latents, got {z.shape[1]} dimensions")
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    scatter_by_class(ax, z, np.asarray(labels), list(class_names), legend=False)
    ax.set_xlabel("z0")
    ax.set_ylabel("z1")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(*ax.get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5),
              markerscale=4, fontsize=7)
    if title:
        ax.set_title(title)
    return fig


def plot_weight_tiles(weights: np.ndarray, max_units: int = 64, title: str = "") -> plt.Figure:
    """First-layer weights as images: one tile per unit, (C, H, W) each, diverging colours with
    each tile scaled to the 99th percentile of its |weight| (red positive, blue negative; colour
    inputs: mean over channels).

    weights : float ndarray of shape (units, C, H, W); the first `max_units` units are drawn.
    """
    use_style()
    w = np.asarray(weights, dtype=np.float64)[:max_units].mean(axis=1)
    n = len(w)
    ncol = min(n, 8 if n <= 32 else int(math.ceil(math.sqrt(n))))
    nrow = int(math.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(0.85 * ncol, 0.85 * nrow + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for u in range(n):
        # the 99th percentile, not the maximum: a few pixels that are constant in the data (a
        # border that is always 0) keep large initial weights and would wash out the rest
        lim = max(float(np.percentile(np.abs(w[u]), 99)), 1e-12)
        ax = axes.ravel()[u]
        ax.imshow(w[u], cmap="RdBu_r", norm=Normalize(-lim, lim))
        ax.set_title(str(u), fontsize=6, pad=1)
    if title:
        fig.suptitle(title)
    return fig
