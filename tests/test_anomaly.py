"""The anomaly stage's compute and figures: scores against direct computations, the evaluation
against sklearn and hand counts, the PyOD baselines, and every figure drawn on synthetic tables.

Set LATENT_ATLAS_FIGURES to a folder to keep the figures for a look (default: the test's tmp_path).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from latent_atlas.anomaly import baselines, figures, scores
from latent_atlas.models.networks import build_model


def _images(n: int, shape=(1, 4, 4), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def _in_batches(x: np.ndarray, size: int):
    return (x[i:i + size] for i in range(0, len(x), size))


def _model(arch: str = "dense_ae", seed: int = 0):
    torch.manual_seed(seed)
    return build_model(arch, (1, 4, 4), 2, {"hidden": [8], "latent_dim": 3}).eval()


class _Halving(torch.nn.Module):
    """encode = the input, decode = half of it: the residual is x / 2, exactly."""

    def encode(self, x):
        return x

    def decode(self, z):
        return z / 2


# --------------------------------------------------------------------------------------------
# Reconstruction scores
# --------------------------------------------------------------------------------------------

def test_mse_scores_and_kept_rows_match_a_direct_computation():
    model, x = _model(), _images(37)
    with torch.no_grad():
        x_hat = model(torch.from_numpy(x)).numpy()
    expected = ((x.astype(np.float64) - x_hat) ** 2).reshape(len(x), -1).mean(axis=1)
    got = scores.reconstruction_scores(model, _in_batches(x, 10), rows=[30, 5])
    np.testing.assert_allclose(got.score, expected, rtol=1e-5)
    assert got.score.shape == (37,) and got.score.dtype == np.float64
    assert got.rows.tolist() == [30, 5]
    np.testing.assert_array_equal(got.inputs, x[[30, 5]])
    np.testing.assert_allclose(got.reconstructions, x_hat[[30, 5]], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got.cells, (x[[30, 5]] - x_hat[[30, 5]]) ** 2, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(got.cells.reshape(2, -1).mean(axis=1), got.score[[30, 5]], rtol=1e-6)
    # the batching changes nothing but rounding
    np.testing.assert_allclose(scores.reconstruction_scores(model, _in_batches(x, 37)).score, got.score, rtol=1e-6)


def test_residual_scale_is_the_train_residual_rms_floored():
    x = _images(50, seed=1)
    x[:, 0, 0, 0] = 0.0  # residual always 0 there: its spread is floored
    s = scores.residual_scale(_Halving(), _in_batches(x, 7))
    expected = np.maximum(np.sqrt(((x.astype(np.float64) / 2) ** 2).mean(axis=0)), scores.SCALE_FLOOR)
    assert s.shape == (1, 4, 4) and s.dtype == np.float32
    np.testing.assert_allclose(s, expected, rtol=1e-6)
    assert s[0, 0, 0] == np.float32(scores.SCALE_FLOOR)
    np.testing.assert_allclose(scores.residual_scale(_Halving(), [x]), s, rtol=1e-6)

    test = _images(9, seed=2)
    got = scores.reconstruction_scores(_Halving(), [test], error="standardised", residual_scale=s, rows=[3])
    direct = ((test.astype(np.float64) / 2 / s) ** 2).reshape(9, -1).mean(axis=1)
    np.testing.assert_allclose(got.score, direct, rtol=1e-5)
    np.testing.assert_allclose(got.cells[0], (test[3] / 2 / s) ** 2, rtol=1e-5)


def test_reconstruction_scores_refuses_inconsistent_settings():
    model, x = _model(), _images(4)
    with pytest.raises(ValueError, match="anomaly.error"):
        scores.reconstruction_scores(model, [x], error="standardised")
    with pytest.raises(ValueError, match="anomaly.error"):
        scores.reconstruction_scores(model, [x], error="mse", residual_scale=np.ones((1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="anomaly.error"):
        scores.reconstruction_scores(model, [x], error="mae")
    with pytest.raises(ValueError, match="rows \\[4\\]"):
        scores.reconstruction_scores(model, [x], rows=[4])
    with pytest.raises(ValueError, match="residual_scale has shape"):
        scores.reconstruction_scores(model, [x], error="standardised", residual_scale=np.ones((4, 4), np.float32))


def _direct_kl(mean: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL(N(mean, exp(logvar)) || N(0, I)) per row, summed over dimensions (nats)."""
    var = np.exp(logvar)
    return 0.5 * (var + mean ** 2 - 1 - logvar).sum(axis=1)


