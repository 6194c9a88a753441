"""Figures of the feature-visualisation stage, drawn from its tables and images.

Each function takes the tables (and image arrays) that the stage's jobs wrote and returns a
matplotlib Figure; job `plot_featureviz` reads them and saves the figures.
"""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from latent_atlas.plotting import display_image, use_style


DISPLAYS = ("per_image", "fixed")


def _show(ax, x: np.ndarray, scaled: bool = False) -> None:
    """Draw an image (C, H, W): `scaled` = stretch its own range to black..white, as the study
    displayed its optimised images (also what shows unclipped values outside [0, 1]); else the
    fixed range [0, 1]."""
    im = display_image(x, clip=not scaled)
    lo, hi = (float(im.min()), float(im.max())) if scaled else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1
    if im.ndim == 3:  # colour: imshow has no vmin/vmax for RGB, so stretch the values
        ax.imshow(np.clip((im - lo) / (hi - lo), 0, 1))
    else:
        ax.imshow(im, cmap="gray", vmin=lo, vmax=hi)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _per_image(display: str) -> bool:
    """Whether `display` (featureviz.display) stretches each optimised image to its own range."""
    if display not in DISPLAYS:
        raise ValueError(f"featureviz.display must be one of {DISPLAYS}, got {display!r}")
    return display == "per_image"


def _display_note(display: str) -> str:
    return "each image in its own range" if _per_image(display) else "all images on [0, 1]"


def ratio_text(ratio: float) -> str:
    if not np.isfinite(ratio):
        return "∞"
    return f"{ratio:.3g}"


def activation_label(row: pd.Series) -> str:
    """How a result's activation is labelled: p for outputs, 'ratio (activation)' for hidden."""
    if row["layer_name"] == "output":
        return f"p={row['activation']:.3f}"
    return f"{ratio_text(row['ratio'])} ({row['activation']:.3g})"


def top3_text(row: pd.Series, width: int = 10) -> str:
    parts = []
    for k in (1, 2, 3):
        if f"top{k}_name" in row:
            parts.append(f"{str(row[f'top{k}_name'])[:width]} {row[f'top{k}_prob']:.2f}")
    return "\n".join(parts)


def plot_unregularised(table: pd.DataFrame, images: np.ndarray, class_names: Sequence[str],
                       display: str = "per_image", title: str = "") -> plt.Figure:
    """Rows: (layer, clipping); columns: target units, the activation under each image. Unclipped
    images stretched to their own range (their values leave [0, 1]); clipped ones too, or on
    [0, 1] with `display` "fixed"."""
    use_style()
    scaled = _per_image(display)
    groups = list(table.groupby(["layer", "clip"], sort=True))
    ncol = max(len(g) for _, g in groups)
    fig, axes = plt.subplots(len(groups), ncol, figsize=(1.05 * ncol + 0.8, 1.45 * len(groups) + 0.4),
                             squeeze=False, layout="constrained")
    for r, ((layer, clip), g) in enumerate(groups):
        output = g["layer_name"].iloc[0] == "output"
        for c in range(ncol):
            ax = axes[r, c]
            if c >= len(g):
                ax.axis("off")
                continue
            row = g.iloc[c]
            _show(ax, images[int(row["index"])], scaled=scaled or not clip)
            name = str(class_names[int(row["unit"])])[:12] if output else f"unit {int(row['unit'])}"
            ax.set_title(name, fontsize=6, pad=2)
            ax.set_xlabel(activation_label(row), fontsize=6, labelpad=2)
        what = "output" if output else f"layer {layer}"
        axes[r, 0].set_ylabel(f"{what}\n{'clipped' if clip else 'not clipped'}\n"
                              f"{int(g['steps'].iloc[0])} steps", fontsize=7)
    fig.suptitle(title or "Unregularised activation maximisation, without and with clipping\n"
                 f"({'each image in its own range' if scaled else 'clipped images on [0, 1]'})")
    return fig


