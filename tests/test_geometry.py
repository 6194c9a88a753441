"""Latent geometry: compute functions on synthetic clouds, the figures drawn from known tables,
the jobs without Snakemake, then the workflow's outputs."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rule_settings import geometry_figure_axes, geometry_table_settings, projection_settings

from latent_atlas.schema import with_defaults
from latent_atlas.geometry import figures, jobs
from latent_atlas.geometry.axes import axis_histograms, axis_summary, most_off_centre_axes
from latent_atlas.geometry.maps import parse_space, projection_table
from latent_atlas.geometry.neighbours import local_mle_dimension, mle_dimension, twonn_dimension
from latent_atlas.geometry.pca import pca_tables
from latent_atlas.geometry.planes import occupied_fraction, window_mask
from latent_atlas.geometry.radius import radius_tables
from latent_atlas.geometry.random_points import decode_random_points, nearest_image_distance, random_latents
from latent_atlas.geometry.tables import model_tables
from latent_atlas.io import read_parquet, read_parquet_metadata, write_parquet
from latent_atlas.latents import ID_COLUMNS
from latent_atlas.runtime import Files, Job

TSNE = {"perplexity": 10, "n_iter": 100, "early_exaggeration_iter": 50, "sample_sizes": [200]}


def _latents(Z, labels=None):
    n = len(Z)
    labels = np.arange(n) % 3 if labels is None else labels
    df = pd.DataFrame({"sample_id": np.arange(n, dtype=np.int64), "split": "train",
                       "label": labels.astype(np.int64), "label_name": [f"c{x}" for x in labels]})
    return pd.concat([df, pd.DataFrame(Z.astype(np.float32), columns=[f"z{i}" for i in range(Z.shape[1])])],
                     axis=1)


def _config(**sections):
    """The geometry section with the schema's defaults, `sections` replacing some."""
    return with_defaults(sections, "#/properties/geometry", "geometry")


