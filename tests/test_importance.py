"""Permutation importance engine: closed forms, invariances, fast paths, figures, workflow outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from latent_atlas import importance as imp
from latent_atlas import importance_figures as impfig
from latent_atlas import importance_plan


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny forward passes: one thread avoids thread start-up and contention on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _images(n=120, h=6, w=5, c=1, seed=0, sparsity=0.4):
    """Images in [0, 1] with many exact zeros (so unchanged rows occur) and one constant pixel."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, c, h, w)) * (rng.random((n, c, h, w)) > sparsity)
    x[:, :, 0, 0] = 0.25
    return x.astype(np.float32)


def _dense(sizes, act_last=False, seed=0):
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or act_last:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def _split(seq):
    return seq[1], nn.Sequential(*list(seq)[2:])


def _conv(c=1, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
                         nn.Flatten(), nn.LazyLinear(3)).eval()


# --------------------------------------------------------------------------------------------
def test_permutation_stream_depends_only_on_its_key():
    a = imp.permutation(7, 12, 3, 500)
    assert sorted(a) == list(range(500))
    assert np.array_equal(a, imp.permutation(7, 12, 3, 500))
    assert not np.array_equal(a, imp.permutation(7, 12, 2, 500))
    assert not np.array_equal(a, imp.permutation(7, 13, 3, 500))
    assert not np.array_equal(a, imp.permutation(8, 12, 3, 500))
    assert not np.array_equal(a, imp.permutation(7, 12, 3, 500, stream=imp.LATENT_STREAM))


def test_linear_encoder_closed_form_and_sign():
    """z = W x: z'_j - z_j = W_ji (x_perm - x), so V_ij = W_ji^2 mean_n (x_perm(n) - x_n)^2.

    Over uniformly random permutations perm(n) is uniform over all N positions, so
    E[(x_perm(n) - x_n)^2] = (1/N) sum_m (x_m - x_n)^2 and, averaged over n,
    E[V_ij] = W_ji^2 (1/N^2) sum_n sum_m (x_m - x_n)^2 = 2 W_ji^2 Var_pop(x_i)
            = 2 W_ji^2 s_i^2 (N - 1) / N   (s^2: the ddof=1 sample variance; the finite-N factor).
    With in-sample uncorrelated pixels the least-squares slope of z_j on x_i is exactly W_ji.
    """
    n, p, d = 40, 6, 3
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(np.column_stack([np.ones(n), rng.standard_normal((n, p))]))
    cols = q[:, 1:]  # centred, mutually orthogonal columns: in-sample uncorrelated pixels
    x = 0.5 + 0.4 * cols / np.abs(cols).max()
    images = x.reshape(n, 1, 2, 3).astype(np.float32)
    weight = rng.choice([-1.0, 1.0], size=(d, p)) * rng.uniform(0.5, 2.0, size=(d, p))
    lin = nn.Linear(p, d, bias=True)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
    enc = nn.Sequential(nn.Flatten(), lin).eval()
    n_perm = 3000
    res = imp.pixel_importance(enc, images, n_perm=n_perm, seed=3, split=(lin, nn.Identity()))
    assert res.method == "kernel"
    xi = images.reshape(n, p).astype(np.float64)
    # Exact per permutation.
    for i in (0, 4):
        for k in (0, 17):
            perm = imp.permutation(3, i, k, n)
            expected = weight[:, i] ** 2 * np.mean((xi[perm, i] - xi[:, i]) ** 2)
            np.testing.assert_allclose(res.per_permutation[i, k], expected, rtol=1e-5)
    # In expectation (3000 permutations: the mean is within a few percent).
    expected = 2 * weight.T ** 2 * xi.var(axis=0, ddof=1)[:, None] * (n - 1) / n
    np.testing.assert_allclose(res.importance, expected, rtol=0.06)
    # Direction: slope is W_ji exactly, sign is sign(W_ji).
    np.testing.assert_allclose(res.slope, weight.T, rtol=1e-4)
    assert np.array_equal(res.sign, np.sign(weight.T).astype(np.int8))
    np.testing.assert_allclose(res.directional, np.sign(weight.T) * res.importance)
    # The threshold applies to the slope (not to its sign): |W_ji| <= 1 loses its sign.
    thr = imp.pixel_importance(enc, images, n_perm=1, split=(lin, nn.Identity()), sign_threshold=1.0)
    assert np.array_equal(thr.sign, np.where(np.abs(weight.T) > 1.0, np.sign(weight.T), 0))
    assert (thr.sign == 0).any() and (thr.sign != 0).any()