@pytest.mark.parametrize("output", ["sigmoid", "linear"])
def test_negative_elbo_matches_a_direct_computation(output):
    model, x = _model("dense_vae", seed=3), _images(23, seed=4)
    if output == "linear":
        model.output = "linear"
        x = (x - 0.5) * 3  # standardised-like values outside [0, 1]
    with torch.no_grad():
        mean, logvar = (t.double().numpy() for t in model.encode_distribution(torch.from_numpy(x)))
        logits = model.decode_logits(torch.from_numpy(mean).float()).double().numpy()
    xd = x.astype(np.float64).reshape(len(x), -1)
    logits = logits.reshape(len(x), -1)
    if output == "sigmoid":
        p = 1 / (1 + np.exp(-logits))
        nll = -(xd * np.log(p) + (1 - xd) * np.log1p(-p)).sum(axis=1)
    else:
        nll = -norm.logpdf(xd, loc=logits, scale=1.0).sum(axis=1)
    expected = nll + _direct_kl(mean, logvar)
    got = scores.negative_elbo(model, _in_batches(x, 6))
    assert got.shape == (23,) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_negative_elbo_needs_a_vae():
    with pytest.raises(ValueError, match="needs a VAE"):
        scores.negative_elbo(_model("dense_ae"), [_images(2)])


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

def _mann_whitney_auc(y: np.ndarray, s: np.ndarray) -> float:
    """P(score of an anomaly > score of a normal) + 0.5 P(equal), by counting every pair."""
    a, b = s[y][:, None], s[~y][None, :]
    return float(((a > b).sum() + 0.5 * (a == b).sum()) / (a.size * b.size))


def test_roc_pr_areas_are_sklearns_and_curves_are_thinned():
    rng = np.random.default_rng(5)
    y = rng.random(5000) < 0.1
    s = np.round(rng.normal(size=5000) + 1.5 * y, 1)  # rounded: many ties
    result = scores.roc_pr(y, s, max_points=50)
    assert result.roc_auc == roc_auc_score(y, s)
    assert result.average_precision == average_precision_score(y, s)
    assert result.roc_auc == pytest.approx(_mann_whitney_auc(y, s), abs=1e-12)
    assert 2 <= len(result.fpr) <= 50 and len(result.fpr) == len(result.tpr)
    assert 2 <= len(result.recall) <= 50 and len(result.recall) == len(result.precision)
    assert (result.fpr[0], result.tpr[0], result.fpr[-1], result.tpr[-1]) == (0, 0, 1, 1)
    assert result.recall[0] == 1 and result.recall[-1] == 0
    assert np.all(np.diff(result.fpr) >= 0)
    # the thinned curve still has (about) the full area
    assert np.trapezoid(result.tpr, result.fpr) == pytest.approx(result.roc_auc, abs=0.02)

    table = scores.curve_table("score", "raw", result)
    assert list(table.columns) == ["method", "input", "curve", "x", "y"]
    assert (table["curve"] == "roc").sum() == len(result.fpr) and (table["curve"] == "pr").sum() == len(result.recall)


def test_roc_pr_needs_both_classes_and_finite_scores():
    with pytest.raises(ValueError, match="normal and anomalous"):
        scores.roc_pr(np.zeros(4, bool), np.arange(4.0))
    with pytest.raises(ValueError, match="not finite"):
        scores.roc_pr(np.array([True, False]), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="bool array"):
        scores.roc_pr(np.array([1, 0]), np.array([1.0, 0.0]))


@pytest.mark.parametrize("n", [1, 7, 20, 100, 1001])
@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.29, 0.5, 0.9])
def test_threshold_at_fpr_allows_at_most_that_share_above(n, fpr):
    s = np.random.default_rng(n).permutation(np.arange(n, dtype=np.float64))  # distinct
    t = scores.threshold_at_fpr(s, fpr)
    allowed = math.floor(round(fpr * n, 9))
    assert t in s
    assert int((s > t).sum()) == allowed  # distinct scores: exactly the allowance


