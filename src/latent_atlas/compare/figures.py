"""The compare stage's figures, drawn from its tables only.

`plot_cka_matrix`: linear and RBF CKA between every compared pair of a dataset's models;
`plot_trajectory`: measures over training (each snapshot against the final model and against
the next snapshot); `plot_overlap`: per pair, each sample's kNN overlap on model A's t-SNE map
and the samples whose neighbourhood changes most; `plot_dimensions`: the matched dimensions'
correlations.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from latent_atlas.plotting import display_image, point_size

# Pairs drawn in the per-pair figures (a dataset may have many; the table holds them all).
MAX_PAIRS = 6
# Measures drawn over training, with their axis labels.
TRAJECTORY = {"linear_cka": "linear CKA", "rbf_cka": "RBF CKA", "svcca": "SVCCA", "procrustes":
              "Procrustes disparity", "probe_r2_ab": "probe R² (snapshot → other)"}


def model_order(table: pd.DataFrame) -> list[str]:
    """The models of a compare table, each model's snapshots by epoch before it, models in order
    of first appearance."""
    names = list(dict.fromkeys([*table["a"], *table["b"]]))
    bases = list(dict.fromkeys(name.partition("@")[0] for name in names))

    def key(name: str) -> tuple[int, float]:
        base, _, epoch = name.partition("@")
        return bases.index(base), float(epoch) if epoch else np.inf

    return sorted(names, key=key)


def overlap_column(points: pd.DataFrame) -> str:
    """The per-point overlap drawn: the first k's."""
    return next(c for c in points.columns if c.startswith("knn_overlap_k"))


