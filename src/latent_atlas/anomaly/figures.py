"""The anomaly stage's figures, drawn from its tables only.

The tables (results/{dataset}/{model}/anomaly/):

- scores.parquet, one row per sample: `sample_id`, `split` (train|test), `label` (int), `label_name`,
  `is_anomaly` (bool), `score` (the model's reconstruction error, float64), `neg_elbo` (VAEs only,
  nats), and one float64 column per baseline `<method>_<input>` (method iforest|ecod|knn, input
  raw|latent), e.g. `ecod_latent`.
- summary.parquet, one row per scored method, on the test split (empty without labelled anomalies):
  `method` (score|neg_elbo|iforest|ecod|knn), `input` (raw|latent; the model's own scores: raw, the
  input it reads), `roc_auc`, `average_precision`, `fpr_target` (anomaly.fpr), `threshold` (from the
  train split's normal samples, `scores.threshold_at_fpr`), `tp`, `fp`, `tn`, `fn` (int), `fpr`,
  `tpr`, `precision` (at the threshold). `score_column(method, input)` names its scores column.
- curves.parquet: `method`, `input` (as in summary), `curve` (roc|pr), `x`, `y` (roc: false- and
  true-positive rate; pr: recall and precision), at most `scores.CURVE_POINTS` points per curve.
- top.parquet, the top-k test samples by `score`: `rank` (1 = highest), `sample_id`, `label_name`,
  `is_anomaly`, `score`; top_cells.npz: `error` (the per-cell terms of the score), `input` and
  `reconstruction`, each (k, C, H, W) float32, rows in rank order.

Figures (each returns a matplotlib Figure; the job sets the shared style first and saves it):
`plot_curves` (ROC and PR of every method), `plot_distribution` (the score per class on the test
split, with the threshold), `plot_top` (the top-k samples: images, series windows or table rows)
and `plot_summary` (ROC AUC per method).
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from latent_atlas.plotting import display_image


MODEL_METHODS = ("score", "neg_elbo")
METHOD_LABELS = {"score": "reconstruction error", "neg_elbo": "negative ELBO", "iforest": "Isolation Forest",
                 "ecod": "ECOD", "knn": "kNN distance"}
METHOD_COLORS = {"score": "tab:purple", "neg_elbo": "tab:red", "iforest": "tab:blue", "ecod": "tab:green",
                 "knn": "tab:orange"}
INPUT_STYLES = {"raw": "--", "latent": ":"}
# Features named per sample in the top-k figure of a table (those with the largest error).
MAX_FEATURES = 15


def score_column(method: str, input: str) -> str:
    """The scores-table column of a summary / curves row."""
    return method if method in MODEL_METHODS else f"{method}_{input}"


def method_label(method: str, input: str) -> str:
    """A method's name in legends: the model's scores alone, a baseline with what it read."""
    name = METHOD_LABELS.get(method, method)
    return name if method in MODEL_METHODS else f"{name} ({input})"


def score_label(error: str) -> str:
    """The axis label of the model's score for anomaly.error `error`."""
    if error == "standardised":
        return "reconstruction error: mean of (residual / train residual RMS)²"
    return "reconstruction error: mean squared error per cell (data units²)"


def _axis_label(column: str, error: str) -> str:
    """The axis label of a scores-table column."""
    if column == "score":
        return score_label(error)
    if column == "neg_elbo":
        return "negative ELBO (nats per sample)"
    method, _, input = column.rpartition("_")
    return f"{method_label(method, input)} score"


