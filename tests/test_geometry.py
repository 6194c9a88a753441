"""Latent geometry: library functions on synthetic clouds, then the workflow's outputs."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from latent_atlas import geometry as g


def _latents(Z, labels=None):
    n = len(Z)
    labels = np.arange(n) % 3 if labels is None else labels
    df = pd.DataFrame({"sample_id": np.arange(n, dtype=np.int64), "split": "train",
                       "label": labels.astype(np.int64), "label_name": [f"c{x}" for x in labels]})
    return pd.concat([df, pd.DataFrame(Z.astype(np.float32), columns=[f"z{i}" for i in range(Z.shape[1])])],
                     axis=1)


def test_radius_peak_of_gaussian_matches_chi_mode():
    d = 32
    Z = np.random.default_rng(0).standard_normal((20000, d))
    hist, summary = g.radius_tables(Z, (0.5, 0.05))
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
    hist = g.axis_histograms(Z, 0.25)
    summary = g.axis_summary(hist, Z)
    flagged = summary[summary["off_centre"]]["axis"].tolist()
    wide = summary[summary["unusual_width"]]["axis"].tolist()
    assert flagged == [11] and wide == [11]
    row = summary.set_index("axis").loc[11]
    assert row["mode"] == pytest.approx(5.0, abs=1.0)
    assert row["fwhm"] == pytest.approx(8.0, rel=0.25)
    assert summary.set_index("axis").loc[3, "fwhm"] == pytest.approx(2.355, rel=0.1)
    assert g.most_off_centre_axes(summary, 1) == [11]


def test_pca_variance_sums_to_one_and_threshold_counts():
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((500, 6)) * np.array([5, 3, 1, 0.5, 0.2, 0.1])
    variance, loadings, scores = g.pca_tables(Z, _latents(Z)[list(g.ID_COLUMNS)])
    assert variance["ratio"].sum() == pytest.approx(1.0)
    assert variance["cumulative"].iloc[-1] == pytest.approx(1.0)
    assert variance["components_for_0.5"].iloc[0] == 1
    assert variance["components_for_0.95"].iloc[0] == 2
    assert loadings.shape == (6, 7) and len(scores) == 500
    assert np.allclose(np.linalg.norm(loadings.filter(like="z").to_numpy(), axis=1), 1.0)


def test_zoom_windows_contain_exactly_the_points_inside():
    xs, ys = np.meshgrid(np.arange(-5, 6), np.arange(-5, 6))
    xy = np.column_stack([xs.ravel(), ys.ravel()]).astype(float)  # integer grid 11 x 11
    assert g.window_mask(xy, (0, 0), None).all()
    m = g.window_mask(xy, (0, 0), 2.0)  # |x|, |y| <= 1: a 3 x 3 block
    assert m.sum() == 9 and np.all(np.abs(xy[m]) <= 1) and np.all(np.abs(xy[~m]).max(axis=1) > 1)
    m = g.window_mask(xy, (2.5, 0), 1.0)  # x in [2, 3], y = 0
    assert sorted(map(tuple, xy[m])) == [(2.0, 0.0), (3.0, 0.0)]
    # occupancy of a full grid window: every cell of a 3 x 3 grid over the 3 x 3 block is hit
    assert g.occupied_fraction(xy, np.array([0.0, 0.0]), 3.0, 3) == 1.0


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
    assert g.twonn_dimension(curve) == pytest.approx(1.0, abs=0.2)
    assert g.mle_dimension(curve, 10) == pytest.approx(1.0, abs=0.2)
    assert g.twonn_dimension(gauss) == pytest.approx(5.0, abs=0.6)
    assert g.mle_dimension(gauss, 20) == pytest.approx(5.0, abs=0.6)
    local = g.local_mle_dimension(gauss, 20)
    assert local.shape == (2000,) and np.nanmedian(local) == pytest.approx(5.0, abs=1.0)


def test_geometry_tables_on_clustered_cloud_differ_from_gaussian():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 1500)
    # three thin filaments (1-D segments) in 8-D: the "filaments around voids" picture
    Z = (rng.normal(scale=3, size=(3, 8))[labels] + rng.uniform(-4, 4, (1500, 1)) * rng.normal(size=(3, 8))[labels]
         + 0.01 * rng.standard_normal((1500, 8)))
    cfg = {"axes": {"bin_width": 0.25, "off_centre_ratio": 0.5, "width_ratio": 2.0},
           "radius": {"bin_widths": [0.5, 0.05]}, "pca": {"thresholds": [0.5, 0.85, 0.95]},
           "planes": {"pca_pairs": [[1, 2], [1, 18]], "axis_pairs": None, "windows": [None, 5, 1],
                      "centre": "median", "occupancy_grid": 10},
           "neighbours": {"n_samples": 400, "k_local": 10}}
    t = g.geometry_tables(_latents(Z, labels), cfg)
    assert set(t["planes"]["plane"].unique()) == {"PC1-PC2"} | {
        f"z{a}-z{b}" for a, b in [g.most_off_centre_axes(t["axis_summary"], 2)]}
    assert len(t["zoom"]) == 2 * 3
    summary = t["summary"].set_index("metric")
    # filaments: much shorter nearest-neighbour distances and lower dimension than the Gaussian
    assert summary.loc["nn_distance_median", "ratio"] < 0.5
    assert summary.loc["twonn_dimension", "latents"] < 2 < summary.loc["twonn_dimension", "gaussian"]
    assert (t["zoom"]["occupied_fraction"] <= t["zoom"]["gaussian_occupied_fraction"]).all()
    again = g.geometry_tables(_latents(Z, labels), cfg)
    for name in t:
        pd.testing.assert_frame_equal(t[name], again[name])


def test_projection_table_rows_and_determinism():
    rng = np.random.default_rng(5)
    df = _latents(rng.standard_normal((400, 6)))
    a = g.projection_table(df, "tsne", {"perplexity": 10, "n_iter": 100, "sample_sizes": [200]}, "pca4", 200)
    b = g.projection_table(df, "tsne", {"perplexity": 10, "n_iter": 100, "sample_sizes": [200]}, "pca4", 200)
    assert len(a) == 200 and a["sample_id"].is_unique
    pd.testing.assert_frame_equal(a, b)
    capped = g.projection_table(df, "pca", {}, "raw", 10_000)
    assert len(capped) == 400
    with pytest.raises(ValueError, match="raw"):
        g.parse_space("pcaX")


def test_random_latents_sets():
    Z = np.random.default_rng(6).normal(loc=3, size=(300, 4))
    sets = g.random_latents(Z, 50, offset_scale=0.1)
    assert set(sets) == {"standard_normal", "fitted_gaussian", "bounding_box", "offsets", "real"}
    assert all(v.shape == (50, 4) for v in sets.values())
    box = sets["bounding_box"]
    assert np.all(box >= Z.min(axis=0) - 1e-6) and np.all(box <= Z.max(axis=0) + 1e-6)
    assert np.abs(sets["offsets"] - sets["real"]).max() < 1.0
    ref = np.random.default_rng(7).uniform(size=(20, 1, 4, 4)).astype(np.float32)
    assert np.allclose(g.nearest_image_distance(ref[:5], ref), 0.0, atol=1e-3)


@pytest.mark.slow
def test_workflow_geometry_outputs(e2e_run):
    from latent_atlas.io import read_parquet

    res = e2e_run / "results"
    for model in ("conv_ae", "conv_vae"):
        d = res / "digits" / model / "geometry"
        summary = read_parquet(d / "summary.parquet")
        assert {"radius_peak", "twonn_dimension", "components_for_0.95"} <= set(summary["metric"])
        tsne = read_parquet(d / "tsne_raw_n300.parquet")
        assert len(tsne) == 300 and tsne["sample_id"].is_unique
        assert (res / "figures" / "digits" / model / "geometry_planes.png").stat().st_size > 0
        assert (res / "figures" / "digits" / model / "geometry_random_points.png").exists()
    assert set(read_parquet(res / "digits" / "geometry_compare.parquet")["model"]) == {"conv_ae", "conv_vae"}
