"""Figures of the permutation-importance tables, drawn from the tables alone.

Images are drawn upright: a pixel's value lands at its (row, col) of the image (row 0 at the top).
With the dataset's physical axes (`axes`, a `data.store.ImageAxes`: spectrograms) one heatmap
per figure carries frequency (Hz, low at the bottom) and time (s) ticks; the others share them.
Colour scales: plain importance white -> red, directional importance blue (negative) - white (0) -
red (positive).

Significance mask: where a table has a `significant` column (the Benjamini-Hochberg discoveries of
the importance stage), every heatmap draws the pixels not declared in light grey, so only declared
pixels carry colour, and the figure says so in a note under it. The colour scale stays the one of
all values, declared or not, so that a masked map and its unmasked version share one scale and
read alike. Tables without the column (written before the test existed) are drawn as before.

`plot_variants` sets variants of one model side by side (per pixel, patches, conditional
permutation, ...): each on its own colour scale, since a group's score is the joint effect of its
pixels and the scores of different groupings are not comparable.

Tables and sensor series (axes with names, `plotting.axes_kind`): a series' map is a channel x
time heatmap (channel names down the rows, seconds across, stretched to the panel); a table's
1 x F map is drawn instead as horizontal bars, one per feature (its name on the axis), the
MAX_FEATURES most important at the top, a note saying how many are left out, the features not
declared grey, and the bar's length on the x axis in place of a colour bar.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from latent_atlas.plotting import axes_kind, label_image_axes, use_style

DIVERGING = "RdBu_r"  # blue (negative) - white (0) - red (positive)
SEQUENTIAL = "Reds"   # white (0) -> red

# Shared colour scales end at this quantile of |value|, so that a few extreme pixels (rarely lit
# edge pixels) do not wash out every map; the colour bar marks the clipping.
SCALE_QUANTILE = 0.998

NOT_DECLARED = "0.85"  # light grey of the pixels a significance mask hides

# A table's bars: the features named per panel (the most important), and their colours (those of
# the heatmaps' scales: plain importance red, directional red positive and blue negative).
MAX_FEATURES = 20
PLAIN_BAR, POSITIVE_BAR, NEGATIVE_BAR = plt.get_cmap(SEQUENTIAL)(0.7), *plt.get_cmap(DIVERGING)([0.85, 0.15])


def has_mask(frame: pd.DataFrame) -> bool:
    """Whether the pixel table carries the significance test (a `significant` column)."""
    return "significant" in frame.columns


def grid(frame: pd.DataFrame, value: str, shape: tuple[int, int], dim: int,
         masked: bool = False) -> np.ndarray:
    """(H, W) image of column `value` for one dimension: a pixel's value lands at (row, col).

    With `masked` and a table that has a `significant` column, the pixels not declared (and any
    pixel missing from the table) are NaN, which `_heatmap` draws grey.
    """
    sub = frame[frame["dim"] == dim]
    at = sub["row"].to_numpy(), sub["col"].to_numpy()
    img = np.zeros(shape)
    img[at] = sub[value].to_numpy()
    if masked and has_mask(frame):
        declared = np.zeros(shape, dtype=bool)
        declared[at] = sub["significant"].to_numpy(dtype=bool)
        img[~declared] = np.nan
    return img


def top_dimensions(latent: pd.DataFrame, cls: int | None, k: int) -> list[int]:
    """The k most important dimensions of class `cls`, or with `cls` None of the model (latent
    importance averaged over classes); ties: lower dimension first."""
    if cls is None:
        sub = latent.groupby("dim", as_index=False)["importance"].mean()
    else:
        sub = latent[latent["class"] == cls]
    sub = sub.sort_values(["importance", "dim"], ascending=[False, True], kind="stable")
    return [int(v) for v in sub["dim"].head(k)]


def image_shape_of(pixel: pd.DataFrame) -> tuple[int, int]:
    return int(pixel["row"].max()) + 1, int(pixel["col"].max()) + 1


def _heatmap(ax, img: np.ndarray, cmap: str, vmin: float, vmax: float, title: str | None = None,
             aspect: str | None = None):
    """Draw an (H, W) image upright (row 0 at the top) without axes ticks; NaN pixels grey.
    `aspect` as imshow's ("auto" stretches a series' few channels to the panel; None: square pixels)."""
    cmap = plt.get_cmap(cmap).with_extremes(bad=NOT_DECLARED)
    im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, origin="upper", interpolation="nearest",
                   aspect=aspect)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():  # a thin frame shows the image's extent on white
        spine.set_visible(True)
        spine.set_linewidth(0.5)
        spine.set_color("0.6")
    if title:
        ax.set_title(title, fontsize=8)
    return im


def _aspect(axes) -> str | None:
    """imshow's aspect for a map of the dataset with `axes`: a series' C x L map fills its panel."""
    return "auto" if axes_kind(axes) == "series" else None


def feature_names(pixel: pd.DataFrame, axes) -> list[str]:
    """The feature names of a table's dataset (`axes.col_names`), checked against the pixel
    table's columns."""
    names, shape = axes.col_names, image_shape_of(pixel)
    if shape != (1, len(names)):
        raise ValueError(f"the dataset's axes name {len(names)} features, the pixel importance table has "
                         f"{shape[0]} x {shape[1]} pixels (a table's: 1 x F)")
    return names