def _no_labels(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}:\nthe dataset has no labelled anomalies\n(anomaly.normal_classes)",
            ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def plot_curves(summary: pd.DataFrame, curves: pd.DataFrame, title: str = "") -> plt.Figure:
    """ROC (left) and precision-recall (right) curves of every method on the test split, ROC AUC
    and average precision in the legends; chance: the diagonal, and the share of anomalies."""
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4.4))
    if summary.empty:
        _no_labels(roc, "ROC curves")
        _no_labels(pr, "precision-recall curves")
    else:
        for row in summary.itertuples():
            mine = curves[(curves["method"] == row.method) & (curves["input"] == row.input)]
            style = {"color": METHOD_COLORS.get(row.method), "lw": 1.4,
                     "ls": "-" if row.method in MODEL_METHODS else INPUT_STYLES.get(row.input, "-")}
            name = method_label(row.method, row.input)
            c = mine[mine["curve"] == "roc"]
            roc.plot(c["x"], c["y"], label=f"{name}: AUC {row.roc_auc:.3f}", **style)
            c = mine[mine["curve"] == "pr"]
            pr.plot(c["x"], c["y"], label=f"{name}: AP {row.average_precision:.3f}", drawstyle="steps-post", **style)
        roc.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="-", label="chance")
        first = summary.iloc[0]
        prevalence = (first["tp"] + first["fn"]) / (first["tp"] + first["fp"] + first["tn"] + first["fn"])
        pr.axhline(prevalence, color="0.6", lw=0.8, label=f"chance (anomaly share {prevalence:.2f})")
        for ax, xl, yl, where in ((roc, "false-positive rate (share of normal test samples flagged)",
                                   "true-positive rate (share of anomalies flagged)", "lower right"),
                                  (pr, "recall (share of anomalies flagged)",
                                   "precision (share of flagged samples that are anomalies)", "lower left")):
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
            ax.grid(alpha=0.3)
            ax.legend(loc=where, fontsize=7)
        roc.set_aspect("equal")
        roc.set_title("ROC")
        pr.set_title("precision-recall")
    fig.suptitle(title or "anomaly detection on the test split")
    fig.tight_layout()
    return fig


def plot_distribution(scores: pd.DataFrame, summary: pd.DataFrame, error: str,
                      column: str = "score", title: str = "") -> plt.Figure:
    """The distribution of `column` of the scores table per class on the test split (a violin per
    class, its samples as points where there are few; normal classes blue, anomalous red), and
    the threshold of that method (summary) as a line; a log axis where the scores span decades.
    Where attributes rather than classes say what is normal, a class holds both: it gets a violin
    of its normal samples and one of its anomalies."""
    test = scores[scores["split"] == "test"]
    classes = test.groupby(["label", "label_name", "is_anomaly"], sort=True).size().reset_index()
    mixed = classes["label"].duplicated().any()
    fig, ax = plt.subplots(figsize=(7, 1.6 + 0.38 * max(len(classes), 2)))
    values = test[column].to_numpy(np.float64)
    log = len(values) and values.min() > 0 and values.max() / values.min() > 50
    if log:
        ax.set_xscale("log")
    for y, row in enumerate(classes.itertuples()):
        v = test.loc[(test["label"] == row.label) & (test["is_anomaly"] == row.is_anomaly), column].to_numpy(np.float64)
        color = "tab:red" if row.is_anomaly else "tab:blue"
        drawn = np.log10(v) if log else v
        if len(v) >= 10 and np.ptp(drawn) > 0:
            parts = ax.violinplot(drawn, positions=[y], orientation="horizontal", widths=0.8, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor(color)
                body.set_alpha(0.5)
                # violins are drawn in log10 units on a linear axis, moved back onto the log axis
                if log:
                    verts = body.get_paths()[0].vertices
                    verts[:, 0] = 10 ** verts[:, 0]
        else:
            ax.scatter(v, np.full(len(v), y), s=8, color=color)
        ax.plot(np.median(v), y, marker="|", color="k", ms=10)
    if log:  # the violins span their class's range; moved vertices do not update the data limits
        ax.set_xlim(values.min() / 1.2, values.max() * 1.2)
    names = classes["label_name"].astype(str)
    if mixed:
        names = names + np.where(classes["is_anomaly"], " (anomaly)", " (normal)")
    ax.set_yticks(range(len(classes)), names)
    ax.invert_yaxis()
    ax.set_ylabel("class")
    ax.set_xlabel(_axis_label(column, error))
    handles = [plt.Rectangle((0, 0), 1, 1, color=color, alpha=0.5, label=name)
               for color, name, shown in (("tab:blue", "normal" if mixed else "normal class", ~classes["is_anomaly"]),
                                          ("tab:red", "anomaly" if mixed else "anomalous class", classes["is_anomaly"]))
               if shown.any()]
    handles.append(plt.Line2D([], [], marker="|", color="k", ls="", ms=10, label="median"))
    row = summary[[score_column(m, i) == column for m, i in zip(summary["method"], summary["input"])]]
    if len(row):
        t = float(row["threshold"].iat[0])
        handles.append(ax.axvline(t, color="k", ls="--", lw=1,
                                  label=f"threshold ({row['fpr_target'].iat[0]:.0%} of {_reference(row)} above)"))
    # the legend in a strip of its own under the axis label, whatever the figure's height
    strip = 0.32 / fig.get_figheight()
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or "anomaly score per class (test split)")
    fig.tight_layout(rect=(0, strip, 1, 1))
    return fig