def test_threshold_at_fpr_on_ties_and_bad_input():
    assert scores.threshold_at_fpr(np.ones(50), 0.1) == 1.0  # nothing above: at most 10% holds
    assert (np.array([0, 1, 1, 1, 2.0]) > scores.threshold_at_fpr(np.array([0, 1, 1, 1, 2.0]), 0.45)).sum() == 1
    assert (np.arange(100.0) > scores.threshold_at_fpr(np.arange(100.0), 0.29)).sum() == 29
    with pytest.raises(ValueError, match="anomaly.fpr"):
        scores.threshold_at_fpr(np.ones(3), 1.0)
    with pytest.raises(ValueError, match="none"):
        scores.threshold_at_fpr(np.array([]), 0.1)


def test_confusion_at_counts_scores_above_the_threshold():
    y = np.array([True, True, False, False, False])
    s = np.array([3.0, 1.0, 2.0, 0.0, 1.0])
    c = scores.confusion_at(y, s, 1.0)  # flagged: 3 (anomaly), 2 (normal); 1.0 is not above
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (1, 1, 2, 1)
    assert (c["fpr"], c["tpr"], c["precision"]) == (1 / 3, 0.5, 0.5)
    assert math.isnan(scores.confusion_at(y, s, 10.0)["precision"])


def test_top_k_breaks_ties_by_sample_order():
    s = np.array([1.0, 3.0, 3.0, 2.0, 3.0, np.nan])
    assert scores.top_k(s, 3).tolist() == [1, 2, 4]
    assert scores.top_k(s, 4).tolist() == [1, 2, 4, 3]
    assert scores.top_k(s, 10).tolist() == [1, 2, 4, 3, 0, 5]


# --------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------

def _outlier_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(400, 6)).astype(np.float32)
    x = rng.normal(size=(150, 6)).astype(np.float32)
    outliers = np.array([3, 40, 77, 120, 149])
    x[outliers] += np.float32(8) * rng.choice([-1, 1], size=(5, 6)).astype(np.float32)
    return train, x, outliers


def test_every_baseline_ranks_far_outliers_highest():
    train, x, outliers = _outlier_data()
    got = baselines.baseline_scores(train, x, methods=baselines.METHODS, seed=0, max_fit=300, k_neighbors=5)
    assert set(got) == set(baselines.METHODS)
    for method, s in got.items():
        assert s.shape == (150,) and s.dtype == np.float64, method
        assert sorted(np.argsort(-s)[:5].tolist()) == outliers.tolist(), method


def test_baselines_are_seeded_and_chunking_changes_nothing():
    train, x, _ = _outlier_data(1)
    settings = dict(methods=baselines.METHODS, max_fit=250, k_neighbors=3)
    a = baselines.baseline_scores(train, x, seed=4, **settings)
    b = baselines.baseline_scores(train, x, seed=4, **settings)
    chunked = baselines.baseline_scores(train, x, seed=4, chunk=7, **settings)
    other = baselines.baseline_scores(train, x, seed=5, **settings)
    for method in baselines.METHODS:
        np.testing.assert_array_equal(a[method], b[method])
        np.testing.assert_array_equal(a[method], chunked[method])
        assert not np.array_equal(a[method], other[method]), method  # the seed picks the fitted rows
    assert len(baselines.fit_rows(400, 250, 4)) == 250
    np.testing.assert_array_equal(baselines.fit_rows(400, 250, 4), baselines.fit_rows(400, 250, 4))
    np.testing.assert_array_equal(baselines.fit_rows(40, 250, 4), np.arange(40))


def test_ecod_is_pyods_score_of_each_row_alone():
    from pyod.models.ecod import ECOD

    rng = np.random.default_rng(2)
    # skewed right, skewed left, symmetric and constant columns; some scored rows are fitted rows
    train = np.concatenate([rng.exponential(size=(300, 3)), -rng.exponential(size=(300, 2)),
                            rng.normal(size=(300, 2)), np.zeros((300, 1))], axis=1).astype(np.float32)
    x = np.concatenate([rng.exponential(size=(40, 3)), -rng.exponential(size=(40, 2)),
                        rng.normal(size=(40, 2)), rng.integers(0, 2, (40, 1))], axis=1).astype(np.float32)
    x[:5] = train[:5]
    pyod = ECOD().fit(train)
    expected = np.array([pyod.decision_function(x[i:i + 1])[0] for i in range(len(x))])
    np.testing.assert_allclose(baselines.ECODScorer(train).score(x), expected, rtol=1e-12, atol=1e-12)


