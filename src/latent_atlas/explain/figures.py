"""The explain stage's figures, each drawn only from the stage's tables (and the samples' arrays)."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.gridspec import GridSpecFromSubplotSpec

from latent_atlas.explain.pca import variance_at
from latent_atlas.plotting import class_colors, display_image, scatter_by_class
from latent_atlas.projections import METHODS

METHOD_TITLES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def _value_cmap(values: np.ndarray) -> dict:
    """imshow colour settings: a sequential map for non-negative values, a centred one otherwise."""
    if np.min(values) >= 0:
        return {"cmap": "magma", "vmin": 0.0}
    lim = float(np.max(np.abs(values)))
    return {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim}


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) with rows * cols == n, as square as possible, rows <= cols (128 -> 8 x 16)."""
    rows = int(np.sqrt(n))
    while n % rows:
        rows -= 1
    return rows, n // rows


def _signed_bars(ax, names: pd.Series, values: pd.Series) -> None:
    """Horizontal bars of signed values, the first one on top: blue positive, red negative."""
    at = np.arange(len(values))[::-1]
    ax.barh(at, values, color=np.where(values > 0, "tab:blue", "tab:red"))
    ax.set_yticks(at, names, fontsize=6)
    ax.axvline(0, color="k", lw=0.5)


def _quality_text(q: pd.Series, full_acc: float) -> str:
    return (f"T={q['trustworthiness']:.3f}  C={q['continuity']:.3f}  (k={int(q['k'])})\n"
            f"{int(q['knn_k'])}-NN acc {q['knn_accuracy']:.3f} (full {full_acc:.3f})")


def plot_maps(maps: pd.DataFrame, quality: pd.DataFrame, class_names: Sequence[str], title: str = ""):
    """Side-by-side PCA, t-SNE and UMAP coloured by class, with each map's quality numbers."""
    full_acc = float(quality.loc[quality["space"] == "full", "knn_accuracy"].iloc[0])
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    for ax, method in zip(axes, METHODS):
        rows = maps[maps["method"] == method]
        scatter_by_class(ax, rows[["x", "y"]].to_numpy(), rows["label"].to_numpy(), list(class_names),
                         legend=False)
        q = quality[quality["space"] == method].iloc[0]
        ax.set_title(METHOD_TITLES[method])
        ax.text(0.02, 0.98, _quality_text(q, full_acc), transform=ax.transAxes, va="top", fontsize=7,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1.5})
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
    axes[0].set_xlabel("PC1")
    axes[0].set_ylabel("PC2")
    handles, names = axes[-1].get_legend_handles_labels()
    fig.legend(handles, names, loc="center right", markerscale=4, fontsize=7, bbox_to_anchor=(1.0, 0.5))
    fig.subplots_adjust(right=0.88, wspace=0.05)
    fig.suptitle(f"{title}: {len(rows)} samples; T = trustworthiness, C = continuity" if title else None)
    return fig