def test_slope_and_sign_validates_threshold():
    with pytest.raises(ValueError, match="threshold"):
        imp.slope_and_sign(np.zeros((3, 1)), np.zeros((3, 1)), threshold=-1)


@pytest.mark.parametrize("kind", ["linear", "relu", "relu_linear", "relu_linear_relu", "deep", "conv",
                                  "rgb_dense", "rgb_conv", "rgb_linear"])
def test_fast_paths_equal_naive(kind):
    c = 3 if kind.startswith("rgb") else 1
    x = _images(n=90, c=c)
    p = x[0].size
    model = {
        "linear": lambda: _dense([p, 4]),
        "relu": lambda: _dense([p, 4], act_last=True),
        "relu_linear": lambda: _dense([p, 7, 3]),
        "relu_linear_relu": lambda: _dense([p, 7, 3], act_last=True),
        "deep": lambda: _dense([p, 9, 7, 5, 3]),
        "conv": lambda: _conv(),
        "rgb_dense": lambda: _dense([p, 6, 3]),
        "rgb_conv": lambda: _conv(c=3),
        "rgb_linear": lambda: _dense([p, 4]),
    }[kind]()
    with torch.no_grad():
        model(torch.as_tensor(x[:2]))  # materialise lazy layers
    dense = "conv" not in kind
    split = _split(model) if dense else None
    ref = imp.pixel_importance(model, x, n_perm=3, seed=5, method="naive")
    methods = ["rows", "auto"] + (["rank1"] if dense else [])
    if dense and imp.kernel_plan(split[1]) is not None:
        methods.append("kernel")
    assert ref.importance.max() > 0
    for method in methods:
        got = imp.pixel_importance(model, x, n_perm=3, seed=5, method=method, split=split,
                                   batch_size=37)
        np.testing.assert_allclose(got.per_permutation, ref.per_permutation, rtol=2e-4,
                                   atol=1e-7 * ref.per_permutation.max(), err_msg=method)
        np.testing.assert_array_equal(got.sign, ref.sign)
    if kind == "deep":
        assert imp.kernel_plan(split[1]) is None
        assert imp.pixel_importance(model, x, n_perm=1, split=split).method == "rank1"


@pytest.mark.parametrize("c", [1, 3])
def test_linear_kernel_equals_the_gram_formula_on_the_same_permutations(c):
    """The identity-rest kernel: mean_n (sum_ch dx_ch w_chj)^2 over the pixel's seeded permutation."""
    rng = np.random.default_rng(3)
    n_pix, n, d = 5, 200, 4
    cols = np.ascontiguousarray(rng.integers(0, 4, size=(n_pix, c, n)) / 3.0)
    wcols = rng.normal(size=(n_pix, c, d))
    pixels = np.arange(10, 10 + n_pix, dtype=np.int64)
    fast = np.zeros((n_pix, 3, d))
    imp._kernel_linear(cols, wcols, 7, pixels, 3, fast)
    expected = np.zeros_like(fast)
    perm = np.empty(n, dtype=np.int64)
    for p in range(n_pix):
        for k in range(3):
            imp._fill_permutation(perm, 7, 1, pixels[p], k)
            dz = (cols[p][:, perm] - cols[p]).T @ wcols[p]  # (n, d)
            expected[p, k] = (dz ** 2).mean(axis=0)
    assert fast.max() > 0
    np.testing.assert_allclose(fast, expected, rtol=1e-12)


def test_shard_and_batch_invariance():
    """13 blocks give the same table as 1 block; batch size does not matter."""
    x = _images(n=80, h=8, w=8)
    enc = _dense([64, 5], act_last=True)
    deep = _dense([64, 6, 4])
    for model, method in ((enc, "kernel"), (deep, "rank1"), (deep, "rows")):
        whole = imp.pixel_frame(imp.pixel_importance(model, x, n_perm=2, seed=1,
                                                     split=_split(model), method=method))
        blocks = imp.pixel_blocks(64, 5)
        assert len(blocks) == 13 == importance_plan.n_blocks(64, 5)
        parts = pd.concat([
            imp.pixel_frame(imp.pixel_importance(model, x, pixels=b, n_perm=2, seed=1,
                                                 split=_split(model), method=method,
                                                 batch_size=[7, 1000][i % 2]))
            for i, b in enumerate(blocks)], ignore_index=True)
        if method == "kernel":  # per-pair float64 sums: bit-identical
            pd.testing.assert_frame_equal(whole, parts)
        else:  # float32 forward passes of differently composed batches: last-bit differences
            assert (whole["output"] == parts["output"]).all()
            for col in whole.columns.drop("output"):
                tol = 1e-6 * np.abs(whole[col]).max() if col != "slope" else 1e-6
                np.testing.assert_allclose(parts[col], whole[col], rtol=1e-5, atol=tol, err_msg=col)