def test_baselines_refuse_bad_settings():
    train, x, _ = _outlier_data()
    with pytest.raises(ValueError, match="anomaly.baselines.k"):
        baselines.baseline_scores(train[:4], x, methods=["knn"], seed=0, max_fit=10, k_neighbors=4)
    with pytest.raises(ValueError, match="unknown method"):
        baselines.baseline_scores(train, x, methods=["lof"], seed=0, max_fit=10, k_neighbors=4)
    with pytest.raises(ValueError, match="matrices"):
        baselines.baseline_scores(train, x[:, :3], methods=["ecod"], seed=0, max_fit=10, k_neighbors=4)


# --------------------------------------------------------------------------------------------
# Figures, on synthetic tables built as the jobs build them
# --------------------------------------------------------------------------------------------

@pytest.fixture
def figure_dir(tmp_path) -> Path:
    folder = Path(os.environ.get("LATENT_ATLAS_FIGURES", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _tables(seed: int = 0, labelled: bool = True):
    """scores, summary, curves of 3 classes (the third anomalous), a model score, a negative ELBO
    and two baselines on raw inputs and latents."""
    rng = np.random.default_rng(seed)
    n = 600
    label = rng.integers(0, 3, n)
    is_anomaly = (label == 2) if labelled else np.zeros(n, bool)
    split = np.where(rng.random(n) < 0.5, "train", "test")
    table = pd.DataFrame({"sample_id": np.arange(n), "split": split, "label": label,
                          "label_name": np.array(["walking", "sitting", "falling"])[label], "is_anomaly": is_anomaly})
    table["score"] = np.exp(rng.normal(-4 + 1.5 * is_anomaly, 0.7))
    table["neg_elbo"] = 300 + 40 * is_anomaly + rng.normal(0, 25, n)
    for method, strength in (("iforest", 0.8), ("ecod", 0.4)):
        for input in ("raw", "latent"):
            table[f"{method}_{input}"] = rng.normal(strength * is_anomaly * (2 if input == "latent" else 1), 1)
    rows, curves = [], []
    test, train_normal = table[table["split"] == "test"], table[(table["split"] == "train") & ~table["is_anomaly"]]
    if labelled:
        for method, input in [("score", "raw"), ("neg_elbo", "raw"), ("iforest", "raw"), ("iforest", "latent"),
                              ("ecod", "raw"), ("ecod", "latent")]:
            column = figures.score_column(method, input)
            result = scores.roc_pr(test["is_anomaly"].to_numpy(), test[column].to_numpy())
            t = scores.threshold_at_fpr(train_normal[column].to_numpy(), 0.05)
            rows.append({"method": method, "input": input, "roc_auc": result.roc_auc,
                         "average_precision": result.average_precision, "fpr_target": 0.05, "threshold": t,
                         **scores.confusion_at(test["is_anomaly"].to_numpy(), test[column].to_numpy(), t)})
            curves.append(scores.curve_table(method, input, result))
    summary = pd.DataFrame(rows, columns=["method", "input", "roc_auc", "average_precision", "fpr_target",
                                          "threshold", "tp", "fp", "tn", "fn", "fpr", "tpr", "precision"])
    curves = pd.concat(curves) if curves else pd.DataFrame(columns=["method", "input", "curve", "x", "y"])
    return table, summary, curves


def _top(table: pd.DataFrame, k: int) -> pd.DataFrame:
    test = table[table["split"] == "test"].reset_index(drop=True)
    picked = test.iloc[scores.top_k(test["score"].to_numpy(), k)]
    return pd.DataFrame({"rank": np.arange(1, len(picked) + 1), "sample_id": picked["sample_id"].to_numpy(),
                         "label_name": picked["label_name"].to_numpy(), "is_anomaly": picked["is_anomaly"].to_numpy(),
                         "score": picked["score"].to_numpy()})


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def _save(fig, *paths) -> None:
    from latent_atlas.plotting import save_figure

    save_figure(fig, [str(p) for p in paths])


@pytest.fixture(autouse=True)
def _style():
    from latent_atlas.plotting import use_style

    use_style()


def test_curve_distribution_and_summary_figures(figure_dir):
    table, summary, curves = _tables()
    _save(figures.plot_curves(summary, curves, "toy: anomalies"), figure_dir / "curves.png", figure_dir / "curves.pdf")
    _save(figures.plot_distribution(table, summary, error="mse"), figure_dir / "distribution.png")
    _save(figures.plot_distribution(table, summary, error="mse", column="neg_elbo"),
          figure_dir / "distribution_neg_elbo.png")
    _save(figures.plot_summary(summary), figure_dir / "summary.png")
    for name in ("curves.png", "distribution.png", "distribution_neg_elbo.png", "summary.png"):
        assert _is_png(figure_dir / name), name
    assert (figure_dir / "curves.pdf").stat().st_size > 0
    first = (figure_dir / "curves.png").read_bytes()
    _save(figures.plot_curves(summary, curves, "toy: anomalies"), figure_dir / "curves.png")
    assert (figure_dir / "curves.png").read_bytes() == first  # deterministic


def test_figures_without_labelled_anomalies(figure_dir):
    table, summary, curves = _tables(labelled=False)
    assert summary.empty
    _save(figures.plot_curves(summary, curves), figure_dir / "curves_unlabelled.png")
    _save(figures.plot_summary(summary), figure_dir / "summary_unlabelled.png")
    _save(figures.plot_distribution(table, summary, error="standardised"), figure_dir / "distribution_unlabelled.png")
    for name in ("curves_unlabelled.png", "summary_unlabelled.png", "distribution_unlabelled.png"):
        assert _is_png(figure_dir / name), name


def test_top_figure_of_images_series_and_tables(figure_dir):
    table, _, _ = _tables()
    top = _top(table, 8)
    rng = np.random.default_rng(0)
    images = rng.random((8, 1, 12, 12)).astype(np.float32)
    recon = np.clip(images + rng.normal(0, 0.2, images.shape), 0, 1).astype(np.float32)
    _save(figures.plot_top(top, (images - recon) ** 2, images, recon, "image", "mse"), figure_dir / "top_image.png")
    rgb = rng.random((8, 3, 12, 12)).astype(np.float32)
    _save(figures.plot_top(top, rgb ** 2, rgb, rgb / 2, "image", "mse"), figure_dir / "top_rgb.png")

    channels = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    t = np.arange(128) / 50.0
    windows = np.sin(2 * np.pi * t)[None, None, None, :] * rng.normal(1, 0.3, (8, 1, 6, 1))
    error = (rng.normal(0, 0.3, windows.shape) + (t > 1.5) * (np.arange(6)[:, None] == 2)) ** 2
    _save(figures.plot_top(top, error.astype(np.float32), windows, windows, "series", "standardised", names=channels,
                           sample_rate=50.0), figure_dir / "top_series.png")

    features = [f"feature_{i}" for i in range(24)]
    rows = rng.normal(size=(8, 1, 1, 24)).astype(np.float32)
    _save(figures.plot_top(top, rng.exponential(size=(8, 1, 1, 24)).astype(np.float32), rows, rows, "table", "mse",
                           names=features), figure_dir / "top_table.png")
    for name in ("top_image.png", "top_rgb.png", "top_series.png", "top_table.png"):
        assert _is_png(figure_dir / name), name

    with pytest.raises(ValueError, match="channel names"):
        figures.plot_top(top, error.astype(np.float32), windows, windows, "series", "mse", names=channels[:3],
                         sample_rate=50.0)
    with pytest.raises(ValueError, match="feature names"):
        figures.plot_top(top, rows, rows, rows, "table", "mse")
    with pytest.raises(ValueError, match="unknown dataset kind"):
        figures.plot_top(top, rows, rows, rows, "audio", "mse")


def test_distribution_splits_a_class_that_holds_normals_and_anomalies():
    """Normal samples named by an attribute: a class then holds both, and gets a violin of each;
    classes that are all normal or all anomalous keep one row each."""
    table, summary, _ = _tables()
    plain = _tables()[0]
    one_class = table.loc[~table["is_anomaly"], "label"].iloc[0]
    flip = (table["label"] == one_class).to_numpy() & (np.arange(len(table)) % 2 == 0)
    table = table.assign(is_anomaly=table["is_anomaly"].to_numpy() | flip)
    fig = figures.plot_distribution(table, summary, error="mse")
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    name = str(table.loc[table["label"] == one_class, "label_name"].iat[0])
    assert f"{name} (normal)" in ticks and f"{name} (anomaly)" in ticks
    assert len(ticks) == plain["label"].nunique() + 1
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "normal" in legend and "anomaly" in legend
    figures.plt.close(fig)
    fig = figures.plot_distribution(plain, summary, error="mse")
    assert len(fig.axes[0].get_yticklabels()) == plain["label"].nunique()
    figures.plt.close(fig)