def plot_correlation(corr: pd.DataFrame, stats: pd.DataFrame, title: str = ""):
    """The clustered feature correlation matrix, and each feature's std with dead ones marked."""
    n = int(corr["i"].max()) + 1
    r = np.full((n, n), np.nan)
    r[corr["i"].to_numpy(), corr["j"].to_numpy()] = corr["r"].to_numpy()
    fig, (ax, cax, ax2) = plt.subplots(1, 3, figsize=(12, 5), layout="constrained",
                                       gridspec_kw={"width_ratios": [1, 0.04, 1]})
    im = ax.imshow(r, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(im, cax=cax, label="Pearson r")
    fig.get_layout_engine().set(wspace=0.08)
    ax.set_title("feature correlation (clustered order; blank = constant)")
    ax.set_xlabel("feature (clustered order)")
    ax.set_ylabel("feature (clustered order)")
    s = stats.sort_values("order")
    colors = np.where(s["dead"], "tab:red", np.where(s["near_constant"], "tab:orange", "tab:gray"))
    ax2.bar(np.arange(len(s)), s["std"], color=colors, width=1.0)
    # dead features have zero height: mark them below the axis so they are seen
    flagged = s["near_constant"].to_numpy()
    ax2.scatter(np.flatnonzero(flagged), np.zeros(flagged.sum()), marker="|", s=60, clip_on=False,
                color=colors[flagged], zorder=3)
    ax2.set_xlabel("feature (clustered order)")
    ax2.set_ylabel("standard deviation")
    dead, near = s["dead"].mean(), s["near_constant"].mean()
    ax2.set_title(f"dead {dead:.1%} (red), near-constant {near:.1%} (red + orange) of {len(s)}", fontsize=9)
    fig.suptitle(title or None)
    return fig


def plot_ridge(scores: pd.DataFrame, coefs: pd.DataFrame, preds: pd.DataFrame, *, top: int, title: str = ""):
    """Per map axis: the top ridge coefficients as bars, and predicted vs actual coordinates."""
    keys = list(scores[["method", "axis"]].itertuples(index=False, name=None))
    fig, axes = plt.subplots(2, len(keys), figsize=(3.2 * len(keys), 6.4), squeeze=False)
    for col, (method, axis) in enumerate(keys):
        s = scores[(scores["method"] == method) & (scores["axis"] == axis)].iloc[0]
        c = coefs[(coefs["method"] == method) & (coefs["axis"] == axis)].sort_values("rank").head(top)
        ax = axes[0, col]
        _signed_bars(ax, c["feature"], c["coefficient"])
        ax.set_title(f"{METHOD_TITLES[method]} {axis}: CV R² = {s['r2']:.3f}")
        ax.set_xlabel("coefficient (per feature SD)")
        p = preds[(preds["method"] == method) & (preds["axis"] == axis)]
        ax = axes[1, col]
        ax.scatter(p["actual"], p["predicted"], s=2, color="tab:gray", linewidths=0, rasterized=len(p) > 5000)
        lo = float(min(p["actual"].min(), p["predicted"].min()))
        hi = float(max(p["actual"].max(), p["predicted"].max()))
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.7)
        ax.set_xlabel(f"actual {METHOD_TITLES[method]} {axis}")
        ax.set_ylabel("predicted (out of fold)")
        ax.set_title(f"alpha = {s['alpha']:g}", fontsize=8)
    fig.suptitle(f"{title}: ridge regression of each map axis from the features" if title else None)
    fig.tight_layout()
    return fig


