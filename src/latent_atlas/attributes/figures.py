"""The attributes stage's figures, drawn from its tables only.

Per model: `plot_probes` (balanced accuracy and ROC AUC per attribute), `plot_dimensions` (the
attribute x top-dimensions heatmap of mutual information), `plot_angles` (angles between attribute
directions), `plot_factor_scores` (each factor's part of MIG, DCI completeness and SAP, and DCI's
importance matrix), `plot_traversals` (a panel of traversals.parquet as an image grid). Per
dataset: `plot_scores` (every model's scores side by side).
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from latent_atlas.plotting import display_image

# Attributes drawn in the per-attribute figures (CelebA has 40; the tables hold them all).
MAX_ATTRIBUTES = 40
# Rows of a traversal grid (attributes x start samples, or axes x start samples).
MAX_ROWS = 24
SCORE_LABELS = {"mig": "MIG", "dci_disentanglement": "DCI disentanglement", "dci_completeness": "DCI completeness",
                "dci_informativeness": "DCI informativeness (test R²)", "sap": "SAP"}


def plot_probes(probes: pd.DataFrame, title: str = "") -> plt.Figure:
    """Balanced accuracy and ROC AUC (mean ± std over folds) of the linear probe of each attribute,
    best first; the chance level of balanced accuracy (1 / number of values) as a tick."""
    table = probes.sort_values("roc_auc", ascending=False, kind="stable").head(MAX_ATTRIBUTES)
    n = len(table)
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 1.2 + 0.22 * n), sharey=True, squeeze=False)
    y = np.arange(n)
    for ax, col, name in zip(axes[0], ("balanced_accuracy", "roc_auc"), ("balanced accuracy", "ROC AUC")):
        ax.barh(y, table[col], xerr=table[f"{col}_std"], color="tab:blue", alpha=0.8, error_kw={"lw": 0.8})
        chance = 1.0 / table["n_values"].to_numpy() if col == "balanced_accuracy" else np.full(n, 0.5)
        ax.scatter(chance, y, marker="|", color="k", s=60, label="chance", zorder=3)
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"{name} (cross-validated)")
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].set_yticks(y, table["attribute"], fontsize=7)
    axes[0, 0].invert_yaxis()
    axes[0, 0].legend(loc="lower right", fontsize=7)
    fig.suptitle(title or "linear probes of the attributes")
    fig.tight_layout()
    return fig


def plot_dimensions(dimensions: pd.DataFrame, top: int, title: str = "") -> plt.Figure:
    """Mutual information (nats) between each attribute and the latent dimensions that rank in
    some attribute's top `top` (columns ordered by their best attribute); the top cells of each
    attribute outlined."""
    attributes = list(dict.fromkeys(dimensions["attribute"]))[:MAX_ATTRIBUTES]
    table = dimensions[dimensions["attribute"].isin(attributes)]
    mi = table.pivot(index="attribute", columns="dim", values="mutual_information").loc[attributes]
    rank = table.pivot(index="attribute", columns="dim", values="rank").loc[attributes]
    chosen = sorted({int(d) for d in table.loc[table["rank"] <= top, "dim"]},
                    key=lambda d: (int(np.argmax(mi[d].to_numpy())), -float(mi[d].max()), d))[:60]
    m = mi[chosen].to_numpy()
    fig, ax = plt.subplots(figsize=(2.5 + 0.18 * len(chosen), 1.5 + 0.22 * len(attributes)))
    im = ax.imshow(m, aspect="auto", cmap="magma", vmin=0)
    rows, cols = np.nonzero(rank[chosen].to_numpy() <= top)
    ax.scatter(cols, rows, s=6, facecolors="none", edgecolors="cyan", linewidths=0.6,
               label=f"an attribute's top {top}")
    ax.set_xticks(range(len(chosen)), [f"z{d}" for d in chosen], rotation=90, fontsize=6)
    ax.set_yticks(range(len(attributes)), attributes, fontsize=7)
    ax.set_xlabel("latent dimension")
    fig.colorbar(im, ax=ax, label="mutual information (nats)", fraction=0.04)
    ax.legend(loc="upper right", fontsize=6, bbox_to_anchor=(1.0, 1.12 + 0.3 / max(len(attributes), 1)))
    ax.set_title(title or "which dimensions carry which attribute", fontsize=9)
    fig.tight_layout()
    return fig


def plot_angles(angles: pd.DataFrame, title: str = "") -> plt.Figure:
    """Angles (degrees) between the attribute directions (difference of class means): 0 = the
    same direction, 90 = unrelated, 180 = opposite."""
    names = list(dict.fromkeys(angles["attribute_a"]))[:MAX_ATTRIBUTES]
    fig, ax = plt.subplots(figsize=(2.8 + 0.22 * len(names), 2.2 + 0.22 * len(names)))
    if not names:
        ax.text(0.5, 0.5, "no attribute with a direction\n(binary or ordered attributes have one)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    m = angles.pivot(index="attribute_a", columns="attribute_b", values="angle").loc[names, names].to_numpy()
    im = ax.imshow(m, cmap="RdBu", vmin=0, vmax=180)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    if len(names) <= 12:
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=6,
                        color="w" if abs(m[i, j] - 90) > 50 else "k")
    fig.colorbar(im, ax=ax, label="angle (degrees)", fraction=0.04, ticks=[0, 45, 90, 135, 180])
    ax.set_title(title or "angles between attribute directions", fontsize=9)
    fig.tight_layout()
    return fig


def plot_factor_scores(factors: pd.DataFrame, importance: pd.DataFrame, title: str = "") -> plt.Figure:
    """Left: each factor's MIG gap (normalised by its entropy), DCI completeness, DCI test R² and
    SAP gap. Right: DCI's importance matrix (dimension x factor), dimensions that matter most."""
    names = factors["factor"].tolist()
    fig, axes = plt.subplots(1, 2, figsize=(10, 1.8 + 0.3 * len(names)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.4]})
    ax = axes[0, 0]
    parts = [("mig_gap", "MIG gap"), ("dci_completeness", "DCI completeness"),
             ("dci_informativeness", "DCI test R²"), ("sap_gap", "SAP gap")]
    y = np.arange(len(names))
    h = 0.8 / len(parts)
    for i, (col, label) in enumerate(parts):
        ax.barh(y + (i - (len(parts) - 1) / 2) * h, factors[col], height=h, label=label)
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(min(0.0, float(factors["dci_informativeness"].min())), 1)
    ax.legend(fontsize=6, loc="lower right")
    ax.set_xlabel("score")
    ax.grid(axis="x", alpha=0.3)
    R = importance[names].to_numpy()
    keep = np.argsort(-R.sum(axis=1), kind="stable")[:40]
    ax = axes[0, 1]
    im = ax.imshow(R[keep].T, aspect="auto", cmap="viridis", vmin=0)
    ax.set_xticks(range(len(keep)), [f"z{int(importance['dim'].iat[k])}" for k in keep], rotation=90, fontsize=6)
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xlabel("latent dimension (most important first)")
    fig.colorbar(im, ax=ax, label="DCI importance", fraction=0.04)
    fig.suptitle(title or "disentanglement per factor")
    fig.tight_layout()
    return fig