def _bars_height(names: list[str]) -> float:
    """Inches of one panel of feature bars: its bars (0.1 each), title and axis."""
    return 0.6 + 0.1 * min(MAX_FEATURES, len(names))


def _feature_bars(ax, pixel: pd.DataFrame, value: str, dim: int, names: list[str], limit: float,
                  title: str | None = None, xlabel: str | None = None) -> None:
    """A table's map of one dimension as horizontal bars of column `value` (importance: red, with
    one-std error bars; directional: red positive, blue negative), one per feature, the
    MAX_FEATURES most important at the top (ties: lower feature first); features not declared
    (or missing) grey. x runs from 0 (importance) or -`limit` to `limit`; the y label says how
    many features are left out."""
    shape = (1, len(names))
    importance = grid(pixel, "importance", shape, dim)[0]
    values = grid(pixel, value, shape, dim)[0]
    declared = ~np.isnan(grid(pixel, value, shape, dim, masked=True)[0])
    order = np.argsort(-importance, kind="stable")[:MAX_FEATURES]
    colors = [NOT_DECLARED if not declared[i] else PLAIN_BAR if value == "importance"
              else NEGATIVE_BAR if values[i] < 0 else POSITIVE_BAR for i in order]
    pos = np.arange(len(order))
    xerr = grid(pixel, "std", shape, dim)[0][order] if value == "importance" else None
    ax.barh(pos, values[order], xerr=xerr, color=colors, height=0.8, error_kw={"elinewidth": 0.5, "capsize": 0})
    ax.set_yticks(pos, [names[i] for i in order], fontsize=5)
    ax.set_ylim(len(order) - 0.5, -0.5)  # the most important at the top
    ax.set_xlim(0 if value == "importance" else -limit, limit)
    ax.axvline(0, color="0.5", lw=0.5)
    ax.tick_params(axis="x", labelsize=5, length=2, pad=1)
    ax.tick_params(axis="y", length=0, pad=1)
    left_out = len(names) - len(order)
    ax.set_ylabel(f"top {len(order)} of {len(names)} features ({left_out} not shown)" if left_out
                  else "feature", fontsize=5, labelpad=1)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=6)
    if title:
        ax.set_title(title, fontsize=8)


def _bar_limit(values) -> float:
    """The x limit of bars of `values`: the largest |value| (bars show their extremes), plus 5%."""
    return 1.05 * _symmetric_limit(np.asarray(values))


def _symmetric_limit(values: np.ndarray, quantile: float = 1.0) -> float:
    values = np.abs(np.asarray(values, dtype=np.float64))
    m = float(np.quantile(values, quantile)) if len(values) else 0.0
    if m <= 0 and len(values):
        m = float(values.max())
    return m if m > 0 else 1.0


def _note_mask(fig, fdr: float | None) -> None:
    """The note under a masked figure: grey pixels were not declared (at FDR `fdr` when given)."""
    note = "grey: not declared" if fdr is None else f"grey: not declared at FDR {fdr:g}"
    fig.supxlabel(note, fontsize=7, color="0.3")