def test_constant_pixels_get_zero():
    x = _images(n=60)
    x[:, :, 2, 3] = 0.0
    enc = _dense([30, 4], act_last=True)
    for method in ("naive", "kernel", "rows"):
        res = imp.pixel_importance(enc, x, n_perm=2, split=_split(enc), method=method)
        for pix in (0, 2 * 5 + 3):
            assert np.all(res.importance[pix] == 0) and np.all(res.std[pix] == 0)
            assert np.all(res.sign[pix] == 0) and np.all(res.slope[pix] == 0)
        assert res.importance.sum() > 0


def test_latent_dimension_the_decoder_ignores_gets_zero():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((90, 4)).astype(np.float32)
    labels = np.repeat([0, 1, 2], 30)
    torch.manual_seed(0)
    dec = nn.Sequential(nn.Linear(4, 12), nn.Sigmoid())
    with torch.no_grad():
        dec[0].weight[:, 2] = 0
    res = imp.latent_importance(dec, z, labels, n_perm=3, seed=0, batch_size=50)
    assert res.importance.shape == (3, 4)
    assert np.all(res.importance[:, 2] == 0) and np.all(res.std[:, 2] == 0)
    assert np.all(res.importance[:, [0, 1, 3]] > 0)
    again = imp.latent_importance(dec, z, labels, n_perm=3, seed=0, batch_size=7)
    np.testing.assert_allclose(again.importance, res.importance, rtol=1e-6)
    frame = imp.latent_frame(res, ["a", "b", "c"])
    assert list(frame.columns[:5]) == ["class", "class_name", "dim", "importance", "std"]
    assert set(frame.loc[frame["dim"] == 2, "rank"]) == {4}


def test_confidence_interval_and_single_permutation():
    vals = np.array([[[1.0], [2.0], [3.0], [4.0]]])
    mean, std, lo, hi = imp.summarise_permutations(vals, 0.95)
    assert mean[0, 0] == 2.5 and np.isclose(std[0, 0], np.std([1, 2, 3, 4], ddof=1))
    assert lo[0, 0] < 2.5 < hi[0, 0]
    mean, std, lo, hi = imp.summarise_permutations(vals[:, :1], 0.95)
    assert std[0, 0] == 0 and lo[0, 0] == hi[0, 0] == 1.0


def test_errors_name_the_problem():
    x = _images(n=10)
    enc = _dense([30, 2])
    with pytest.raises(ValueError, match="method"):
        imp.pixel_importance(enc, x, method="fast")
    with pytest.raises(ValueError, match="first_linear_split"):
        imp.pixel_importance(enc, x, method="rank1")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        imp.pixel_importance(enc, x[0])
    with pytest.raises(ValueError, match="pixels"):
        imp.pixel_importance(enc, x, pixels=[30])


def _frame_with_hot_pixel(h, w, r, c, d=2):
    rows, cols = np.divmod(np.arange(h * w), w)
    frame = pd.DataFrame({
        "pixel": np.repeat(np.arange(h * w), d), "row": np.repeat(rows, d),
        "col": np.repeat(cols, d), "dim": np.tile(np.arange(d), h * w)})
    frame["importance"] = 0.0
    hot = (frame["row"] == r) & (frame["col"] == c)
    frame.loc[hot, "importance"] = 1.0
    frame["std"] = 0.0
    frame["sign"] = np.int8(1)
    frame["directional"] = frame["importance"]
    return frame


