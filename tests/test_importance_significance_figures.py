"""Importance figures of tables with the significance test: the mask, its note, its scale, and the
side-by-side figure of variants (per pixel, patches, conditional); tables without the test draw
as before."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from latent_atlas.importance import figures as impfig

H, W, D = 5, 4, 6
TEST_COLUMNS = ["group", "se", "interval_low", "interval_high", "p_value", "significant"]


def _old_tables(seed=0, n_classes=3):
    """A pixel table with the columns written before the test existed (built here, not by
    `tables.pixel_frame`, which now writes the test's columns), and a latent table."""
    rng = np.random.default_rng(seed)
    rows, cols = np.divmod(np.arange(H * W), W)
    pixel = pd.DataFrame({"pixel": np.repeat(np.arange(H * W), D), "row": np.repeat(rows, D),
                          "col": np.repeat(cols, D), "dim": np.tile(np.arange(D), H * W)})
    pixel["importance"] = rng.random(len(pixel))
    pixel["std"] = rng.random(len(pixel)) * 0.1
    pixel["ci_low"] = pixel["importance"] - pixel["std"]
    pixel["ci_high"] = pixel["importance"] + pixel["std"]
    pixel["slope"] = rng.standard_normal(len(pixel))
    pixel["sign"] = np.sign(pixel["slope"]).astype(np.int8)
    pixel["directional"] = pixel["sign"] * pixel["importance"]
    importance = rng.random((n_classes, D))
    lat = pd.DataFrame({"class": np.repeat(np.arange(n_classes), D),
                        "class_name": np.repeat(["a", "b", "c"][:n_classes], D),
                        "dim": np.tile(np.arange(D), n_classes), "importance": importance.ravel(),
                        "std": importance.ravel() * 0.1})
    return pixel, lat


def _tested(pixel: pd.DataFrame, seed=1) -> pd.DataFrame:
    """The table with the test's columns; about half the rows declared, at random."""
    rng = np.random.default_rng(seed)
    out = pixel.copy()
    out["group"] = out["pixel"]
    out["se"] = out["std"] * 0.5
    out["interval_low"] = out["importance"] - out["se"]
    out["interval_high"] = out["importance"] + out["se"]
    out["p_value"] = rng.random(len(out))
    out["significant"] = out["p_value"] < 0.5
    return out


def _panels(fig):
    """[(title, drawn image array, AxesImage)] of the figure's heatmaps, in drawing order."""
    return [(ax.get_title(), ax.images[0].get_array(), ax.images[0]) for ax in fig.axes if ax.images]


def _dim(title: str) -> int:
    return int(re.match(r"z(\d+)", title).group(1))


def _value(title: str) -> str:
    return "importance" if title.endswith(": importance") else "directional"


FIGURES = {
    "directional": lambda pixel, lat, **kw: impfig.plot_directional(pixel, title="m", **kw),
    "dimension": lambda pixel, lat, **kw: impfig.plot_dimension(pixel, 2, **kw),
    "class": lambda pixel, lat, **kw: impfig.plot_class(pixel, lat, 1, 3, **kw),
    "classes": lambda pixel, lat, **kw: impfig.plot_classes(pixel, lat, 3, **kw),
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_masked_pixels_are_exactly_the_undeclared_ones(name):
    pixel, lat = _old_tables()
    tested = _tested(pixel)
    fig = FIGURES[name](tested, lat, fdr=0.05)
    panels = _panels(fig)
    assert len(panels) >= 2
    for title, arr, im in panels:
        dim = _dim(title)
        declared = impfig.grid(tested, "significant", (H, W), dim).astype(bool)
        assert 0 < declared.sum() < H * W
        np.testing.assert_array_equal(np.ma.getmaskarray(arr), ~declared, err_msg=title)
        values = impfig.grid(tested, _value(title), (H, W), dim)
        np.testing.assert_array_equal(np.asarray(arr)[declared], values[declared], err_msg=title)
        assert im.cmap.get_bad() == pytest.approx((0.85, 0.85, 0.85, 1.0))  # light grey
    assert fig.get_supxlabel() == "grey: not declared at FDR 0.05"
    plt.close(fig)
    fig = FIGURES[name](tested, lat)
    assert fig.get_supxlabel() == "grey: not declared"
    plt.close(fig)


@pytest.mark.parametrize("name", list(FIGURES))
def test_mask_keeps_the_scale_of_all_values(name):
    """A masked map and its unmasked version (the same table without the test) share the scale."""
    pixel, lat = _old_tables()
    tested = _tested(pixel)
    # the largest values (|directional| = importance here) are not declared, so a scale of the
    # declared values alone would differ
    largest = tested.groupby("dim")["importance"].rank(ascending=False) <= 4
    tested.loc[largest, "significant"] = False
    masked, plain = FIGURES[name](tested, lat, fdr=0.05), FIGURES[name](pixel, lat)
    assert [im.get_clim() for _, _, im in _panels(masked)] == [im.get_clim() for _, _, im in _panels(plain)]
    plt.close(masked)
    plt.close(plain)


@pytest.mark.parametrize("name", list(FIGURES))
def test_tables_without_the_test_draw_unmasked(name):
    """Without the test's columns every panel is the plain grid, nothing masked, no note."""
    pixel, lat = _old_tables()
    assert not impfig.has_mask(pixel)
    fig = FIGURES[name](pixel, lat, fdr=0.05)
    for title, arr, _ in _panels(fig):
        assert not np.ma.getmaskarray(arr).any(), title
        np.testing.assert_array_equal(np.asarray(arr), impfig.grid(pixel, _value(title), (H, W), _dim(title)))
    assert fig.get_supxlabel() == ""
    plt.close(fig)
    # dropping the test's columns gives the same arrays as a table that never had them
    again = FIGURES[name](_tested(pixel).drop(columns=TEST_COLUMNS), lat, fdr=0.05)
    for (t0, a0, _), (t1, a1, _) in zip(_panels(again), _panels(FIGURES[name](pixel, lat))):
        assert t0 == t1
        np.testing.assert_array_equal(np.ma.getdata(a0), np.ma.getdata(a1))
        assert not np.ma.getmaskarray(a0).any()
    plt.close("all")


def test_top_dimensions_of_the_model():
    """cls None ranks by latent importance averaged over classes, ties to the lower dimension."""
    _, lat = _old_tables(n_classes=2)
    mean = np.array([0.5, 0.9, 0.2, 0.9, 0.1, 0.7])  # dims 1 and 3 tie
    lat["importance"] = np.concatenate([mean - 0.1, mean + 0.1])
    assert impfig.top_dimensions(lat, None, 4) == [1, 3, 5, 0]
    assert impfig.most_important_dimension(lat) == 1
    assert impfig.top_dimensions(lat, 1, 2) == [1, 3]


def test_plot_variants_columns_rows_and_scales():
    pixel, lat = _old_tables()
    patches = _tested(pixel, seed=2)
    patches["importance"] *= 40  # a group's score is on its own scale
    variants = {"per pixel": _tested(pixel), "4×4 patches": patches, "old table": pixel}
    fig = impfig.plot_variants(variants, lat, 3, fdr=0.05)
    top = impfig.top_dimensions(lat, None, 3)
    mean = lat.groupby("dim")["importance"].mean()
    assert top == list(mean.sort_values(ascending=False).index[:3])

    assert [sf.get_suptitle() for sf in fig.subfigs] == list(variants)  # one column per table, in order
    limits = []
    for sf, (label, table) in zip(fig.subfigs, variants.items()):
        panels = [ax for ax in sf.axes if ax.images]
        assert len(panels) == 3
        for ax, dim in zip(panels, top):  # rows: the top dimensions, most important first
            arr = ax.images[0].get_array()
            values = impfig.grid(table, "importance", (H, W), dim)
            if impfig.has_mask(table):
                declared = impfig.grid(table, "significant", (H, W), dim).astype(bool)
                assert ax.get_title() == f"z{dim} · {declared.sum()}/{H * W} declared"
                np.testing.assert_array_equal(np.ma.getmaskarray(arr), ~declared)
            else:
                assert ax.get_title() == f"z{dim}"
                assert not np.ma.getmaskarray(arr).any()
            np.testing.assert_array_equal(np.ma.getdata(arr)[~np.ma.getmaskarray(arr)],
                                          values[~np.ma.getmaskarray(arr)])
        clims = {ax.images[0].get_clim() for ax in panels}
        assert len(clims) == 1  # one scale per column, from that table's values of the shown dims
        vmax = np.quantile(table.loc[table["dim"].isin(top), "importance"], impfig.SCALE_QUANTILE)
        assert clims.pop() == pytest.approx((0.0, vmax))
        limits.append(vmax)
    assert limits[1] > 10 * limits[0]  # columns are not forced onto one scale
    assert fig.get_supxlabel() == "grey: not declared at FDR 0.05"
    plt.close(fig)

    fig = impfig.plot_variants({"old": pixel}, lat, 2)
    assert fig.get_supxlabel() == "" and [sf.get_suptitle() for sf in fig.subfigs] == ["old"]
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one pixel table"):
        impfig.plot_variants({}, lat, 2)


def test_plot_variants_saves_with_the_image_axes(tmp_path):
    from latent_atlas.data.store import ImageAxes
    from latent_atlas.plotting import save_figure

    pixel, lat = _old_tables()
    axes = ImageAxes(rows=np.linspace(3500, 100, H), cols=(np.arange(W) + 0.5) * 0.125,
                     row_label="frequency (Hz)", col_label="time (s)")
    fig = impfig.plot_variants({"per pixel": _tested(pixel), "conditional": _tested(pixel, 3)}, lat, 2,
                               axes=axes)
    labelled = [ax for ax in fig.axes if ax.images and ax.get_ylabel()]
    assert [ax.get_ylabel() for ax in labelled] == ["frequency (Hz)"]  # bottom-left map only
    assert labelled[0] is [ax for ax in fig.subfigs[0].axes if ax.images][-1]
    save_figure(fig, tmp_path / "variants.png")
    assert (tmp_path / "variants.png").stat().st_size > 5000