def _filaments(n=1500, d=8, seed=4):
    """Three thin filaments (1-D segments) in d dimensions: the "filaments around voids" picture."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    Z = (rng.normal(scale=3, size=(3, d))[labels] + rng.uniform(-4, 4, (n, 1)) * rng.normal(size=(3, d))[labels]
         + 0.01 * rng.standard_normal((n, d)))
    return Z, labels


SMALL = {"planes": {"pca_pairs": [[1, 2], [1, 18]], "windows": [None, 5, 1], "occupancy_grid": 10},
         "neighbours": {"n_samples": 400, "k_local": 10}}


def _tables(Z, labels):
    return model_tables(Z, _latents(Z, labels)[ID_COLUMNS], _config(**SMALL))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------------- compute
def test_radius_peak_of_gaussian_matches_chi_mode():
    d = 32
    Z = np.random.default_rng(0).standard_normal((20000, d))
    hist, summary = radius_tables(Z, (0.5, 0.05))
    s = summary.set_index("source")
    chi_mode = np.sqrt(d - 1)
    assert s.loc["chi", "peak_radius"] == pytest.approx(chi_mode)
    assert s.loc["latents", "peak_radius"] == pytest.approx(chi_mode, rel=0.03)
    assert s.loc["latents", "hist_peak_0.5"] == pytest.approx(chi_mode, abs=0.5)
    assert sorted(hist["bin_width"].unique()) == [0.05, 0.5]
    for w, h in hist.groupby("bin_width"):  # densities integrate to 1
        assert (h["density"] * w).sum() == pytest.approx(1.0)
        assert h["chi_density"].to_numpy() == pytest.approx(stats.chi(d).pdf(h["bin_center"]))


def test_axis_table_finds_shifted_and_widened_axis():
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((8000, 16))
    Z[:, 11] = Z[:, 11] * 3.4 + 5.0  # "axis 52: centre 5.0, width 8" of the study
    hist = axis_histograms(Z, 0.25)
    summary = axis_summary(hist, Z, off_centre_ratio=0.5, width_ratio=2.0)
    flagged = summary[summary["off_centre"]]["axis"].tolist()
    wide = summary[summary["unusual_width"]]["axis"].tolist()
    assert flagged == [11] and wide == [11]
    row = summary.set_index("axis").loc[11]
    assert row["mode"] == pytest.approx(5.0, abs=1.0)
    assert row["fwhm"] == pytest.approx(8.0, rel=0.25)
    assert summary.set_index("axis").loc[3, "fwhm"] == pytest.approx(2.355, rel=0.1)
    assert most_off_centre_axes(summary, 1) == [11]


def test_pca_variance_sums_to_one_and_threshold_counts():
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((500, 6)) * np.array([5, 3, 1, 0.5, 0.2, 0.1])
    variance, loadings, scores = pca_tables(Z, _latents(Z)[ID_COLUMNS], thresholds=(0.5, 0.85, 0.95))
    assert variance["explained_variance_ratio"].sum() == pytest.approx(1.0)
    assert variance["cumulative"].iloc[-1] == pytest.approx(1.0)
    assert variance["components_for_0.5"].iloc[0] == 1
    assert variance["components_for_0.95"].iloc[0] == 2
    assert loadings.shape == (6, 7) and len(scores) == 500
    assert np.allclose(np.linalg.norm(loadings.filter(like="z").to_numpy(), axis=1), 1.0)


def test_zoom_windows_contain_exactly_the_points_inside():
    xs, ys = np.meshgrid(np.arange(-5, 6), np.arange(-5, 6))
    xy = np.column_stack([xs.ravel(), ys.ravel()]).astype(float)  # integer grid 11 x 11
    assert window_mask(xy, (0, 0), None).all()
    m = window_mask(xy, (0, 0), 2.0)  # |x|, |y| <= 1: a 3 x 3 block
    assert m.sum() == 9 and np.all(np.abs(xy[m]) <= 1) and np.all(np.abs(xy[~m]).max(axis=1) > 1)
    m = window_mask(xy, (2.5, 0), 1.0)  # x in [2, 3], y = 0
    assert sorted(map(tuple, xy[m])) == [(2.0, 0.0), (3.0, 0.0)]
    # occupancy of a full grid window: every cell of a 3 x 3 grid over the 3 x 3 block is hit
    assert occupied_fraction(xy, np.array([0.0, 0.0]), 3.0, 3) == 1.0


def test_intrinsic_dimension_of_curve_and_gaussian():
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((50, 50)))
    t = rng.uniform(0, 1, 2000)
    curve = np.zeros((2000, 50))
    curve[:, 0], curve[:, 1], curve[:, 2] = np.cos(2 * np.pi * t), np.sin(2 * np.pi * t), t
    curve = curve @ Q
    gauss = np.zeros((2000, 50))
    gauss[:, :5] = rng.standard_normal((2000, 5))
    gauss = gauss @ Q
    assert twonn_dimension(curve) == pytest.approx(1.0, abs=0.2)
    assert mle_dimension(curve, 10) == pytest.approx(1.0, abs=0.2)
    assert twonn_dimension(gauss) == pytest.approx(5.0, abs=0.6)
    assert mle_dimension(gauss, 20) == pytest.approx(5.0, abs=0.6)
    local = local_mle_dimension(gauss, 20)
    assert local.shape == (2000,) and np.nanmedian(local) == pytest.approx(5.0, abs=1.0)


def test_geometry_tables_on_clustered_cloud_differ_from_gaussian():
    Z, labels = _filaments()
    t = _tables(Z, labels)
    assert set(t["planes"]["plane"].unique()) == {"PC1-PC2"} | {
        f"z{a}-z{b}" for a, b in [most_off_centre_axes(t["axis_summary"], 2)]}
    assert len(t["zoom"]) == 2 * 3
    summary = t["summary"].set_index("metric")
    # filaments: much shorter nearest-neighbour distances and lower dimension than the Gaussian
    assert summary.loc["nn_distance_median", "ratio"] < 0.5
    assert summary.loc["twonn_dimension", "latents"] < 2 < summary.loc["twonn_dimension", "gaussian"]
    assert (t["zoom"]["occupied_fraction"] <= t["zoom"]["gaussian_occupied_fraction"]).all()
    again = _tables(Z, labels)
    for name in t:
        pd.testing.assert_frame_equal(t[name], again[name])


def test_projection_table_rows_and_determinism():
    rng = np.random.default_rng(5)
    df = _latents(rng.standard_normal((400, 6)))
    Z, ids = df.filter(like="z").to_numpy(), df[ID_COLUMNS]
    a = projection_table(Z, ids, "tsne", TSNE, "pca4", 200)
    b = projection_table(Z, ids, "tsne", TSNE, "pca4", 200)
    assert len(a) == 200 and a["sample_id"].is_unique
    pd.testing.assert_frame_equal(a, b)
    capped = projection_table(Z, ids, "pca", {}, "raw", 10_000)
    assert len(capped) == 400
    with pytest.raises(ValueError, match="raw"):
        parse_space("pcaX")


def test_random_latents_sets():
    Z = np.random.default_rng(6).normal(loc=3, size=(300, 4))
    sets = random_latents(Z, 50, offset_scale=0.1)
    assert set(sets) == {"standard_normal", "fitted_gaussian", "bounding_box", "offsets", "real"}
    assert all(v.shape == (50, 4) for v in sets.values())
    box = sets["bounding_box"]
    assert np.all(box >= Z.min(axis=0) - 1e-6) and np.all(box <= Z.max(axis=0) + 1e-6)
    assert np.abs(sets["offsets"] - sets["real"]).max() < 1.0
    ref = np.random.default_rng(7).uniform(size=(20, 1, 4, 4)).astype(np.float32)
    assert np.allclose(nearest_image_distance(ref[:5], ref), 0.0, atol=1e-3)


def test_decode_random_points_scores_every_image():
    import torch

    class Decoder(torch.nn.Module):
        """Decodes z (B, 3) to (B, 1, 2, 2) images: a fixed linear map and a sigmoid."""

        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 4)

        def decode(self, z):
            return torch.sigmoid(self.linear(z)).reshape(-1, 1, 2, 2)

    torch.manual_seed(0)
    decoder, classifier = Decoder().eval(), torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    Z = np.random.default_rng(8).standard_normal((100, 3))
    reference = np.random.default_rng(9).uniform(size=(30, 1, 2, 2)).astype(np.float32)
    images, scores = decode_random_points(decoder, Z, reference, 7, 0.1, classifier)
    assert list(images) == ["standard_normal", "fitted_gaussian", "bounding_box", "offsets", "real"]
    assert all(v.shape == (7, 1, 2, 2) and v.dtype == np.float32 for v in images.values())
    with torch.no_grad():
        expected = decoder.decode(torch.from_numpy(random_latents(Z, 7, 0.1)["real"])).numpy()
    np.testing.assert_allclose(images["real"], expected, rtol=1e-6)
    assert list(scores.columns) == ["set", "index", "nn_distance", "confidence", "predicted"]
    assert len(scores) == 5 * 7 and scores["confidence"].between(0.5, 1).all()
    real = scores[scores["set"] == "real"]["nn_distance"].to_numpy()
    np.testing.assert_allclose(real, nearest_image_distance(images["real"], reference))


# ---------------------------------------------------------------------------------- figures
def test_axis_density_figure_draws_each_axis_and_the_chosen_axes_alone():
    Z = np.random.default_rng(10).standard_normal((3000, 4))
    Z[:, 2] += 4.0
    hist = axis_histograms(Z, 0.25)
    summary = axis_summary(hist, Z, 0.5, 2.0)
    fig = figures.plot_axis_density(hist, summary, show_alone=1, selected=[0], title="toy")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 1 + 2 and fig._suptitle.get_text() == "toy"
    assert panels[0].get_title() == "all 4 axes"
    curves = panels[0].get_lines()
    assert len(curves) == 4
    for line, (_, g) in zip(curves, hist.groupby("axis")):
        np.testing.assert_array_equal(line.get_ydata(), g["density"])
    mode = summary.set_index("axis").loc[2, "mode"]
    assert panels[1].get_title().startswith(f"axis 2: centre {mode:.2f}") and "(off-centre" in panels[1].get_title()
    assert panels[2].get_title().startswith("axis 0: ")
    np.testing.assert_array_equal(panels[1].get_lines()[0].get_ydata(), hist[hist["axis"] == 2]["density"])


def test_radius_figure_has_one_panel_per_bin_width_with_the_table_densities():
    Z = np.random.default_rng(11).standard_normal((2000, 6))
    hist, summary = radius_tables(Z, (0.5, 0.05))
    fig = figures.plot_radius(hist, summary)
    assert [ax.get_title() for ax in fig.axes] == ["bin width 0.5", "bin width 0.05"]
    for ax, w in zip(fig.axes, (0.5, 0.05)):
        g = hist[hist["bin_width"] == w]
        np.testing.assert_allclose([bar.get_height() for bar in ax.patches], g["density"])
        chi = [line for line in ax.get_lines() if line.get_label() == "chi, d=6"]
        np.testing.assert_array_equal(chi[0].get_ydata(), g["chi_density"])


def test_pca_figure_marks_the_threshold_counts():
    Z = np.random.default_rng(12).standard_normal((400, 5)) * np.array([4, 2, 1, 0.5, 0.1])
    variance, _, _ = pca_tables(Z, _latents(Z)[ID_COLUMNS], thresholds=(0.5, 0.95))
    fig = figures.plot_pca(variance)
    scree, cumulative = fig.axes
    np.testing.assert_allclose([bar.get_height() for bar in scree.patches], variance["explained_variance_ratio"])
    labels = [text.get_text() for text in cumulative.get_legend().get_texts()]
    assert labels == [f"50%: {variance['components_for_0.5'].iloc[0]} components",
                      f"95%: {variance['components_for_0.95'].iloc[0]} components"]


def test_planes_figure_shows_the_points_of_each_zoom_window():
    Z, labels = _filaments(n=600)
    t = _tables(Z, labels)
    fig = figures.plot_planes(t["planes"], t["zoom"])
    zoom = t["zoom"]
    n_planes, n_windows = zoom["plane"].nunique(), zoom["window"].nunique()
    assert len(fig.axes) == n_planes * n_windows == 2 * 3
    for ax, (_, z) in zip(fig.axes, zoom.iterrows()):  # rows = planes, columns = windows, in table order
        shown = sum(len(c.get_offsets()) for c in ax.collections)
        assert shown == z["n_inside"] == (600 if z["window"] == 0 else shown)  # the full extent: every point
        assert ax.get_title().startswith(f"{z['plane']}, side {z['side']:.3g}\n{z['n_inside']} pts")
        assert ax.get_xlim() == pytest.approx((z["centre_x"] - z["side"] / 2, z["centre_x"] + z["side"] / 2))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["c0", "c1", "c2"]


def test_neighbours_figure_names_the_dimensions_of_the_table():
    Z, labels = _filaments(n=600)
    t = _tables(Z, labels)
    fig = figures.plot_neighbours(t["neighbours"], t["intrinsic_dimension"])
    dim = t["intrinsic_dimension"].set_index("source")
    labels = [text.get_text() for text in fig.axes[1].get_legend().get_texts()]
    assert labels == [f"latents: TwoNN {dim.loc['latents', 'twonn']:.1f}, MLE {dim.loc['latents', 'mle']:.1f}",
                      f"Gaussian, same mean/cov: TwoNN {dim.loc['gaussian', 'twonn']:.1f}, "
                      f"MLE {dim.loc['gaussian', 'mle']:.1f}"]


def test_projection_figure_plots_every_map_in_its_panel():
    df = _latents(np.random.default_rng(13).standard_normal((120, 5)))
    Z, ids = df.filter(like="z").to_numpy(), df[ID_COLUMNS]
    maps = [projection_table(Z, ids, "pca", {}, space, 60) for space in ("raw", "pca2")]
    fig = figures.plot_projections(maps, title="maps")
    assert [ax.get_title() for ax in fig.axes] == ["raw latents, n = 60", "PCA to 2, n = 60"]
    for ax, table in zip(fig.axes, maps):
        shown = np.concatenate([c.get_offsets() for c in ax.collections])
        expected = table[["x", "y"]].to_numpy()
        assert sorted(map(tuple, shown)) == sorted(map(tuple, expected))


@pytest.mark.parametrize("channels", [1, 3])
def test_random_points_figure_tiles_the_images_of_each_set(channels):
    rng = np.random.default_rng(14)
    images = {"standard_normal": rng.uniform(size=(4, channels, 3, 3)).astype(np.float32),
              "real": rng.uniform(size=(5, channels, 3, 3)).astype(np.float32)}
    scores = pd.DataFrame({"set": ["standard_normal"] * 4 + ["real"] * 5, "index": [0, 1, 2, 3, 0, 1, 2, 3, 4],
                           "nn_distance": np.arange(9) / 10})
    fig = figures.plot_random_points(images, scores)
    assert [ax.get_title() for ax in fig.axes] == ["standard normal\nNN dist 0.150", "real\nNN dist 0.600"]
    # 4 images: 2 x 2 tiles; 5 images: 3 columns, 2 rows; tiles of 3 + 1 (gap) pixels
    for ax, imgs, cols, shape in zip(fig.axes, images.values(), (2, 3), ((8, 8), (8, 12))):
        canvas = np.asarray(ax.images[0].get_array())
        assert canvas.shape == shape + ((3,) if channels == 3 else ())
        tile = canvas[4:7, 4:7]  # the image in row 1, column 1
        expected = imgs[cols + 1]
        np.testing.assert_array_equal(tile, expected[0] if channels == 1 else expected.transpose(1, 2, 0))
        assert np.all(canvas[3, :] == 1)  # the white gap between rows


def test_compare_figure_draws_each_models_tables():
    Z, labels = _filaments(n=600)
    models = {"filaments": _tables(Z, labels),
              "gaussian": _tables(np.random.default_rng(15).standard_normal((600, 8)), labels)}
    fig = figures.plot_compare(models, title="two")
    radius, axes, pca, neighbours = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["radius", "centre and width per axis", "PCA", "nearest neighbours"]
    for line, t in zip(pca.get_lines(), models.values()):
        np.testing.assert_array_equal(line.get_ydata(), t["pca_variance"]["cumulative"])
    names = [text.get_text() for text in neighbours.get_legend().get_texts()]
    assert names[0].startswith("filaments: ID TwoNN") and names[1].startswith("gaussian: ID TwoNN")


# ------------------------------------------------------------------------------------- jobs
def test_jobs_write_the_tables_maps_and_figures(tmp_path):
    Z, labels = _filaments(n=400)
    latents = tmp_path / "latents.parquet"
    write_parquet(_latents(Z, labels), latents, metadata={"dataset": "toy", "model": "m", "arch": "conv_ae",
                                                          "config_hash": "x"})
    cfg = _config(**SMALL)
    expected = model_tables(Z.astype(np.float32), _latents(Z, labels)[ID_COLUMNS], cfg)  # as stored
    seeded = {"seed": 0, "numeric_threads": 1}
    out = {name: tmp_path / "geometry" / f"{name}.parquet" for name in expected}
    jobs.geometry_tables(Job(input=Files([str(latents)]), output=Files(list(out.values()))),
                         names=list(out), **geometry_table_settings(cfg), **seeded)
    for name, path in out.items():
        pd.testing.assert_frame_equal(read_parquet(path), expected[name])
        assert read_parquet_metadata(path) == {"dataset": "toy", "model": "m", "arch": "conv_ae"}

    tsne = tmp_path / "geometry" / "tsne_pca2_n200.parquet"
    jobs.geometry_tsne(Job(input=Files([str(latents)]), output=Files([tsne]), wildcards=Files(space="pca2", n="200")),
                       settings=projection_settings(TSNE), **seeded)
    assert len(read_parquet(tsne)) == 200
    assert read_parquet_metadata(tsne)["method"] == "tsne"

    figs = {what: [tmp_path / "figures" / f"geometry_{what}.png"]
            for what in ("tsne", "axes", "radius", "pca", "planes", "neighbours")}
    jobs.plot_geometry(Job(input=Files({**out, "tsne_0": tsne}), output=Files(figs),
                           wildcards=Files(dataset="toy", model="m")), axes=geometry_figure_axes(cfg))
    for (path,) in figs.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------- workflow
@pytest.mark.slow
def test_workflow_geometry_outputs(e2e_run, tmp_path):
    res = e2e_run / "results"
    for model in ("conv_ae", "conv_vae"):
        d = res / "digits" / model / "geometry"
        summary = read_parquet(d / "summary.parquet")
        assert {"radius_peak", "twonn_dimension", "components_for_0.95"} <= set(summary["metric"])
        tsne = read_parquet(d / "tsne_raw_n300.parquet")
        assert len(tsne) == 300 and tsne["sample_id"].is_unique
        # the workflow's figure is exactly what its tables draw
        redrawn = tmp_path / model / "geometry_random_points.png"
        jobs.plot_geometry_random_points(Job(
            input=Files(images=d / "random_points.npz", scores=d / "random_points.parquet"),
            output=Files(figure=[redrawn]), wildcards=Files(dataset="digits", model=model)))
        figure = res / "figures" / "digits" / model / "geometry_random_points.png"
        assert figure.read_bytes() == redrawn.read_bytes()
        scores = read_parquet(d / "random_points.parquet")
        assert set(scores["set"]) == {"standard_normal", "fitted_gaussian", "bounding_box", "offsets", "real"}
        assert {"confidence", "predicted"} <= set(scores.columns)  # config/test.yaml names a classifier
    assert set(read_parquet(res / "digits" / "geometry_compare.parquet")["model"]) == {"conv_ae", "conv_vae"}