def plot_adversarial_examples(table: pd.DataFrame, images: np.ndarray, class_names: Sequence[str],
                              show: int = 6, title: str = "") -> plt.Figure:
    """`show` adversarial examples (the most confident success per source class first): original,
    result, difference, and the network's class probabilities before and after as bars."""
    use_style()
    k = len(class_names)
    picked = pick_examples(table, show)
    n = len(picked)
    height = 1.55 * n + 0.5
    fig = plt.figure(figsize=(8.5, height))
    gs = fig.add_gridspec(n, 4, width_ratios=[1, 1, 1, 2.6], wspace=0.25, hspace=0.6,
                          top=1 - 0.75 / height, bottom=0.55 / height)
    dmax = max(float(np.abs(images[:, 1] - images[:, 0]).max()), 1e-6)
    for r, (_, row) in enumerate(picked.iterrows()):
        orig, res = images[int(row["index"])]
        a, b = int(row["source_class"]), int(row["target_class"])
        ax = fig.add_subplot(gs[r, 0])
        _show(ax, orig)
        ax.set_title(f"{class_names[a]}\np={row['source_prob']:.3f}", fontsize=7)
        ax = fig.add_subplot(gs[r, 1])
        _show(ax, res)
        ax.set_title(f"→ {class_names[b]}\np={row['target_prob']:.3f}", fontsize=7)
        ax = fig.add_subplot(gs[r, 2])
        # The signed difference, averaged over colour channels: clipping it to [0, 1] (as for an
        # image) would hide every pixel the attack darkened.
        ax.imshow((res - orig).mean(axis=0), cmap="RdBu_r", vmin=-dmax, vmax=dmax)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title(f"difference\nL2 {row['l2']:.2f}, L∞ {row['linf']:.2f}", fontsize=7)
        ax = fig.add_subplot(gs[r, 3])
        before = [row[f"before_p{c}"] for c in range(k)]
        after = [row[f"after_p{c}"] for c in range(k)]
        pos = np.arange(k)
        ax.bar(pos - 0.2, before, width=0.4, color="0.6", label="original")
        ax.bar(pos + 0.2, after, width=0.4, color="C3", label="adversarial")
        ax.set_ylim(0, 1)
        ax.set_xticks(pos)
        ax.set_xticklabels([str(c)[:8] for c in class_names] if r == n - 1 else [],
                           rotation=45, ha="right", fontsize=6)
        ax.tick_params(axis="y", labelsize=6)
        if r == 0:
            ax.legend(fontsize=6, loc="upper right", ncol=2)
    rate = table["success"].mean() if len(table) else float("nan")
    fig.suptitle(title or f"Adversarial examples (success rate {rate:.0%} of {len(table)})")
    return fig


def pick_examples(table: pd.DataFrame, show: int) -> pd.DataFrame:
    """Up to `show` adversarial rows: successes first (most confident first), each source class
    and each target class at most once while possible, then the rest in the same order."""
    order = table.sort_values(["success", "target_prob"], ascending=[False, False], kind="stable")
    picked, sources, targets = [], set(), set()
    for idx, row in order.iterrows():
        if row["source_class"] not in sources and row["target_class"] not in targets:
            picked.append(idx)
            sources.add(row["source_class"])
            targets.add(row["target_class"])
        if len(picked) == show:
            break
    rest = [i for i in order.index if i not in set(picked)]
    return order.loc[picked + rest[: max(0, show - len(picked))]]