def _reference(row: pd.DataFrame) -> str:
    """What a summary row's threshold was set on (its `threshold_on`, where the table has it)."""
    on = row["threshold_on"].iat[0] if "threshold_on" in row else "train"
    return {"validation": "held-out train normals", "train": "train normals"}.get(on, f"{on} normals")


def _cell_label(error: str, kind: str) -> str:
    if error == "standardised":
        return "(residual / train residual RMS)²"
    return "squared error (pixel value²)" if kind == "image" else "squared error (train std units²)"


def _label_lowest(axes: np.ndarray, k: int, label: str) -> None:
    """The x label and tick labels on the lowest used panel of each column of a grid of k panels
    (shared x: the others hide theirs)."""
    ncols = axes.shape[1]
    for j in range(max(k - ncols, 0), k):
        axes.flat[j].set_xlabel(label)
        axes.flat[j].tick_params(labelbottom=True)


def _sample_title(row) -> str:
    """Rank, class and score; a series window also its start in its recording (`start_s`)."""
    where = f", {row.recording} at {row.start_s:.2f} s" if hasattr(row, "start_s") else ""  # a window
    return f"#{row.rank} {row.label_name}{where}\nscore {row.score:.3g}"


def plot_top(top: pd.DataFrame, error: np.ndarray, inputs: np.ndarray, reconstructions: np.ndarray,
             kind: str, error_kind: str, names: Sequence[str] | None = None,
             sample_rate: float | None = None, title: str = "") -> plt.Figure:
    """The top-k samples of `top` (rank order) with their per-cell errors `error` (k, C, H, W).

    kind "image": columns of input | reconstruction | error map (`inputs`, `reconstructions`:
    (k, C, H, W) in [0, 1]). kind "series" (samples (1, C, L)): each sample's error as a channel x
    time heatmap, time in seconds (`sample_rate` in Hz), channel `names` (C) on the y axis. kind
    "table" (samples (1, 1, F)): each sample's per-feature error as bars, the MAX_FEATURES largest,
    feature `names` (F) on the axis. `error_kind` is anomaly.error (labels the units).
    """
    k = len(top)
    error = np.asarray(error, np.float32)
    if error.shape[0] != k:
        raise ValueError(f"top-k table has {k} rows, the error array {error.shape[0]}")
    vmax = float(np.percentile(error, 99.5)) if error.size else 1.0
    cell = _cell_label(error_kind, kind)
    if kind == "image":
        fig, axes = plt.subplots(3, max(k, 1), figsize=(1.3 * max(k, 1) + 1.5, 4.6), squeeze=False)
        for j, row in enumerate(top.itertuples()):
            axes[0, j].imshow(display_image(inputs[j], clip=True), vmin=0, vmax=1)
            axes[1, j].imshow(display_image(reconstructions[j], clip=True), vmin=0, vmax=1)
            im = axes[2, j].imshow(error[j].mean(axis=0), cmap="magma", vmin=0, vmax=vmax)
            axes[0, j].set_title(_sample_title(row), fontsize=7)
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
        for i, name in enumerate(("input", "reconstruction", "error")):
            axes[i, 0].set_ylabel(name)
        if k:
            label = cell + (", mean over channels" if error.shape[1] > 1 else "")
            fig.colorbar(im, ax=axes.ravel().tolist(), label=label, fraction=0.02, pad=0.01)
    elif kind == "series":
        if sample_rate is None or names is None or len(names) != error.shape[2]:
            raise ValueError(f"series: plot_top needs the sample rate and the {error.shape[2]} channel names, "
                             f"got {sample_rate} and {None if names is None else len(names)} names")
        ncols = min(3, max(k, 1))
        nrows = -(-max(k, 1) // ncols)
        length = error.shape[3] / float(sample_rate)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 0.8 + max(1.5, 0.9 + 0.16 * len(names)) * nrows),
                                 squeeze=False, sharex=True)
        for j, row in enumerate(top.itertuples()):
            ax = axes.flat[j]
            im = ax.imshow(error[j, 0], aspect="auto", cmap="magma", vmin=0, vmax=vmax,
                           extent=(0, length, len(names) - 0.5, -0.5), interpolation="nearest")
            # channel names on the first column only: the panels of a row share them
            ax.set_yticks(range(len(names)), names if j % ncols == 0 else [], fontsize=6)
            ax.set_title(_sample_title(row).replace("\n", ", "), fontsize=7)
        _label_lowest(axes, k, "time in window (s)")
        for ax in axes[:, 0]:
            ax.set_ylabel("channel")
        for ax in list(axes.flat)[k:]:
            ax.set_axis_off()
        if k:
            fig.colorbar(im, ax=axes.ravel().tolist(), label=cell, fraction=0.03, pad=0.01)
    elif kind == "table":
        if names is None or len(names) != error.shape[3]:
            raise ValueError(f"table: plot_top needs the {error.shape[3]} feature names, "
                             f"got {None if names is None else len(names)}")
        ncols = min(4, max(k, 1))
        nrows = -(-max(k, 1) // ncols)
        shown = min(MAX_FEATURES, len(names))
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 0.7 + (0.5 + 0.17 * shown) * nrows),
                                 squeeze=False, sharex=True)
        for j, row in enumerate(top.itertuples()):
            ax = axes.flat[j]
            e = error[j].reshape(-1)
            order = np.argsort(-e, kind="stable")[:shown]
            ax.barh(range(shown), e[order], color="tab:red")
            ax.set_yticks(range(shown), [str(names[i]) for i in order], fontsize=6)
            ax.invert_yaxis()
            ax.set_title(_sample_title(row).replace("\n", ", "), fontsize=7)
            ax.grid(axis="x", alpha=0.3)
        _label_lowest(axes, k, cell)
        for ax in list(axes.flat)[k:]:
            ax.set_axis_off()
    else:
        raise ValueError(f"plot_top: unknown dataset kind {kind!r}; use image, series or table")
    fig.suptitle(title or f"the {k} highest-scoring test samples")
    if kind == "table":  # the other kinds' colour bars place their panels themselves
        fig.tight_layout()
    return fig