def plot_pca(maps: pd.DataFrame, loadings: pd.DataFrame, scree: pd.DataFrame, class_names: Sequence[str],
             *, n_arrows: int, title: str = ""):
    """Biplot (PC1/PC2 scatter with the largest-loading features as arrows) and scree."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.2, 1]})
    rows = maps[maps["method"] == "pca"]
    xy = rows[["x", "y"]].to_numpy()
    scatter_by_class(ax, xy, rows["label"].to_numpy(), list(class_names), legend=True)
    ax.legend(markerscale=1.5, fontsize=6, loc="lower right", ncols=2)
    pc = loadings.pivot(index="feature", columns="component", values="loading")[[1, 2]]
    size = np.hypot(pc[1], pc[2])
    top = size.sort_values(ascending=False, kind="stable").head(n_arrows).index
    scale = 0.9 * np.abs(xy).max(axis=0).min() / max(float(size.max()), 1e-12)
    for feature in top:
        dx, dy = pc.loc[feature, 1] * scale, pc.loc[feature, 2] * scale
        ax.annotate("", xy=(dx, dy), xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": "k", "lw": 1.0})
        ax.text(dx * 1.08, dy * 1.08, feature, fontsize=7, ha="center", va="center",
                bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 0.5})
    ev = scree.sort_values("component")
    ax.set_xlabel(f"PC1 ({ev['explained_variance_ratio'].iloc[0]:.1%})")
    ax.set_ylabel(f"PC2 ({ev['explained_variance_ratio'].iloc[1]:.1%})" if len(ev) > 1 else "PC2")
    ax.set_title(f"biplot: the {len(top)} features with the largest PC1/PC2 loadings")
    n = min(len(ev), 30)
    ax2.bar(ev["component"][:n], ev["explained_variance_ratio"][:n], color="tab:blue", label="per component")
    ax2.plot(ev["component"][:n], ev["cumulative"][:n], color="k", marker=".", ms=3, label="cumulative")
    for m in (3, 10):
        if m <= len(ev):
            v = variance_at(ev, m)
            ax2.axvline(m, color="tab:gray", ls=":", lw=0.8)
            ax2.annotate(f"{m}: {v:.0%}", (m, v), xytext=(4, -12), textcoords="offset points", fontsize=8)
    ax2.set_ylim(0, 1.02)
    ax2.set_xlabel("component")
    ax2.set_ylabel("explained variance ratio")
    ax2.set_title("scree and cumulative variance")
    ax2.legend(loc="center right")
    fig.suptitle(title or None)
    fig.tight_layout()
    return fig


def plot_umap_features(maps: pd.DataFrame, profiles: pd.DataFrame, clusters: pd.DataFrame,
                       class_names: Sequence[str], *, top: int, title: str = ""):
    """UMAP map with each cluster's top features written at its centre, and the z-profile heatmap.

    clusters : table with sample_id and cluster (the assignment used for `profiles`).
    """
    rows = maps[maps["method"] == "umap"].merge(clusters[["sample_id", "cluster"]], on="sample_id")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1, 1.3]})
    scatter_by_class(ax, rows[["x", "y"]].to_numpy(), rows["label"].to_numpy(), list(class_names), legend=False)
    names = profiles.drop_duplicates("cluster").sort_values("cluster")
    for c, name in zip(names["cluster"], names["cluster_name"]):
        members = rows[rows["cluster"] == c]
        if members.empty:
            continue
        cx, cy = members["x"].median(), members["y"].median()
        best = profiles[(profiles["cluster"] == c)].sort_values("rank").head(top)
        text = f"{name}\n" + "\n".join(f"{f} {z:+.1f}" for f, z in zip(best["feature"], best["z"]))
        ax.text(cx, cy, text, fontsize=6, ha="center", va="center",
                bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1})
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"UMAP: clusters and their top {top} features (z)")
    spread = profiles.drop_duplicates("feature").sort_values("spread", ascending=False, kind="stable")
    feats = spread["feature"].head(40).tolist()
    z = profiles.pivot(index="cluster", columns="feature", values="z").loc[names["cluster"], feats]
    lim = max(float(np.nanmax(np.abs(z.to_numpy()))), 1e-6)
    im = ax2.imshow(z.to_numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax2.set_yticks(np.arange(len(names)), names["cluster_name"], fontsize=7)
    ax2.set_xticks(np.arange(len(feats)), feats, rotation=90, fontsize=6)
    ax2.set_title(f"per-cluster mean feature (z), the {len(feats)} features varying most across clusters")
    fig.colorbar(im, ax=ax2, fraction=0.03, pad=0.01, label="z")
    fig.suptitle(title or None)
    fig.tight_layout()
    return fig


def plot_samples(samples: Mapping[str, np.ndarray], placement: pd.DataFrame, maps: pd.DataFrame,
                 contributions: pd.DataFrame, class_names: Sequence[str], *, top: int, max_maps: int,
                 title: str = ""):
    """One row per explained sample: input, first-layer activations, features, placements, PCA parts.

    samples : the arrays of samples.npz (rule explain_samples): sample_id (n,), label (n,), image
    (n, C, H, W), first_layer (n, channels, H', W') or (n, units), first_layer_kind, features (n, d).
    placement : coords_table of the n samples; maps : coords_table of the map samples (drawn in
    faint class colours behind them); contributions : `pca_contributions` rows with a sample_id.
    """
    ids = [int(s) for s in samples["sample_id"]]
    n = len(ids)
    fig = plt.figure(figsize=(22, 3.6 * n))
    outer = fig.add_gridspec(n, 8, width_ratios=[0.8, 1.6, 1.6, 0.9, 1.2, 1.2, 1.2, 1.6], wspace=0.35, hspace=0.45)
    colors = ["black", "tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange"]
    kind = str(samples["first_layer_kind"])
    class_rgba = class_colors(len(class_names))
    class_rgba[:, 3] = 0.25  # faint class colours behind the placed samples
    for r, sid in enumerate(ids):
        color = colors[r % len(colors)]
        label = class_names[int(samples["label"][r])]
        img = samples["image"][r]
        ax = fig.add_subplot(outer[r, 0])
        ax.imshow(display_image(img), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"sample {sid}\nclass {label}", color=color)
        ax.axis("off")
        act = samples["first_layer"][r]
        if kind == "conv":
            maps_n = min(act.shape[0], max_maps)
            gr, gc = grid_shape(maps_n) if maps_n > 3 else (1, maps_n)
            inner = GridSpecFromSubplotSpec(gr, gc, subplot_spec=outer[r, 1], wspace=0.05, hspace=0.05)
            vmax = float(act[:maps_n].max()) or 1.0
            for k in range(maps_n):
                a = fig.add_subplot(inner[k // gc, k % gc])
                a.imshow(act[k], cmap="magma", vmin=0, vmax=vmax)
                a.axis("off")
                if k == gc // 2:
                    a.set_title(f"first conv layer: {maps_n} of {act.shape[0]} maps", fontsize=8)
        else:
            ax = fig.add_subplot(outer[r, 1])
            ax.imshow(act.reshape(grid_shape(act.size)), **_value_cmap(act))
            ax.set_title(f"first layer: {act.size} units", fontsize=8)
            ax.axis("off")
        feats = samples["features"][r]
        ax = fig.add_subplot(outer[r, 2])
        ax.bar(np.arange(len(feats)), feats, color=color, width=1.0 if len(feats) > 40 else 0.8)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"feature vector ({len(feats)}-D)", fontsize=8)
        ax.set_xlabel("feature")
        ax = fig.add_subplot(outer[r, 3])
        ax.imshow(feats.reshape(grid_shape(len(feats))), **_value_cmap(feats))
        ax.set_title("as an image", fontsize=8)
        ax.axis("off")
        for c, method in enumerate(METHODS):
            ax = fig.add_subplot(outer[r, 4 + c])
            bg = maps[maps["method"] == method]
            ax.scatter(bg["x"], bg["y"], s=2, c=class_rgba[bg["label"].to_numpy()], linewidths=0,
                       rasterized=len(bg) > 5000)
            for r2, sid2 in enumerate(ids):
                p = placement[(placement["method"] == method) & (placement["sample_id"] == sid2)].iloc[0]
                ax.scatter([p["x"]], [p["y"]], s=90 if r2 == r else 30, marker="*",
                           color=colors[r2 % len(colors)], edgecolors="k", linewidths=0.5, zorder=3,
                           alpha=1.0 if r2 == r else 0.5)
            ax.set_title(f"{METHOD_TITLES[method]} (transform)" if method != "pca" else "PCA", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        inner = GridSpecFromSubplotSpec(2, 1, subplot_spec=outer[r, 7], hspace=0.6)
        for c in (1, 2):
            part = contributions[(contributions["sample_id"] == sid) & (contributions["component"] == c)]
            best = part.sort_values("rank").head(top)
            ax = fig.add_subplot(inner[c - 1])
            _signed_bars(ax, best["feature"], best["contribution"])
            ax.set_title(f"PC{c} = {part['contribution'].sum():+.2f}: top {len(best)} of {len(part)} terms",
                         fontsize=8)
    fig.suptitle(f"{title}: {n} samples end to end" if title else None)
    return fig