def plot_adversarial_success(rates: pd.DataFrame, class_names: Sequence[str], title: str = ""
                             ) -> plt.Figure:
    """Success rate per (source class, target class), each cell with the median L-infinity."""
    use_style()
    k = len(class_names)
    mat = np.full((k, k), np.nan)
    linf = np.full((k, k), np.nan)
    for _, row in rates.iterrows():
        mat[int(row["source_class"]), int(row["target_class"])] = row["success_rate"]
        linf[int(row["source_class"]), int(row["target_class"])] = row["median_linf"]
    fig, ax = plt.subplots(figsize=(0.55 * k + 2.2, 0.5 * k + 1.6))
    im = ax.imshow(mat, cmap="viridis", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if np.isfinite(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:.0%}\n{linf[i, j]:.2f}", ha="center", va="center",
                        fontsize=5.5, color="white" if mat[i, j] < 0.6 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(class_names, rotation=45, ha="right", fontsize=7)
    ax.set_yticklabels(class_names, fontsize=7)
    ax.set_xlabel("target class b")
    ax.set_ylabel("source class a")
    fig.colorbar(im, ax=ax, label="success rate", shrink=0.8)
    total = rates["successes"].sum() / max(rates["n"].sum(), 1)
    ax.set_title(title or f"Adversarial success {total:.0%} (cell: rate, median L∞)")
    fig.tight_layout()
    return fig


def plot_tv_sweep(table: pd.DataFrame, images: np.ndarray, class_means: np.ndarray,
                  class_counts: np.ndarray, class_names: Sequence[str], confidence: float,
                  display: str = "per_image", title: str = "") -> plt.Figure:
    """Rows: output neurons; columns: TV weights (the target probability under each image), then
    the mean of the training images the network assigns to that class with probability >
    `confidence` (their count under it). `display`: "per_image" stretches every image, the class
    means included, to its own range; "fixed" draws all on [0, 1]."""
    use_style()
    scaled = _per_image(display)
    classes = list(dict.fromkeys(table["unit"].astype(int)))
    weights = sorted(table["tv_weight"].unique())
    ncol = len(weights) + 1
    fig, axes = plt.subplots(len(classes), ncol, figsize=(1.0 * ncol + 0.9, 1.15 * len(classes) + 0.7),
                             squeeze=False, layout="constrained")
    for r, c in enumerate(classes):
        for j, w in enumerate(weights):
            row = table[(table["unit"] == c) & (table["tv_weight"] == w)].iloc[0]
            ax = axes[r, j]
            _show(ax, images[int(row["index"])], scaled=scaled)
            ax.set_xlabel(f"p={row['activation']:.2f}", fontsize=6, labelpad=1)
            if r == 0:
                ax.set_title(f"TV {w:g}", fontsize=6, pad=2)
        ax = axes[r, -1]
        _show(ax, class_means[c], scaled=scaled)
        ax.set_xlabel(f"n={int(class_counts[c])}", fontsize=6, labelpad=1)
        if r == 0:
            ax.set_title(f"mean p>{confidence:g}", fontsize=6, pad=2)
        axes[r, 0].set_ylabel(str(class_names[c])[:12], fontsize=7)
    l1 = table["l1_weight"] / table["tv_weight"]
    sub = f", L1 = {l1.iloc[0]:g} x TV" if len(l1) and l1.iloc[0] > 0 else ""
    fig.suptitle(title or f"TV-weight sweep of output neurons\n({int(table['steps'].iloc[0])} steps{sub}; "
                          f"{_display_note(display)})")
    return fig


def plot_tv_l1_grid(table: pd.DataFrame, images: np.ndarray, class_names: Sequence[str],
                    display: str = "per_image", title: str = "") -> plt.Figure:
    """Rows: TV weights; columns: L1 as a fraction of TV. Under each image the target's
    activation (output: p; hidden: ratio to the next-highest unit, raw activation in brackets);
    `display` as in `plot_tv_sweep`."""
    use_style()
    scaled = _per_image(display)
    tvs = sorted(table["tv_weight"].unique())
    fracs = sorted(table["l1_fraction"].unique())
    fig, axes = plt.subplots(len(tvs), len(fracs), figsize=(1.15 * len(fracs) + 0.8, 1.25 * len(tvs) + 0.7),
                             squeeze=False, layout="constrained")
    for i, tv in enumerate(tvs):
        for j, f in enumerate(fracs):
            row = table[(table["tv_weight"] == tv) & (table["l1_fraction"] == f)].iloc[0]
            ax = axes[i, j]
            _show(ax, images[int(row["index"])], scaled=scaled)
            ax.set_xlabel(activation_label(row), fontsize=6, labelpad=1)
            if i == 0:
                ax.set_title(f"L1 {f:.0%} of TV", fontsize=7, pad=2)
        axes[i, 0].set_ylabel(f"TV {tv:g}", fontsize=7)
    row = table.iloc[0]
    if row["layer_name"] == "output":
        what = f"output neuron {int(row['unit'])} ({class_names[int(row['unit'])]})"
    else:
        what = f"layer {int(row['layer'])} neuron {int(row['unit'])}"
    fig.suptitle(title or f"TV x L1 grid, {what}\n{int(row['steps'])} steps; {_display_note(display)}",
                 fontsize=9)
    return fig


def plot_gallery(table: pd.DataFrame, images: np.ndarray, display: str = "per_image", title: str = "",
                 ncol: int = 8) -> plt.Figure:
    """Optimised images of one hidden layer's units, the unit above each image; under it its
    activation ratio (raw activation in brackets) and the network's top-3 classes for the image.
    `display` as in `plot_tv_sweep`."""
    use_style()
    scaled = _per_image(display)
    n = len(table)
    ncol = min(ncol, n)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.2 * ncol, 2.0 * nrow + 0.5), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (_, row) in zip(axes.ravel(), table.iterrows()):
        _show(ax, images[int(row["index"])], scaled=scaled)
        from_image = str(row.get("start", "")).startswith("image")
        ax.set_title(f"unit {int(row['unit'])}{'*' if from_image else ''}", fontsize=6, pad=2)
        ax.set_xlabel(f"{activation_label(row)}\n{top3_text(row)}", fontsize=5, labelpad=2)
    row = table.iloc[0]
    marked = "; * started from the real image that activates the unit most" if (
        "start" in table and table["start"].astype(str).str.startswith("image").any()) else ""
    fig.suptitle(title or (f"Layer {int(row['layer'])} ({row['layer_name']}): TV {row['tv_weight']:g}, "
                           f"L1 {row['l1_weight']:g}, {int(row['steps'])} steps; {_display_note(display)}"
                           f"{marked}"), fontsize=9)
    return fig