def traversal_images(table: pd.DataFrame, shape: Sequence[int]) -> np.ndarray:
    """The images of traversal rows as (n, C, H, W) float in [0, 1]."""
    raw = np.frombuffer(b"".join(table["image"]), np.uint8)
    return raw.reshape(len(table), *shape).astype(np.float32) / 255


def plot_traversals(table: pd.DataFrame, panels: Sequence[str], shape: Sequence[int], decoded: bool,
                    title: str = "") -> plt.Figure:
    """The traversal grids of `panels`: one row per (name, start sample), one column per step
    (arithmetic: the input, its code, and the code with the attribute's difference added or
    subtracted). Names label the rows; without a decoder the nearest real images are shown."""
    part = table[table["panel"].isin(panels)]
    groups = list(part.groupby(["panel", "name", "start"], sort=False))[:MAX_ROWS]
    if not groups:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.text(0.5, 0.5, "nothing to traverse here\n(no binary or ordered attribute)", ha="center", va="center")
        ax.set_axis_off()
        return fig
    n_cols = max(len(g) for _, g in groups)
    # a panel after the first gets a gap above it for its column titles
    starts_panel = [r == 0 or panel != groups[r - 1][0][0] for r, ((panel, _, _), _) in enumerate(groups)]
    gap = 0.25
    size, label_w, title_h = (0.7 if shape[1] <= 32 else 0.9), 1.0, 0.55
    ratios = [x for r, new in enumerate(starts_panel) for x in ([gap / size, 1] if new and r else [1])]
    width, height = label_w + size * n_cols, title_h + size * sum(ratios) + 0.05
    fig, grid = plt.subplots(len(ratios), n_cols, figsize=(width, height), squeeze=False,
                             gridspec_kw={"height_ratios": ratios})
    fig.subplots_adjust(left=label_w / width, right=0.995, top=1 - title_h / height, bottom=0.05 / height,
                        wspace=0.05, hspace=0.05)
    image_rows = [i for i, x in enumerate(ratios) if x == 1]
    for i in set(range(len(ratios))) - set(image_rows):
        for ax in grid[i]:
            ax.set_axis_off()
    axes = grid[image_rows]
    for r, ((panel, name, start), rows) in enumerate(groups):
        images = traversal_images(rows, shape)
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(rows):
                ax.set_axis_off()
                continue
            image = display_image(images[c])
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            if starts_panel[r]:  # each panel's first row names its columns
                ax.set_title(rows["label"].iat[c], fontsize=7, pad=2)
            own = rows["step"].iat[c] == 0 and not panel.startswith("arithmetic")
            for spine in ax.spines.values():  # the sample's own code framed
                spine.set_visible(own)
                spine.set_color("tab:orange")
                spine.set_linewidth(2)
        label = f"{name}\n#{int(rows['sample_id'].iat[0])}"
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    how = "decoded" if decoded else "nearest real image to each code"
    fig.suptitle(f"{title}\n({how})" if title else how, fontsize=8, y=1 - 0.05 / height, va="top")
    return fig


