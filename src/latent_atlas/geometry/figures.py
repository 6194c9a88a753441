"""The geometry stage's figures, each drawn only from the stage's tables (and the decoded images)."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from latent_atlas.geometry.axes import most_off_centre_axes
from latent_atlas.geometry.planes import window_mask
from latent_atlas.latents import class_names_of
from latent_atlas.plotting import class_colors, display_image, scatter_by_class


def _grid(n_panels: int, ncols: int, size: float = 3.0):
    """A figure with `n_panels` square panels in rows of `ncols` (spare ones hidden), and its flat axes."""
    ncols = max(1, min(ncols, n_panels))
    nrows = int(np.ceil(n_panels / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, axes.flat


def _class_legend(fig, class_names: list[str], ncol: int) -> None:
    """One legend of class colours below the panels of a figure."""
    handles = [plt.Line2D([], [], ls="", marker="o", color=col) for col in class_colors(len(class_names))]
    fig.legend(handles, class_names, loc="lower center", ncol=min(len(class_names), ncol), fontsize=7)


def plot_axis_density(density: pd.DataFrame, summary: pd.DataFrame, show_alone: int,
                      selected: Sequence[int], title: str = ""):
    """All axes' density curves in one panel, then the `show_alone` most off-centre and the
    `selected` axes alone (tables: axis_density, axis_summary)."""
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
    """Radius histograms at each bin width with the chi pdf and the matched Gaussian
    (tables: radius_histogram, radius_summary)."""
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
    """Scree (variance ratio per component) and cumulative curve with the threshold counts
    (table: pca_variance)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.4))
    a1.bar(variance["component"], variance["explained_variance_ratio"], color="C0", linewidth=0)
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
    """Rows = planes, columns = zoom windows; points inside each window, size suited to the count
    (tables: planes, zoom)."""
    names = list(dict.fromkeys(planes["plane"]))
    n_win = zoom["window"].nunique()
    class_names = class_names_of(planes)
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
    _class_legend(fig, class_names, ncol=10)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def plot_neighbours(points: pd.DataFrame, dimension: pd.DataFrame, title: str = ""):
    """Nearest-neighbour distances and local intrinsic dimension, latents vs the Gaussian baseline
    (tables: neighbours, intrinsic_dimension)."""
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
    """One panel per projection table (rows = sample sizes, columns = input spaces), by class
    (tables: the tsne_* or umap_* maps of one model)."""
    sizes = sorted({int(t["n_requested"].iloc[0]) for t in tables})
    spaces = list(dict.fromkeys(t["space"].iloc[0] for t in tables))
    class_names = class_names_of(pd.concat([t[["label", "label_name"]] for t in tables]))
    fig, axes = plt.subplots(len(sizes), len(spaces), figsize=(3.2 * len(spaces), 3.2 * len(sizes)),
                             squeeze=False)
    for t in tables:
        ax = axes[sizes.index(int(t["n_requested"].iloc[0])), spaces.index(t["space"].iloc[0])]
        scatter_by_class(ax, t[["x", "y"]].to_numpy(), t["label"].to_numpy(), class_names, legend=False)
        space = "raw latents" if t["space"].iloc[0] == "raw" else f"PCA to {t['space'].iloc[0][3:]}"
        ax.set_title(f"{space}, n = {len(t)}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    _class_legend(fig, class_names, ncol=5)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08 if len(sizes) == 1 else 0.05, 1, 1))
    return fig


def plot_random_points(images: Mapping[str, np.ndarray], scores: pd.DataFrame, title: str = ""):
    """One square image grid per set side by side, titled with the set's mean plausibility scores
    (images: set -> (n, C, H, W) in [0, 1]; table: random_points)."""
    names = list(images)
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        imgs = images[name]
        n, ch, h, w = imgs.shape
        cols = int(np.ceil(np.sqrt(n)))
        rows = int(np.ceil(n / cols))
        canvas = np.ones((ch, rows * (h + 1), cols * (w + 1)), dtype=np.float32)  # 1-pixel white gaps
        for i in range(n):
            r, c = divmod(i, cols)
            canvas[:, r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = imgs[i]
        ax.imshow(display_image(canvas), cmap="gray" if ch == 1 else None, vmin=0, vmax=1)
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