def plot_directional(pixel: pd.DataFrame, title: str | None = None, axes=None,
                     fdr: float | None = None):
    """Directional importance of every pixel for every encoded dimension, one shared scale.

    `fdr`: the false discovery rate of the significance test, for the note of a masked table.
    A table's dimensions are panels of feature bars on one x scale (4 to a row).
    """
    use_style()
    shape = image_shape_of(pixel)
    dims = sorted(pixel["dim"].unique())
    label = "directional importance (sign of slope x MSE)"
    if axes_kind(axes) == "table":
        names = feature_names(pixel, axes)
        ncol = min(4, len(dims))
        nrow = -(-len(dims) // ncol)
        fig, panels = plt.subplots(nrow, ncol, figsize=(2.3 * ncol, _bars_height(names) * nrow + 0.5),
                                   squeeze=False, constrained_layout=True)
        limit = _bar_limit(pixel["directional"])
        for ax, dim in zip(panels.ravel(), dims):
            _feature_bars(ax, pixel, "directional", dim, names, limit, f"z{dim}")
        for ax in panels.ravel()[len(dims):]:
            ax.axis("off")
        panels[-1, 0].set_xlabel(label, fontsize=6)
    else:
        ncol = min(8, len(dims))
        nrow = -(-len(dims) // ncol)
        m = _symmetric_limit(pixel["directional"].to_numpy(), SCALE_QUANTILE)
        fig, panels = plt.subplots(nrow, ncol, figsize=(1.25 * ncol + 0.8, 1.35 * nrow + 0.5),
                                   squeeze=False, constrained_layout=True)
        im = None
        for ax, dim in zip(panels.ravel(), dims):
            im = _heatmap(ax, grid(pixel, "directional", shape, dim, masked=True), DIVERGING, -m, m,
                          f"z{dim}", _aspect(axes))
        for ax in panels.ravel()[len(dims):]:
            ax.axis("off")
        if axes is not None:
            label_image_axes(panels[-1, 0], axes, n_ticks=3, fontsize=5)
        fig.colorbar(im, ax=panels, shrink=0.6, extend="both", label=label)
    if title:
        fig.suptitle(title)
    if has_mask(pixel):
        _note_mask(fig, fdr)
    return fig


def most_important_dimension(latent: pd.DataFrame) -> int:
    """The dimension with the largest latent importance averaged over classes (ties: lowest)."""
    return top_dimensions(latent, None, 1)[0]


def plot_dimension(pixel: pd.DataFrame, dim: int, title: str | None = None, axes=None,
                   fdr: float | None = None):
    """Plain (white->red) beside directional (blue-white-red) importance of one dimension (a
    table's: bars of its features, both panels in the order of plain importance)."""
    use_style()
    shape = image_shape_of(pixel)
    if axes_kind(axes) == "table":
        names = feature_names(pixel, axes)
        fig, (a, b) = plt.subplots(1, 2, figsize=(7, _bars_height(names) + 0.6), constrained_layout=True)
        sub = pixel[pixel["dim"] == dim]
        limit = _bar_limit(np.r_[sub["importance"] + sub["std"], sub["directional"]])
        _feature_bars(a, pixel, "importance", dim, names, limit, f"z{dim}: importance", "importance (MSE)")
        _feature_bars(b, pixel, "directional", dim, names, limit, f"z{dim}: directional",
                      "directional importance (sign of slope x MSE)")
    else:
        plain = grid(pixel, "importance", shape, dim, masked=True)
        directional = grid(pixel, "directional", shape, dim, masked=True)
        fig, (a, b) = plt.subplots(1, 2, figsize=(7, 3.4), constrained_layout=True)
        m = _symmetric_limit(pixel.loc[pixel["dim"] == dim, "importance"].to_numpy())
        fig.colorbar(_heatmap(a, plain, SEQUENTIAL, 0, m, f"z{dim}: importance", _aspect(axes)), ax=a,
                     shrink=0.85)
        fig.colorbar(_heatmap(b, directional, DIVERGING, -m, m, f"z{dim}: directional", _aspect(axes)), ax=b,
                     shrink=0.85)
        if axes is not None:
            label_image_axes(a, axes)
            label_image_axes(b, axes, y=False)
    if title:
        fig.suptitle(title)
    if has_mask(pixel):
        _note_mask(fig, fdr)
    return fig


# Bars a class's chart draws, each with its name; past this many, the most important ones.
MAX_BARS = 40


def _bar(ax, sub: pd.DataFrame, top: list[int], horizontal: bool = False):
    """Latent importance of one class, sorted, with one-std error bars; top dimensions in red.

    Every bar carries its dimension's name (a reader takes the named bars for the ranking); with
    more than MAX_BARS dimensions the MAX_BARS most important are drawn and the axis says how
    many are left out.
    """
    sub = sub.sort_values(["importance", "dim"], ascending=[False, True], kind="stable")
    left_out = max(0, len(sub) - MAX_BARS)
    sub = sub.iloc[:MAX_BARS]
    colors = ["#c0392b" if d in top else "#7f8c8d" for d in sub["dim"]]
    pos = np.arange(len(sub))
    ax.bar(pos, sub["importance"], yerr=sub["std"], color=colors, width=0.8,
           error_kw={"elinewidth": 0.6, "capsize": 0})
    ax.set_xticks(pos)
    ax.set_xticklabels([f"z{d}" for d in sub["dim"]], rotation=90, fontsize=6 if len(sub) <= 24 else 5)
    if left_out:
        ax.set_xlabel(f"top {len(sub)} of {len(sub) + left_out} dimensions ({left_out} not shown)", fontsize=6)
    ax.set_ylabel("importance (MSE)", fontsize=7)
    ax.tick_params(axis="y", labelsize=6)


def plot_absent_class(latent: pd.DataFrame, cls: int, title: str = ""):
    """The figure of a class of `importance.classes` that the latent importance table lacks (the
    dataset has fewer classes, or none of its evaluation samples is of that class): says so and
    names the classes it has, so the figure set stays the same for every dataset."""
    use_style()
    present = latent.drop_duplicates("class").sort_values("class")
    names = ", ".join(f"{int(c)} ({n})" for c, n in zip(present["class"], present["class_name"]))
    fig, ax = plt.subplots(figsize=(6, 2.2))
    ax.text(0.5, 0.5, f"class {cls}: no evaluation samples of this class\n(importance.classes; the table has "
            f"class{'es' if len(present) != 1 else ''} {names})", ha="center", va="center", wrap=True,
            transform=ax.transAxes, fontsize=8)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def plot_class(pixel: pd.DataFrame, latent: pd.DataFrame, cls: int, top_k: int, axes=None,
               fdr: float | None = None):
    """One class: sorted bar chart of latent importance beside the heatmaps of its top-k dims
    (a table's: their feature bars)."""
    use_style()
    sub = latent[latent["class"] == cls]
    if sub.empty:
        raise ValueError(f"class {cls} not in the latent importance table "
                         f"(classes: {sorted(latent['class'].unique())})")
    name = str(sub["class_name"].iloc[0])
    top = top_dimensions(latent, cls, top_k)
    shape = image_shape_of(pixel)
    if axes_kind(axes) == "table":
        names = feature_names(pixel, axes)
        limit = _bar_limit(pixel.loc[pixel["dim"].isin(top), "directional"])
        fig = plt.figure(figsize=(4 + 2.3 * len(top), max(3.2, _bars_height(names) + 0.6)), constrained_layout=True)
        gs = fig.add_gridspec(1, len(top) + 1, width_ratios=[2.4] + [1.4] * len(top))
        _bar(fig.add_subplot(gs[0]), sub, top)
        for i, dim in enumerate(top):
            _feature_bars(fig.add_subplot(gs[i + 1]), pixel, "directional", dim, names, limit,
                          f"z{dim} (rank {i + 1})", "directional importance")
    else:
        m = _symmetric_limit(pixel.loc[pixel["dim"].isin(top), "directional"].to_numpy(), SCALE_QUANTILE)
        fig = plt.figure(figsize=(4 + 2.0 * len(top), 3.2), constrained_layout=True)
        gs = fig.add_gridspec(1, len(top) + 1, width_ratios=[2.4] + [1] * len(top))
        _bar(fig.add_subplot(gs[0]), sub, top)
        im = None
        for i, dim in enumerate(top):
            ax = fig.add_subplot(gs[i + 1])
            im = _heatmap(ax, grid(pixel, "directional", shape, dim, masked=True), DIVERGING, -m, m,
                          f"z{dim} (rank {i + 1})", _aspect(axes))
            if axes is not None:
                label_image_axes(ax, axes, y=i == 0, n_ticks=3, fontsize=5)
        fig.colorbar(im, ax=fig.axes[1:], shrink=0.7, extend="both", label="directional importance")
    fig.suptitle(f"class {cls}: {name}")
    if has_mask(pixel):
        _note_mask(fig, fdr)
    return fig


def plot_classes(pixel: pd.DataFrame, latent: pd.DataFrame, top_k: int, axes=None,
                 fdr: float | None = None):
    """Appendix grid: one row per class, the bar chart and the top-k heatmaps (one shared scale;
    a table's: feature bars on one x scale)."""
    use_style()
    classes = sorted(int(c) for c in latent["class"].unique())
    shape = image_shape_of(pixel)
    table = axes_kind(axes) == "table"
    if table:
        names = feature_names(pixel, axes)
        limit = _bar_limit(pixel["directional"])
        fig = plt.figure(figsize=(3.2 + 2.3 * top_k, max(1.45, _bars_height(names)) * len(classes) + 0.6),
                         constrained_layout=True)
        gs = fig.add_gridspec(len(classes), top_k + 1, width_ratios=[2.6] + [1.4] * top_k)
    else:
        m = _symmetric_limit(pixel["directional"].to_numpy(), SCALE_QUANTILE)
        fig = plt.figure(figsize=(3.2 + 1.3 * top_k, 1.45 * len(classes) + 0.6), constrained_layout=True)
        gs = fig.add_gridspec(len(classes), top_k + 1, width_ratios=[2.6] + [1] * top_k)
    im = None
    for r, cls in enumerate(classes):
        sub = latent[latent["class"] == cls]
        top = top_dimensions(latent, cls, top_k)
        ax = fig.add_subplot(gs[r, 0])
        _bar(ax, sub, top)
        ax.set_ylabel(str(sub["class_name"].iloc[0]), fontsize=7)
        for i, dim in enumerate(top):
            ax = fig.add_subplot(gs[r, i + 1])
            if table:
                _feature_bars(ax, pixel, "directional", dim, names, limit, f"z{dim}",
                              "directional importance" if r == len(classes) - 1 and i == 0 else None)
                continue
            im = _heatmap(ax, grid(pixel, "directional", shape, dim, masked=True), DIVERGING, -m, m,
                          f"z{dim}", _aspect(axes))
            if axes is not None and r == len(classes) - 1 and i == 0:
                label_image_axes(ax, axes, n_ticks=3, fontsize=5)
    if not table:
        fig.colorbar(im, ax=fig.axes, shrink=0.3, extend="both", label="directional importance")
    if has_mask(pixel):
        _note_mask(fig, fdr)
    return fig


def plot_variants(tables: dict[str, pd.DataFrame], latent: pd.DataFrame, top_k: int, axes=None,
                  fdr: float | None = None):
    """Variants of one model's pixel importance side by side, masked where tested.

    Parameters
    ----------
    tables : {column label: pixel_importance table}, e.g. {"per pixel": ..., "4×4 patches": ...,
        "conditional": ...}, all of one model; one column per table, in the given order.
    latent : the model's latent_importance table; the rows are its `top_k` most important
        dimensions overall (importance averaged over classes, ties: lower dimension first).
    axes : data.store.ImageAxes or None; the bottom-left map then carries the physical ticks (a
        table's panels are feature bars, each with its names, on its column's x scale).
    fdr : the false discovery rate of the significance test, for the note of masked tables.

    Each panel is the plain importance (white -> red; a group's score has no single slope sign)
    of one dimension, titled with the pixels declared where the table has a mask. Each column has
    its own colour scale: the scores of different groupings are not comparable.
    """
    use_style()
    if not tables:
        raise ValueError("plot_variants needs at least one pixel table, got an empty dict")
    dims = top_dimensions(latent, None, top_k)
    table = axes_kind(axes) == "table"
    if table:
        fig = plt.figure(figsize=(0.3 + 2.3 * len(tables), 0.9 + (_bars_height(axes.col_names) + 0.1) * len(dims)),
                         constrained_layout=True)
    else:
        fig = plt.figure(figsize=(0.3 + 1.9 * len(tables), 0.9 + 1.75 * len(dims)), constrained_layout=True)
    columns = np.atleast_1d(fig.subfigures(1, len(tables)))
    for c, (column, (label, pixel)) in enumerate(zip(columns, tables.items())):
        shape = image_shape_of(pixel)
        selected = pixel.loc[pixel["dim"].isin(dims)]
        panels = column.subplots(len(dims), 1, squeeze=False)[:, 0]
        if table:
            names, limit = feature_names(pixel, axes), _bar_limit(selected["importance"] + selected["std"])
        else:
            m = _symmetric_limit(selected["importance"].to_numpy(), SCALE_QUANTILE)
        im = None
        for ax, dim in zip(panels, dims):
            title = f"z{dim}"
            if has_mask(pixel):
                declared = pixel.loc[pixel["dim"] == dim, "significant"]
                title += f" · {int(declared.sum())}/{len(declared)} declared"
            if table:
                _feature_bars(ax, pixel, "importance", dim, names, limit, title)
                continue
            im = _heatmap(ax, grid(pixel, "importance", shape, dim, masked=True), SEQUENTIAL, 0, m, title,
                          _aspect(axes))
        if table:
            panels[-1].set_xlabel("importance (MSE)", fontsize=6)
        else:
            if axes is not None and c == 0:
                label_image_axes(panels[-1], axes, n_ticks=3, fontsize=5)
            column.colorbar(im, ax=panels, location="bottom", shrink=0.8, aspect=15, extend="max",
                            label="importance")
        column.suptitle(label, fontsize=9, fontweight="bold")
    if any(has_mask(pixel) for pixel in tables.values()):
        _note_mask(fig, fdr)
    return fig