def test_heatmaps_are_upright():
    """A pixel's importance lands at its (row, col) in the drawn image (row 0 at the top)."""
    h, w, r, c = 6, 9, 1, 7
    frame = _frame_with_hot_pixel(h, w, r, c)
    img = impfig.grid(frame, "importance", (h, w), 0)
    assert img.shape == (h, w) and img[r, c] == 1 and img.sum() == 1
    fig = impfig.plot_heatmap(frame, 0)
    ax = fig.axes[0]
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    x0, y0, x1, y1 = ax.get_window_extent().extents  # display coords, origin bottom-left
    height = rgba.shape[0]
    red = (rgba[..., 0] > rgba[..., 1] + 60) & (rgba[..., 0] > rgba[..., 2] + 40)
    ys, xs = np.nonzero(red[int(height - y1):int(height - y0), int(x0):int(x1)])
    assert len(xs), "the hot pixel was not drawn"
    col = int(np.mean(xs) / (x1 - x0) * w)
    row = int(np.mean(ys) / (y1 - y0) * h)
    assert (row, col) == (r, c)
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_figures_draw(tmp_path):
    from latent_atlas.plotting import save_figure

    rng = np.random.default_rng(0)
    h, w, d = 5, 4, 6
    res = imp.PixelImportance(np.arange(h * w), rng.random((h * w, 2, d)), rng.random((h * w, d)),
                              rng.random((h * w, d)), np.zeros((h * w, d)), np.zeros((h * w, d)),
                              rng.standard_normal((h * w, d)),
                              rng.choice([-1, 0, 1], size=(h * w, d)).astype(np.int8), (1, h, w), "x")
    pixel = imp.pixel_frame(res)
    lat = imp.latent_frame(imp.LatentImportance(np.arange(3), None, rng.random((3, d)),
                                                rng.random((3, d)) * 0.1, np.zeros((3, d)),
                                                np.zeros((3, d))), ["a", "b", "c"])
    figs = {"dir": impfig.plot_directional(pixel), "dim": impfig.plot_dimension(pixel, 2),
            "cls": impfig.plot_class(pixel, lat, 1, 3), "all": impfig.plot_classes(pixel, lat, 3)}
    for name, fig in figs.items():
        save_figure(fig, tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    assert impfig.most_important_dimension(lat) == int(np.argmax(lat.groupby("dim")["importance"].mean()))
    with pytest.raises(ValueError, match="class 9"):
        impfig.plot_class(pixel, lat, 9, 2)


def test_npz_image_shape_and_plan(tmp_path):
    from latent_atlas.io import write_npz

    write_npz(tmp_path / "d.npz", images=np.zeros((3, 1, 28, 28), np.uint8), labels=np.zeros(3))
    assert importance_plan.npz_image_shape(tmp_path / "d.npz") == (1, 28, 28)
    assert importance_plan.plan(tmp_path / "d.npz", 64)["n_blocks"] == 13


# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_workflow_outputs(e2e_run):
    from latent_atlas.io import read_parquet

    import yaml
    from pathlib import Path

    cfg = yaml.safe_load((Path(__file__).parents[1] / "config" / "test.yaml").read_text())
    models = cfg["importance"]["models"]
    for model in models:
        d = e2e_run / "results" / "digits" / model / "importance"
        pixel = read_parquet(d / "pixel_importance.parquet")
        latent = read_parquet(d / "latent_importance.parquet")
        for col in ("pixel", "row", "col", "dim", "importance", "std", "sign", "directional"):
            assert col in pixel.columns
        n_dims = pixel["dim"].nunique()
        assert len(pixel) == 16 * 16 * n_dims
        assert not pixel.duplicated(["pixel", "dim"]).any()
        assert (pixel["importance"] >= 0).all() and pixel["importance"].max() > 0
        np.testing.assert_allclose(pixel["directional"], pixel["sign"] * pixel["importance"])
        for col in ("class", "dim", "importance", "std"):
            assert col in latent.columns
        assert latent["dim"].nunique() == n_dims
        assert (d / "explorer.html").stat().st_size > 10_000
        figs = e2e_run / "results" / "figures" / "digits" / model
        for stem in ["importance_directional", "importance_dimension", "importance_classes"] + [
                f"importance_class_{c}" for c in cfg["importance"]["classes"]]:
            assert (figs / f"{stem}.png").stat().st_size > 5000, stem
    plan = (e2e_run / "results" / "digits" / models[0] / "importance" / "plan.json")
    n_blocks = -(-256 // cfg["importance"]["block_size"])
    assert len(list(plan.parent.glob("blocks/block_*.parquet"))) == n_blocks
