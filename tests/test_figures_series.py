"""Figures of tables and sensor series in their own units: importance maps (a series' channel x
time heatmap, a table's feature bars), the dataset's examples (a series' windows as lines, a
table's class means) and a model's reconstructions (lines per channel, dots per feature), from
small synthetic inputs: a series of 3 named channels at 50 Hz, a table of 30 named features."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from latent_atlas.data.figures import example_indices, plot_series_examples, plot_table_means
from latent_atlas.data.jobs import SERIES_EXAMPLES_PER_CLASS, plot_dataset_examples
from latent_atlas.data.store import Dataset, ImageAxes, save_dataset
from latent_atlas.importance import figures as impfig
from latent_atlas.importance.jobs import plot_importance, plot_importance_variants
from latent_atlas.io import write_npz, write_parquet
from latent_atlas.models.figures import plot_reconstructions
from latent_atlas.models.jobs import plot_model
from latent_atlas.plotting import axes_kind, label_image_axes, save_figure
from latent_atlas.runtime import Files, Job

CHANNELS = ["acc_x", "acc_y", "gyro_z"]
RATE, LENGTH = 50.0, 100  # 2 s windows
FEATURES = [f"feat_{i:02d}" for i in range(30)]
CLASSES = ["walk", "run", "sit"]
D = 4

SERIES = ImageAxes(np.arange(3), np.arange(LENGTH) / RATE, "channel", "time (s)",
                   {"sample_rate": RATE, "window": LENGTH}, row_names=CHANNELS)
TABLE = ImageAxes([0.0], np.arange(len(FEATURES)), "", "feature", {}, col_names=FEATURES)


def _pixel_tables(height, width, seed=0, tested=True):
    """A pixel importance table of an (height, width) map with D dimensions (about half the rows
    declared when `tested`), and a latent importance table of 3 classes."""
    rng = np.random.default_rng(seed)
    rows, cols = np.divmod(np.arange(height * width), width)
    pixel = pd.DataFrame({"pixel": np.repeat(np.arange(height * width), D), "row": np.repeat(rows, D),
                          "col": np.repeat(cols, D), "dim": np.tile(np.arange(D), height * width)})
    pixel["importance"] = rng.random(len(pixel))
    pixel["std"] = rng.random(len(pixel)) * 0.05
    pixel["sign"] = np.where(rng.random(len(pixel)) < 0.5, -1, 1).astype(np.int8)
    pixel["directional"] = pixel["sign"] * pixel["importance"]
    if tested:
        pixel["significant"] = rng.random(len(pixel)) < 0.5
    importance = rng.random((3, D))
    latent = pd.DataFrame({"class": np.repeat(np.arange(3), D), "class_name": np.repeat(CLASSES, D),
                           "dim": np.tile(np.arange(D), 3), "importance": importance.ravel(),
                           "std": importance.ravel() * 0.1})
    return pixel, latent


def _tick_texts(labels):
    return [t.get_text() for t in labels]


def _bar_panels(fig):
    """The panels of feature bars (horizontal bars with feature names on the y axis)."""
    return [ax for ax in fig.axes if set(_tick_texts(ax.get_yticklabels())) & set(FEATURES)]


def _expected_top(pixel, dim, k=impfig.MAX_FEATURES):
    """The k most important features of `dim` (ties: lower column first), from the table alone."""
    sub = pixel[pixel["dim"] == dim].sort_values(["importance", "col"], ascending=[False, True], kind="stable")
    return sub.head(k)


# ---------------------------------------------------------------------------------------------
# the kind the axes say, and the shared helpers
# ---------------------------------------------------------------------------------------------


def test_axes_kind_and_named_ticks():
    spectrogram = ImageAxes(np.linspace(3500, 100, 8), np.linspace(0.05, 0.95, 8), "frequency (Hz)", "time (s)")
    assert [axes_kind(a) for a in (None, spectrogram, SERIES, TABLE)] == ["image", "image", "series", "table"]
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((3, LENGTH)), aspect="auto")
    label_image_axes(ax, SERIES)
    assert _tick_texts(ax.get_yticklabels()) == CHANNELS and list(ax.get_yticks()) == [0, 1, 2]
    assert ax.get_ylabel() == "channel" and ax.get_xlabel() == "time (s)"
    # round seconds at the columns where those times lie (column k is k / RATE s)
    ticks = dict(zip(_tick_texts(ax.get_xticklabels()), ax.get_xticks()))
    assert ticks["1"] == pytest.approx(RATE)
    plt.close(fig)
    many = ImageAxes(np.arange(60), np.arange(10) / RATE, "channel", "time (s)", row_names=[f"c{i}" for i in range(60)])
    fig, ax = plt.subplots()
    label_image_axes(ax, many, x=False)
    assert _tick_texts(ax.get_yticklabels()) == [f"c{i}" for i in range(0, 60, 3)]  # every 3rd: at most 24
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# importance
# ---------------------------------------------------------------------------------------------


IMPORTANCE_FIGURES = {
    "directional": lambda pixel, lat, **kw: impfig.plot_directional(pixel, title="m", **kw),
    "dimension": lambda pixel, lat, **kw: impfig.plot_dimension(pixel, 2, **kw),
    "class": lambda pixel, lat, **kw: impfig.plot_class(pixel, lat, 1, 2, **kw),
    "classes": lambda pixel, lat, **kw: impfig.plot_classes(pixel, lat, 2, **kw),
    "variants": lambda pixel, lat, **kw: impfig.plot_variants({"per pixel": pixel, "other": pixel}, lat, 2, **kw),
}


@pytest.mark.parametrize("name", list(IMPORTANCE_FIGURES))
def test_series_importance_maps_are_channel_by_time_heatmaps(name, tmp_path):
    pixel, lat = _pixel_tables(3, LENGTH)
    fig = IMPORTANCE_FIGURES[name](pixel, lat, axes=SERIES, fdr=0.05)
    maps = [ax for ax in fig.axes if ax.images]
    assert maps and all(ax.images[0].get_array().shape == (3, LENGTH) for ax in maps)
    assert all(ax.get_aspect() == "auto" for ax in maps)  # stretched to the panel, not a 3-pixel strip
    labelled = [ax for ax in maps if ax.get_ylabel()]
    assert labelled and all(_tick_texts(ax.get_yticklabels()) == CHANNELS for ax in labelled)
    assert {ax.get_ylabel() for ax in labelled} == {"channel"}
    assert all(ax.get_xlabel() == "time (s)" for ax in maps if ax.get_xticklabels())
    assert "grey: not declared at FDR 0.05" == fig.get_supxlabel()
    save_figure(fig, tmp_path / f"series_{name}.png")


def test_series_heatmap_holds_each_cell_at_its_channel_and_time():
    pixel, _ = _pixel_tables(3, LENGTH, tested=False)
    fig = impfig.plot_dimension(pixel, 1, axes=SERIES)
    plain = next(ax for ax in fig.axes if ax.get_title() == "z1: importance").images[0].get_array()
    sub = pixel[pixel["dim"] == 1]
    np.testing.assert_array_equal(plain[sub["row"], sub["col"]], sub["importance"])
    plt.close(fig)
    image_fig = impfig.plot_dimension(pixel, 1)  # no axes: an image, square pixels
    assert {ax.get_aspect() for ax in image_fig.axes if ax.images} == {1.0}
    plt.close(image_fig)


@pytest.mark.parametrize("name", list(IMPORTANCE_FIGURES))
def test_table_importance_maps_are_sorted_feature_bars(name, tmp_path):
    pixel, lat = _pixel_tables(1, len(FEATURES))
    fig = IMPORTANCE_FIGURES[name](pixel, lat, axes=TABLE, fdr=0.05)
    assert not any(ax.images for ax in fig.axes)  # no 1 x F strips
    panels = _bar_panels(fig)
    assert panels
    for ax in panels:
        dim = int(ax.get_title().split()[0].rstrip(":").lstrip("z"))
        top = _expected_top(pixel, dim)
        assert _tick_texts(ax.get_yticklabels()) == [FEATURES[c] for c in top["col"]]
        assert len(ax.patches) == impfig.MAX_FEATURES  # bars: the top 20 of 30
        assert ax.get_ylabel() == "top 20 of 30 features (10 not shown)"
        widths = np.array([p.get_width() for p in ax.patches])
        value = "importance" if name == "variants" or ax.get_title().endswith(": importance") else "directional"
        np.testing.assert_allclose(widths, top[value])
        colors = [p.get_facecolor() for p in ax.patches]
        grey = to_rgba(impfig.NOT_DECLARED)
        assert [c == grey for c in colors] == list(~top["significant"].to_numpy())
        if value == "directional":  # declared bars: red above 0, blue below
            declared = top["significant"].to_numpy()
            assert [c == to_rgba(impfig.NEGATIVE_BAR) for c, d in zip(colors, declared) if d] == \
                list(top["directional"].to_numpy()[declared] < 0)
    assert fig.get_supxlabel() == "grey: not declared at FDR 0.05"
    save_figure(fig, tmp_path / f"table_{name}.png")


def test_a_small_table_shows_every_feature_and_a_mismatched_one_is_refused():
    pixel, _ = _pixel_tables(1, 12, tested=False)
    names = FEATURES[:12]
    fig = impfig.plot_dimension(pixel, 0, axes=ImageAxes([0.0], np.arange(12), "", "feature", {}, col_names=names))
    panels = [ax for ax in fig.axes if ax.patches]
    assert len(panels) == 2 and all(len(ax.patches) == 12 and ax.get_ylabel() == "feature" for ax in panels)
    assert sorted(_tick_texts(panels[0].get_yticklabels())) == names
    assert not any(p.get_facecolor() == to_rgba(impfig.NOT_DECLARED) for p in panels[0].patches)  # no mask
    plt.close(fig)
    with pytest.raises(ValueError, match="name 30 features.*1 x 12"):
        impfig.plot_dimension(pixel, 0, axes=TABLE)


def test_importance_jobs_draw_a_series_and_a_table(tmp_path):
    """The plot jobs read the kind and names from the dataset store beside the tables."""
    for kind, axes, shape in (("series", SERIES, (1, 3, LENGTH)), ("table", TABLE, (1, 1, len(FEATURES)))):
        n = 6
        ds = Dataset(np.zeros((n, *shape), np.float32), np.arange(n) % 3, CLASSES, ["train", "test"] * 3,
                     np.arange(n), kind, axes, kind)
        save_dataset(ds, tmp_path / kind / "data")
        pixel, lat = _pixel_tables(*shape[1:])
        write_parquet(pixel, tmp_path / kind / "pixel.parquet", metadata={"groups": "pixels"})
        write_parquet(lat, tmp_path / kind / "latent.parquet")
        data = [str(tmp_path / kind / "data" / f) for f in ("images.npy", "samples.parquet")]
        out = {name: str(tmp_path / kind / f"{name}.png")
               for name in ("directional", "dimension", "classes", "class_1")}
        plot_importance(Job(input=Files(data=data, pixel=str(tmp_path / kind / "pixel.parquet"),
                                        latent=str(tmp_path / kind / "latent.parquet")),
                            output=Files(**out), wildcards=Files(dataset=kind, model="m")),
                        top_k=2, classes=[1], fdr=0.05)
        plot_importance_variants(Job(input=Files(data=data, latent=str(tmp_path / kind / "latent.parquet"),
                                                 pixel=[str(tmp_path / kind / "pixel.parquet")]),
                                     output=Files([str(tmp_path / kind / "variants.png")]),
                                     wildcards=Files(dataset=kind, model="m")),
                                 top_k=2, fdr=0.05, labels=["main"])
        for path in [*out.values(), tmp_path / kind / "variants.png"]:
            assert Path(path).stat().st_size > 5000


# ---------------------------------------------------------------------------------------------
# the dataset's examples
# ---------------------------------------------------------------------------------------------


def _series_dataset(n=24, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    t = np.arange(LENGTH) / RATE
    x = np.stack([[np.sin(2 * np.pi * (1 + y) * t + c) for c in range(3)] for y in labels])
    x = (x + 0.3 * rng.standard_normal(x.shape)).astype(np.float32)[:, None]
    return Dataset(x, labels, CLASSES, np.where(np.arange(n) < n // 2, "train", "test"), np.arange(n) + 100,
                   "har", SERIES, "series")


def _table_dataset(n=30, features=FEATURES, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    x = rng.standard_normal((n, len(features))) + labels[:, None] * np.linspace(-1, 1, len(features))
    axes = ImageAxes([0.0], np.arange(len(features)), "", "feature", {}, col_names=features)
    return Dataset(x.astype(np.float32)[:, None, None], labels, CLASSES,
                   np.where(np.arange(n) < n // 2, "train", "test"), np.arange(n), "tab", axes, "table")


def test_series_examples_are_lines_per_channel_in_seconds(tmp_path):
    ds = _series_dataset()
    fig = plot_series_examples(ds, per_class=2, random_state=0)
    panels = np.array([ax for ax in fig.axes if ax.lines]).reshape(3, 2)
    picks = example_indices(ds, 2, 0)
    for r, chosen in enumerate(picks):
        assert panels[r, 0].get_ylabel().split("\n")[0] == CLASSES[r]
        assert _tick_texts(panels[r, 0].get_yticklabels()) == CHANNELS
        for col, i in enumerate(chosen):
            lines = panels[r, col].lines
            assert len(lines) == 3 and panels[r, col].get_title() == f"sample {ds.sample_id[i]}"
            np.testing.assert_allclose(lines[0].get_xdata(), np.arange(LENGTH) / RATE)
            # channel c is the window's row c, shifted down by c offsets (one offset for the figure)
            shifts = [line.get_ydata() - ds.images[i][0, c] for c, line in enumerate(lines)]
            offset = -np.mean(shifts[1])
            assert offset > 0
            for c, shift in enumerate(shifts):
                np.testing.assert_allclose(shift, -c * offset, atol=1e-5)
    assert all(ax.get_xlabel() == "time (s)" for ax in panels[-1])
    assert _tick_texts(fig.legends[0].get_texts()) == CHANNELS
    assert "at 50 Hz" in fig.get_suptitle()
    save_figure(fig, tmp_path / "series_examples.png")
    with pytest.raises(ValueError, match="takes a series"):
        plot_series_examples(_table_dataset())


def test_table_examples_are_the_class_means_of_named_features(tmp_path):
    ds = _table_dataset()
    fig = plot_table_means(ds, per_class=1000)  # every row of each class
    ax = fig.axes[0]
    x = np.asarray(ds.images)[:, 0, 0]
    expected = np.stack([x[ds.labels == c].mean(axis=0) for c in range(3)]).T  # (F, classes)
    np.testing.assert_allclose(ax.images[0].get_array(), expected, rtol=1e-6)
    assert _tick_texts(ax.get_yticklabels()) == FEATURES and ax.get_ylabel() == "feature"
    assert _tick_texts(ax.get_xticklabels()) == [f"{c} (mean of 10)" for c in CLASSES]
    save_figure(fig, tmp_path / "table_means.png")
    # past MAX_FEATURES, the features whose class means differ most, in the table's order
    wide = [f"f{i}" for i in range(50)]
    ds = _table_dataset(features=wide)
    fig = plot_table_means(ds, per_class=1000)
    x = np.asarray(ds.images)[:, 0, 0]
    spread = np.stack([x[ds.labels == c].mean(axis=0) for c in range(3)]).std(axis=0)
    kept = np.sort(np.argsort(-spread)[:40])
    assert _tick_texts(fig.axes[0].get_yticklabels()) == [wide[i] for i in kept]
    assert "10 not shown" in fig.axes[0].get_ylabel()
    plt.close(fig)
    with pytest.raises(ValueError, match="takes a table"):
        plot_table_means(_series_dataset())


def test_the_examples_job_draws_by_the_stores_kind(tmp_path):
    for ds in (_series_dataset(), _table_dataset()):
        save_dataset(ds, tmp_path / ds.kind)
        out = tmp_path / f"{ds.kind}.png"
        plot_dataset_examples(Job(input=Files([str(tmp_path / ds.kind / "images.npy"),
                                               str(tmp_path / ds.kind / "samples.parquet")]),
                                  output=Files([str(out)]), wildcards=Files(dataset=ds.name)), seed=3)
        expected = (plot_series_examples(ds, SERIES_EXAMPLES_PER_CLASS, random_state=3) if ds.kind == "series"
                    else plot_table_means(ds, 1000, random_state=3))
        save_figure(expected, tmp_path / f"{ds.kind}_direct.png")
        assert out.read_bytes() == (tmp_path / f"{ds.kind}_direct.png").read_bytes()


# ---------------------------------------------------------------------------------------------
# reconstructions
# ---------------------------------------------------------------------------------------------


def test_series_reconstructions_are_input_and_output_lines(tmp_path):
    ds = _series_dataset(12)
    x = np.asarray(ds.images)
    rec = (x + 0.2 * np.random.default_rng(1).standard_normal(x.shape)).astype(np.float32)
    fig = plot_reconstructions(x, rec, ds.labels, CLASSES, n_columns=6, title="ae", axes=SERIES)
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == 6 and not any(ax.images for ax in fig.axes)
    for ax in panels:
        i = int(np.flatnonzero([ax.get_title() == f"{CLASSES[ds.labels[k]]}, MSE {((x[k] - rec[k]) ** 2).mean():.3f}"
                                for k in range(len(x))])[0])
        inputs, outputs = ax.lines[:3], ax.lines[3:]
        assert len(outputs) == 3
        d_in = [line.get_ydata() - x[i, 0, c] for c, line in enumerate(inputs)]
        d_out = [line.get_ydata() - rec[i, 0, c] for c, line in enumerate(outputs)]
        for c in range(3):  # the same offset for the input and the reconstruction of a channel
            np.testing.assert_allclose(d_in[c], d_in[c][0], atol=1e-5)
            np.testing.assert_allclose(d_out[c], d_in[c][0], atol=1e-5)
        np.testing.assert_allclose(inputs[0].get_xdata(), np.arange(LENGTH) / RATE)
    first_column = [ax for ax in panels if ax.get_yticklabels()]  # the others' channel labels are hidden
    assert len(first_column) == 2 and all(_tick_texts(ax.get_yticklabels()) == CHANNELS for ax in first_column)
    # 2 rows of 3: the lower row carries the seconds (shared time axis)
    assert [ax.get_xlabel() for ax in panels] == [""] * 3 + ["time (s)"] * 3
    fig.canvas.draw()  # tick texts are formatted when drawn
    assert all("1.00" in _tick_texts(ax.get_xticklabels()) for ax in panels[3:])
    assert _tick_texts(fig.legends[0].get_texts()) == ["input", "reconstruction"]
    save_figure(fig, tmp_path / "series_reconstructions.png")


def test_table_reconstructions_are_input_and_output_dots(tmp_path):
    ds = _table_dataset(12)
    x = np.asarray(ds.images)
    rec = (x + 0.2 * np.random.default_rng(1).standard_normal(x.shape)).astype(np.float32)
    fig = plot_reconstructions(x, rec, ds.labels, CLASSES, n_columns=6, title="ae", axes=ds.axes)
    panels = [ax for ax in fig.axes if ax.collections]
    assert len(panels) == 6
    assert _tick_texts(panels[0].get_yticklabels()) == FEATURES
    for j, ax in enumerate(panels):
        _, dots, crosses = ax.collections  # error segments, inputs, reconstructions
        values = dots.get_offsets()[:, 0]
        i = int(np.flatnonzero(np.all(np.isclose(x[:, 0, 0], values), axis=1))[0])
        np.testing.assert_allclose(crosses.get_offsets()[:, 0], rec[i, 0, 0])
        np.testing.assert_array_equal(dots.get_offsets()[:, 1], np.arange(len(FEATURES)))
        assert ax.get_title() == f"{CLASSES[ds.labels[i]]}, MSE {((x[i] - rec[i]) ** 2).mean():.3f}"
    assert panels[0].get_ylabel() == "feature"
    save_figure(fig, tmp_path / "table_reconstructions.png")


def test_the_model_job_draws_series_reconstructions(tmp_path):
    ds = _series_dataset(9)
    x = np.asarray(ds.images)
    write_npz(tmp_path / "reconstructions.npz", sample_id=ds.sample_id, label=ds.labels, original=x,
              reconstruction=x * 0.9, class_names=np.asarray(CLASSES), **SERIES.arrays())
    pd.DataFrame({"epoch": [1, 2], "lr": [1e-3, 1e-3], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.6]}).to_csv(
        tmp_path / "train_log.tsv", sep="\t", index=False)
    out = Files(training_curves=str(tmp_path / "curves.png"), reconstructions=str(tmp_path / "rec.png"))
    plot_model(Job(input=Files(train_log=str(tmp_path / "train_log.tsv"),
                               reconstructions=str(tmp_path / "reconstructions.npz")),
                   output=out, wildcards=Files(model="ae")))
    save_figure(plot_reconstructions(x, x * 0.9, ds.labels, CLASSES, title="ae", axes=SERIES), tmp_path / "direct.png")
    assert (tmp_path / "rec.png").read_bytes() == (tmp_path / "direct.png").read_bytes()