def plot_scores(scores: pd.DataFrame, title: str = "") -> plt.Figure:
    """Every model's disentanglement scores side by side, one group of bars per score; the factors
    each model was scored against under the axis."""
    models = list(dict.fromkeys(scores["model"]))
    names = [s for s in SCORE_LABELS if s in set(scores["score"])]
    fig, ax = plt.subplots(figsize=(2 + 1.3 * len(names) + 0.2 * len(models) * len(names), 3.6))
    width = 0.8 / len(models)
    x = np.arange(len(names))
    for i, model in enumerate(models):
        values = scores[scores["model"] == model].set_index("score").reindex(names)["value"]
        bars = ax.bar(x + (i - (len(models) - 1) / 2) * width, values, width, label=model)
        for bar, v in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, max(v, 0) + 0.01, f"{v:.2f}", ha="center", va="bottom",
                    fontsize=6)
    ax.set_xticks(x, [SCORE_LABELS[n] for n in names], fontsize=7, rotation=15)
    ax.set_ylim(min(0.0, float(scores["value"].min())), 1.05)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("score")
    ax.legend(fontsize=7, ncols=min(len(models), 4), loc="upper left")
    factors = "; ".join(f"{m}: {f}" for m, f in dict(zip(scores["model"], scores["factors"])).items())
    ax.set_title(title or "disentanglement scores", fontsize=9)
    fig.text(0.01, 0.01, f"factors: {factors}"[:220], fontsize=6)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