def plot_cka_matrix(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Linear and RBF CKA of every compared pair (a symmetric matrix; grey: not compared)."""
    order = model_order(table)
    n = len(order)
    fig, axes = plt.subplots(1, 2, figsize=(4 + 0.45 * n * 2, 2.5 + 0.4 * n), squeeze=False)
    for ax, measure, name in zip(axes[0], ("linear_cka", "rbf_cka"), ("linear CKA", "RBF CKA")):
        m = np.full((n, n), np.nan)
        np.fill_diagonal(m, 1.0)
        for a, b, v in zip(table["a"], table["b"], table[measure]):
            m[order.index(a), order.index(b)] = m[order.index(b), order.index(a)] = v
        cmap = plt.get_cmap("viridis").copy()
        cmap.set_bad("0.85")
        im = ax.imshow(np.ma.masked_invalid(m), vmin=0, vmax=1, cmap=cmap)
        ax.set_xticks(range(n), order, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(n), order, fontsize=7)
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    if np.isfinite(m[i, j]):
                        ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6,
                                color="black" if m[i, j] > 0.6 else "white")
        ax.set_title(name)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"{title}: how alike the latent spaces are" if title else "How alike the latent spaces are")
    fig.tight_layout()
    return fig


def plot_trajectory(table: pd.DataFrame) -> plt.Figure:
    """Each measure over training: every snapshot against the trained model (solid) and against
    the next snapshot (dashed), one line per model."""
    snaps = table[table["epoch_a"].notna()]
    fig, axes = plt.subplots(1, len(TRAJECTORY), figsize=(3.2 * len(TRAJECTORY), 3), squeeze=False)
    for ax, (measure, label) in zip(axes[0], TRAJECTORY.items()):
        for model in dict.fromkeys(snaps["model_a"]):
            rows = snaps[snaps["model_a"] == model]
            final = rows[rows["epoch_b"].isna()].sort_values("epoch_a")
            step = rows[rows["epoch_b"].notna()].sort_values("epoch_a")
            line, = ax.plot(final["epoch_a"].astype(float), final[measure], marker="o", ms=3,
                            label=f"{model}: vs trained")
            ax.plot(step["epoch_a"].astype(float), step[measure], marker="o", ms=3, ls="--",
                    color=line.get_color(), label=f"{model}: vs next snapshot")
        ax.set_xlabel("epoch of the snapshot")
        ax.set_title(label, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("The latent space over training")
    fig.tight_layout()
    return fig


def most_changed(points: Sequence[pd.DataFrame], show: int) -> list[np.ndarray]:
    """Per pair, the sample ids of the `show` samples with the least kNN overlap (ties: by
    sample_id)."""
    out = []
    for p in points:
        ranked = p.sort_values([overlap_column(p), "sample_id"], kind="stable")
        out.append(ranked["sample_id"].to_numpy()[:show])
    return out


def plot_overlap(pairs: Sequence[tuple[str, str]], points: Sequence[pd.DataFrame], maps: Sequence[pd.DataFrame],
                 changed: Sequence[np.ndarray], images: Sequence[np.ndarray]) -> plt.Figure:
    """Per pair (at most MAX_PAIRS): every sample on A's t-SNE map (a snapshot's: its model's)
    coloured by how many of its k nearest neighbours in A are also among them in B (Jaccard), the
    samples whose neighbourhood changes most circled and shown beside it.

    points : per pair, sample_id and the overlap columns; maps : per pair, that compare maps table;
    changed : per pair, sample ids; images : per pair, (show, C, H, W) in [0, 1].
    """
    from latent_atlas.explain.maps import method_rows

    shown = min(len(pairs), MAX_PAIRS)
    show = max((len(c) for c in changed[:shown]), default=1)
    fig = plt.figure(figsize=(3.2 + 0.9 * show, 3.0 * shown))
    grid = fig.add_gridspec(shown, 1 + show, width_ratios=[3.5] + [0.9] * show)
    for row in range(shown):
        (a, b), p = pairs[row], points[row]
        column = overlap_column(p)
        tsne = method_rows(maps[row], "tsne").set_index("sample_id")
        xy = tsne.loc[p["sample_id"], ["x", "y"]].to_numpy()
        ax = fig.add_subplot(grid[row, 0])
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=p[column], cmap="viridis", vmin=0, vmax=1,
                        s=point_size(len(xy)), linewidths=0, rasterized=len(xy) > 5000)
        marked = tsne.loc[changed[row], ["x", "y"]].to_numpy()
        ax.scatter(marked[:, 0], marked[:, 1], s=40, facecolors="none", edgecolors="red", linewidths=0.8)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"{a} vs {b}: {column.replace('knn_overlap_', '')} overlap on {a.partition('@')[0]}'s t-SNE "
                     f"(mean {p[column].mean():.2f})", fontsize=8)
        fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.02)
        overlap = p.set_index("sample_id")[column]
        for i, (sid, image) in enumerate(zip(changed[row], images[row])):
            ax_img = fig.add_subplot(grid[row, 1 + i])
            ax_img.imshow(display_image(image, clip=True), cmap="gray", vmin=0, vmax=1)
            ax_img.set_xticks([]), ax_img.set_yticks([])
            ax_img.set_title(f"#{sid}\n{overlap.loc[sid]:.2f}", fontsize=7)
    extra = f" (the first {shown} of {len(pairs)} pairs)" if len(pairs) > shown else ""
    fig.suptitle("Neighbourhoods kept from A to B; right: the samples whose neighbours change most" + extra,
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))  # 0.4 in at the top for the title
    return fig


def plot_dimensions(pairs: Sequence[tuple[str, str]], dimensions: Sequence[pd.DataFrame]) -> plt.Figure:
    """Per pair, the |correlation| of each matched dimension pair (Hungarian assignment), best first.

    Pairs of models are solid lines in distinct colours; pairs with a training snapshot dashed, in
    viridis order (many of them: one model over training); the legend sits beside the axes.
    """
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    snapshot = ["@" in a or "@" in b for a, b in pairs]
    models = plt.get_cmap("tab10")
    later = plt.get_cmap("viridis")
    n_snap = max(1, sum(snapshot))
    i_model = i_snap = 0
    for (a, b), dims, is_snap in zip(pairs, dimensions, snapshot):
        if is_snap:
            style = {"color": later(0.9 * i_snap / max(1, n_snap - 1)), "ls": "--"}
            i_snap += 1
        else:
            style = {"color": models(i_model % 10), "ls": "-"}
            i_model += 1
        ax.plot(np.arange(1, len(dims) + 1), dims["abs_correlation"].to_numpy(), marker="o", ms=2.5, lw=1.2,
                label=f"{a} vs {b}", **style)
    ax.set_xlabel("matched dimension pair (best first)")
    ax.set_ylabel("|correlation|")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title("Do single dimensions correspond? One-to-one matches of A's and B's dimensions")
    fig.tight_layout()
    return fig