def plot_summary(summary: pd.DataFrame, title: str = "") -> plt.Figure:
    """ROC AUC on the test split per method: the model's scores, then each baseline on the raw
    inputs and on the latents; 0.5 = chance."""
    fig, ax = plt.subplots(figsize=(1.6 + 0.7 * max(len(summary), 1), 3.6))
    if summary.empty:
        _no_labels(ax, "ROC AUC")
    else:
        x = np.arange(len(summary))
        colors = ["tab:purple" if m in MODEL_METHODS else "tab:blue" if i == "raw" else "tab:orange"
                  for m, i in zip(summary["method"], summary["input"])]
        ax.bar(x, summary["roc_auc"], color=colors, width=0.7)
        for xi, v in zip(x, summary["roc_auc"]):
            ax.text(xi, v + 0.01, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
        ax.axhline(0.5, color="0.4", lw=0.8, ls="--")
        names = [METHOD_LABELS.get(m, m) + ("" if m in MODEL_METHODS else f"\n{i}")
                 for m, i in zip(summary["method"], summary["input"])]
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
        ax.set_ylim(0, 1.08)
        ax.set_ylabel("ROC AUC (test split)")
        ax.grid(axis="y", alpha=0.3)
        handles = [plt.Rectangle((0, 0), 1, 1, color=c, label=n) for c, n in
                   (("tab:purple", "the model"), ("tab:blue", "baseline on raw inputs"),
                    ("tab:orange", "baseline on latents"))]
        handles.append(plt.Line2D([], [], color="0.4", lw=0.8, ls="--", label="chance"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    ax.set_title(title or "ROC AUC per method")
    fig.tight_layout()
    return fig