def plot_dead_neurons(summary: pd.DataFrame, title: str = "") -> plt.Figure:
    """Per hidden layer: share of units never active on the training set, split into those that
    optimisation could activate and those it could not (and those not tried)."""
    use_style()
    fig, ax = plt.subplots(figsize=(max(3.5, 0.7 * len(summary) + 1.5), 3.0))
    x = np.arange(len(summary))
    units = summary["units"].to_numpy()
    rev = summary["revivable"].to_numpy() / units
    not_rev = (summary["tried"] - summary["revivable"]).to_numpy() / units
    untried = (summary["dead"] - summary["tried"]).to_numpy() / units
    ax.bar(x, not_rev, color="0.25", label="dead, optimisation cannot activate")
    ax.bar(x, rev, bottom=not_rev, color="C1", label="dead on data, optimisation activates")
    if untried.any():
        ax.bar(x, untried, bottom=not_rev + rev, color="0.75", label="dead, not tried")
    for i, row in enumerate(summary.itertuples()):
        ax.text(i, row.dead_fraction + 0.005, f"{row.dead}/{row.units}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{int(r.layer)}\n{r.layer_name}" for r in summary.itertuples()], fontsize=7)
    ax.set_xlabel("hidden layer")
    ax.set_ylabel("share of units never active")
    top = float(summary["dead_fraction"].max()) if len(summary) else 0.0
    ax.set_ylim(0, max(0.05, top * 1.3))
    ax.legend(fontsize=6, loc="upper left")
    ax.set_title(title or "Dead neurons per layer (training split)")
    fig.tight_layout()
    return fig


def plot_coactivation(matrix: pd.DataFrame, clusters: pd.DataFrame, title: str = "") -> plt.Figure:
    """Per hidden layer with clusters: the correlation matrix of its co-activating units (ordered
    by cluster, largest first), cluster boundaries outlined."""
    use_style()
    layers = sorted(matrix["layer"].unique()) if len(matrix) else []
    if not layers:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no co-activating clusters at this threshold", ha="center", va="center")
        fig.suptitle(title or "Co-activating neurons")
        return fig
    ncol = min(4, len(layers))
    nrow = math.ceil(len(layers) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol + 0.8, 3.2 * nrow + 0.3), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel()[len(layers):]:
        ax.axis("off")
    im = None
    for ax, layer in zip(axes.ravel(), layers):
        m = matrix[matrix["layer"] == layer]
        units = list(dict.fromkeys(m["row_unit"]))
        pos = {u: i for i, u in enumerate(units)}
        mat = np.full((len(units), len(units)), np.nan)
        mat[m["row_unit"].map(pos), m["col_unit"].map(pos)] = m["correlation"]
        im = ax.imshow(mat, cmap="RdBu_r", vmin=-1, vmax=1)
        cl = clusters[(clusters["layer"] == layer) & clusters["unit"].isin(units)]
        cl = cl.set_index("unit").loc[units]
        start = 0
        for _, size in cl.groupby("cluster", sort=True).size().items():
            ax.add_patch(plt.Rectangle((start - 0.5, start - 0.5), size, size, fill=False,
                                       edgecolor="k", lw=0.8))
            start += size
        n_cl = clusters.loc[clusters["layer"] == layer, "cluster"].nunique()
        n_u = int((clusters["layer"] == layer).sum())
        ax.set_title(f"layer {layer}: {n_cl} clusters, {n_u} units", fontsize=8)
        step = max(1, len(units) // 12)
        ax.set_xticks(range(0, len(units), step))
        ax.set_xticklabels([units[i] for i in range(0, len(units), step)], rotation=90, fontsize=5)
        ax.set_yticks(range(0, len(units), step))
        ax.set_yticklabels([units[i] for i in range(0, len(units), step)], fontsize=5)
    fig.colorbar(im, ax=axes.ravel().tolist(), label="correlation of activations", shrink=0.6)
    fig.suptitle(title or "Neurons that activate together (training images)")
    return fig
