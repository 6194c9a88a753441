"""Permutation importance: closed forms, invariances, fast paths, figures, jobs, workflow outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from latent_atlas.importance import engine, jobs, kernels, streams, tables
from latent_atlas.importance import figures as impfig
from latent_atlas.importance import plan as importance_plan
from latent_atlas.io import read_json, read_parquet, read_parquet_metadata, write_json
from latent_atlas.models.archs import arch_kind
from latent_atlas.runtime import Files, Job
from latent_atlas.schema import with_defaults


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
    a = streams.permutation(7, 12, 3, 500)
    assert sorted(a) == list(range(500))
    assert np.array_equal(a, streams.permutation(7, 12, 3, 500))
    assert not np.array_equal(a, streams.permutation(7, 12, 2, 500))
    assert not np.array_equal(a, streams.permutation(7, 13, 3, 500))
    assert not np.array_equal(a, streams.permutation(8, 12, 3, 500))
    assert not np.array_equal(a, streams.permutation(7, 12, 3, 500, stream=streams.LATENT_STREAM))


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
    res = engine.pixel_importance(enc, images, n_perm=n_perm, seed=3, split=(lin, nn.Identity()))
    assert res.method == "kernel"
    xi = images.reshape(n, p).astype(np.float64)
    # Exact per permutation.
    for i in (0, 4):
        for k in (0, 17):
            perm = streams.permutation(3, i, k, n)
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
    thr = engine.pixel_importance(enc, images, n_perm=1, split=(lin, nn.Identity()), sign_threshold=1.0)
    assert np.array_equal(thr.sign, np.where(np.abs(weight.T) > 1.0, np.sign(weight.T), 0))
    assert (thr.sign == 0).any() and (thr.sign != 0).any()


def test_slope_and_sign_validates_threshold():
    with pytest.raises(ValueError, match="threshold"):
        engine.slope_and_sign(np.zeros((3, 1)), np.zeros((3, 1)), threshold=-1)


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
    ref = engine.pixel_importance(model, x, n_perm=3, seed=5, method="naive")
    methods = ["rows", "auto"] + (["rank1"] if dense else [])
    if dense and kernels.kernel_plan(split[1]) is not None:
        methods.append("kernel")
    assert ref.importance.max() > 0
    for method in methods:
        got = engine.pixel_importance(model, x, n_perm=3, seed=5, method=method, split=split,
                                   batch_size=37)
        np.testing.assert_allclose(got.per_permutation, ref.per_permutation, rtol=2e-4,
                                   atol=1e-7 * ref.per_permutation.max(), err_msg=method)
        np.testing.assert_array_equal(got.sign, ref.sign)
    if kind == "deep":
        assert kernels.kernel_plan(split[1]) is None
        assert engine.pixel_importance(model, x, n_perm=1, split=split).method == "rank1"


@pytest.mark.parametrize("c", [1, 3])
def test_linear_kernel_equals_the_gram_formula_on_the_same_permutations(c):
    """The identity-rest kernel: mean_n (sum_ch dx_ch w_chj)^2 over the pixel's seeded permutation,
    and every image's terms: the squared changes of the rows it is in, as either image of the pair."""
    rng = np.random.default_rng(3)
    n_pix, n, d = 5, 200, 4
    cols = np.ascontiguousarray(rng.integers(0, 4, size=(n_pix, c, n)) / 3.0)
    wcols = rng.normal(size=(n_pix, c, d))
    pixels = np.arange(10, 10 + n_pix, dtype=np.int64)
    perms = np.stack([np.stack([streams.permutation(7, int(p), k, n) for k in range(3)]) for p in pixels])
    fast = np.zeros((n_pix, 3, d))
    terms = np.zeros((n_pix, n, d))
    kernels._kernel_linear(cols, wcols, perms, fast, terms)
    expected = np.zeros_like(fast)
    expected_terms = np.zeros_like(terms)
    for p in range(n_pix):
        for k in range(3):
            perm = perms[p, k]
            dz = (cols[p][:, perm] - cols[p]).T @ wcols[p]  # (n, d)
            expected[p, k] = (dz ** 2).mean(axis=0)
            np.add.at(expected_terms[p], np.arange(n), dz ** 2)
            np.add.at(expected_terms[p], perm, dz ** 2)
    assert fast.max() > 0
    np.testing.assert_allclose(fast, expected, rtol=1e-12)
    np.testing.assert_allclose(terms, expected_terms, rtol=1e-12)


def _conv_stack(kind, c, seed=0):
    """Small conv encoders covering the local path's layers and border cases (9x7 inputs)."""
    torch.manual_seed(seed)
    layers = {
        "same_maxpool_ceil": [nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
                              nn.Flatten(), nn.LazyLinear(3)],
        "stride2_wide_padding": [nn.Conv2d(c, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.1),
                                 nn.Conv2d(4, 5, 3, stride=2, padding=2), nn.Tanh(), nn.Flatten(),
                                 nn.LazyLinear(6), nn.ReLU(), nn.Linear(6, 3)],
        "batchnorm_avgpool_ceil": [nn.Conv2d(c, 4, 5, padding=2), nn.BatchNorm2d(4), nn.ELU(),
                                   nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
                                   nn.Conv2d(4, 3, 2), nn.Sigmoid(), nn.Flatten(), nn.LazyLinear(4)],
        "avgpool_exclude_pad_first": [nn.AvgPool2d(2, padding=1, ceil_mode=True, count_include_pad=False),
                                      nn.Conv2d(c, 4, 3, stride=2), nn.ReLU(),
                                      nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
                                      nn.Flatten(), nn.LazyLinear(3)],
    }[kind]
    model = nn.Sequential(*layers)
    with torch.no_grad():
        model(torch.zeros(2, c, 9, 7))  # materialise lazy layers
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _assert_local_equals_naive(model, output, stack, x, batch_size=37):
    """The local path (float32) gives the naive loop's values to 1e-5 of the largest value, and
    its signs. The reference is the naive loop in float64: the float32 naive loop itself is off
    by up to ~2e-5 on these small random models, whose outputs barely move per pixel."""
    import copy

    exact = copy.deepcopy(model).double()
    fn64 = exact if output is None else engine.output_function(exact, output)
    ref = engine.pixel_importance(lambda t: fn64(t.double()), x, n_perm=3, seed=5, method="naive",
                                  device="cpu")  # a bare function: its device is not its module's
    fn = model if output is None else engine.output_function(model, output)
    naive = engine.pixel_importance(fn, x, n_perm=3, seed=5, method="naive")
    got = engine.pixel_importance(fn, x, n_perm=3, seed=5, method="local", stack=stack,
                                  batch_size=batch_size)
    assert got.method == "local" and ref.importance.max() > 0
    scale = ref.per_permutation.max()
    assert np.abs(got.per_permutation - ref.per_permutation).max() <= 1e-5 * scale
    assert np.abs(got.per_permutation - naive.per_permutation).max() <= 5e-5 * scale
    np.testing.assert_array_equal(got.sign, naive.sign)
    np.testing.assert_array_equal(got.sign, ref.sign)


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("kind", ["same_maxpool_ceil", "stride2_wide_padding", "batchnorm_avgpool_ceil",
                                  "avgpool_exclude_pad_first"])
def test_local_path_equals_naive_on_conv_stacks(kind, c):
    x = _images(n=70, h=9, w=7, c=c)
    model = _conv_stack(kind, c)
    stack = engine.local_stack(list(model), model, (c, 9, 7))
    _assert_local_equals_naive(model, None, stack, x)


@pytest.mark.parametrize("arch, output", [("conv_ae", "latent"), ("conv_vae", "latent"),
                                          ("cnn_classifier", "features"), ("cnn_classifier", "logits")])
def test_local_path_equals_naive_on_the_project_models(arch, output):
    from latent_atlas.models.networks import build_model

    torch.manual_seed(0)
    params = ({"channels": [4, 6, 8, 8], "latent_dim": 5} if arch.startswith("conv")
              else {"channels": [4, 6], "feature_dim": 8})
    c = 3 if arch == "conv_vae" else 1
    model = build_model(arch, (c, 15, 16), 4, params).eval()
    stack, why = engine.model_stack(model, output)
    assert stack is not None, why
    _assert_local_equals_naive(model, output, stack, _images(n=60, h=15, w=16, c=c))


@pytest.mark.parametrize("kind", ["stride2_wide_padding", "batchnorm_avgpool_ceil"])
def test_local_path_without_delta_matrices_equals_naive(kind, monkeypatch):
    """Convolutions recomputed on windows (as when their delta matrix would be too large)."""
    from latent_atlas.importance import local

    monkeypatch.setattr(local, "MAP_BYTES", 0)
    x = _images(n=70, h=9, w=7, c=1)
    model = _conv_stack(kind, 1)
    _assert_local_equals_naive(model, None, engine.local_stack(list(model), model, (1, 9, 7)), x)


@pytest.mark.parametrize("kind, c, full", [("same_maxpool_ceil", 1, 0.0), ("stride2_wide_padding", 3, 2.0),
                                           ("batchnorm_avgpool_ceil", 1, 0.0),
                                           ("avgpool_exclude_pad_first", 3, 0.0)])
def test_local_path_on_all_rows_and_on_gathered_rows_equals_naive(kind, c, full, monkeypatch):
    """FULL_FRACTION 0: every pixel runs on all rows of every permutation (unchanged rows too,
    which must add exact zeros), in row blocks (batch_size 16 < N); 2: only gathered changed rows."""
    from latent_atlas.importance import local

    monkeypatch.setattr(local, "FULL_FRACTION", full)
    x = _images(n=70, h=9, w=7, c=c)
    model = _conv_stack(kind, c)
    stack = engine.local_stack(list(model), model, (c, 9, 7))
    _assert_local_equals_naive(model, None, stack, x, batch_size=16)
    _assert_local_equals_naive(model, None, stack, x, batch_size=1000)


def test_local_stack_names_what_it_cannot_do():
    from latent_atlas.models.networks import build_model

    up = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Upsample(scale_factor=2), nn.Flatten(), nn.LazyLinear(2))
    assert engine.model_stack(up, "latent") == (None, "unsupported layer Upsample before the first Linear")
    stack, why = engine.model_stack(build_model("dense_ae", (1, 4, 4), 2, {"hidden": [3]}), "latent")
    assert stack is None and "not convolutional" in why
    with pytest.raises(ValueError, match="method 'local' needs a convolutional stack"):
        engine.choose_method("local", None, torch.device("cpu"), None)
    # A layer list that is not what the model computes (a ReLU left out) is refused.
    model = _conv_stack("same_maxpool_ceil", 1)
    with pytest.raises(ValueError, match="does not reproduce"):
        engine.local_stack([model[0], model[2], model[3], model[4]], model, (1, 9, 7))
    # auto picks local for conv models with a stack, rows without one.
    assert engine.choose_method("auto", None, torch.device("cpu"), engine.local_stack(list(model)))[0] == "local"
    assert engine.choose_method("auto", None, torch.device("cpu"), None)[0] == "rows"


def test_shard_and_batch_invariance():
    """13 blocks give the same table as 1 block; batch size does not matter (every path)."""
    x = _images(n=80, h=8, w=8)
    enc = _dense([64, 5], act_last=True)
    deep = _dense([64, 6, 4])
    conv = _conv(seed=2)
    with torch.no_grad():
        conv(torch.as_tensor(x[:2]))
    cases = ((enc, "kernel", _split(enc), None), (deep, "rank1", _split(deep), None),
             (deep, "rows", None, None), (conv, "local", None, engine.local_stack(list(conv))))
    for model, method, split, stack in cases:
        whole = tables.pixel_frame(engine.pixel_importance(model, x, n_perm=2, seed=1, split=split,
                                                           stack=stack, method=method))
        blocks = importance_plan.pixel_blocks(64, 5)
        assert len(blocks) == 13 == importance_plan.n_blocks(64, 5)
        parts = pd.concat([
            tables.pixel_frame(engine.pixel_importance(model, x, pixels=b, n_perm=2, seed=1,
                                                       split=split, stack=stack, method=method,
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
        res = engine.pixel_importance(enc, x, n_perm=2, split=_split(enc), method=method)
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
    res = engine.latent_importance(dec, z, labels, n_perm=3, seed=0, batch_size=50)
    assert res.importance.shape == (3, 4)
    assert np.all(res.importance[:, 2] == 0) and np.all(res.std[:, 2] == 0)
    assert np.all(res.importance[:, [0, 1, 3]] > 0)
    again = engine.latent_importance(dec, z, labels, n_perm=3, seed=0, batch_size=7)
    np.testing.assert_allclose(again.importance, res.importance, rtol=1e-6)
    frame = tables.latent_frame(res, ["a", "b", "c"])
    assert list(frame.columns[:5]) == ["class", "class_name", "dim", "importance", "std"]
    assert set(frame.loc[frame["dim"] == 2, "rank"]) == {4}


def test_confidence_interval_and_single_permutation():
    vals = np.array([[[1.0], [2.0], [3.0], [4.0]]])
    mean, std, lo, hi = engine.summarise_permutations(vals, 0.95)
    assert mean[0, 0] == 2.5 and np.isclose(std[0, 0], np.std([1, 2, 3, 4], ddof=1))
    assert lo[0, 0] < 2.5 < hi[0, 0]
    mean, std, lo, hi = engine.summarise_permutations(vals[:, :1], 0.95)
    assert std[0, 0] == 0 and lo[0, 0] == hi[0, 0] == 1.0


def test_errors_name_the_problem():
    x = _images(n=10)
    enc = _dense([30, 2])
    with pytest.raises(ValueError, match="method"):
        engine.pixel_importance(enc, x, method="fast")
    with pytest.raises(ValueError, match="first_linear_split"):
        engine.pixel_importance(enc, x, method="rank1")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        engine.pixel_importance(enc, x[0])
    with pytest.raises(ValueError, match="pixels"):
        engine.pixel_importance(enc, x, pixels=[30])


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
    fig = impfig.plot_dimension(frame, 0)
    ax = fig.axes[0]  # plain importance (white -> red); the directional map is beside it
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


def _figure_tables(h=5, w=4, d=6, n_classes=3, seed=0):
    """Random pixel and latent tables of d dimensions for h x w images and n_classes classes."""
    rng = np.random.default_rng(seed)
    res = tables.PixelImportance(np.arange(h * w), rng.random((h * w, 2, d)), rng.random((h * w, d)),
                                 rng.random((h * w, d)), np.zeros((h * w, d)), np.zeros((h * w, d)),
                                 rng.standard_normal((h * w, d)),
                                 rng.choice([-1, 0, 1], size=(h * w, d)).astype(np.int8), (1, h, w), "x",
                                 se=np.zeros((h * w, d)), interval_low=np.zeros((h * w, d)),
                                 interval_high=np.zeros((h * w, d)))
    lat = tables.latent_frame(tables.LatentImportance(
        np.arange(n_classes), None, rng.random((n_classes, d)), rng.random((n_classes, d)) * 0.1,
        np.zeros((n_classes, d)), np.zeros((n_classes, d))), ["a", "b", "c"][:n_classes])
    return tables.pixel_frame(res), lat


def _heatmaps(fig):
    """{title: drawn (H, W) array} of the figure's image panels."""
    return {ax.get_title(): np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images}


def test_figures_draw_the_table_values(tmp_path):
    """Each panel shows its dimension's map from the table; bars are the class's sorted values."""
    import matplotlib.pyplot as plt

    from latent_atlas.plotting import save_figure

    h, w, d = 5, 4, 6
    pixel, lat = _figure_tables(h, w, d)
    directional = {dim: impfig.grid(pixel, "directional", (h, w), dim) for dim in range(d)}

    fig = impfig.plot_directional(pixel, title="m")
    maps = _heatmaps(fig)
    assert list(maps) == [f"z{dim}" for dim in range(d)]
    for dim in range(d):
        np.testing.assert_array_equal(maps[f"z{dim}"], directional[dim])
    assert fig.get_suptitle() == "m"
    save_figure(fig, tmp_path / "directional.png")
    assert (tmp_path / "directional.png").stat().st_size > 1000

    fig = impfig.plot_dimension(pixel, 2)
    maps = _heatmaps(fig)
    np.testing.assert_array_equal(maps["z2: importance"], impfig.grid(pixel, "importance", (h, w), 2))
    np.testing.assert_array_equal(maps["z2: directional"], directional[2])
    plt.close(fig)

    top = impfig.top_dimensions(lat, 1, 3)
    cls1 = lat[lat["class"] == 1].set_index("dim")["importance"]
    assert top == list(cls1.sort_values(ascending=False).index[:3])
    fig = impfig.plot_class(pixel, lat, 1, 3)
    assert fig.get_suptitle() == "class 1: b"
    maps = _heatmaps(fig)
    assert list(maps) == [f"z{dim} (rank {i + 1})" for i, dim in enumerate(top)]
    for i, dim in enumerate(top):
        np.testing.assert_array_equal(maps[f"z{dim} (rank {i + 1})"], directional[dim])
    bars = fig.axes[0].patches
    np.testing.assert_allclose([b.get_height() for b in bars], np.sort(cls1.to_numpy())[::-1])
    red = [b.get_facecolor()[0] > 0.6 for b in bars]
    assert red == [True] * 3 + [False] * (d - 3)  # the top dimensions are the red bars
    plt.close(fig)

    fig = impfig.plot_classes(pixel, lat, 3)  # one row per class: its bars, its top-3 maps
    assert len(fig.axes) == 3 * 4 + 1  # and one colour bar
    for cls, name in enumerate(["a", "b", "c"]):
        bars, *panels = fig.axes[4 * cls:4 * cls + 4]
        assert bars.get_ylabel() == name and len(bars.patches) == d
        top = impfig.top_dimensions(lat, cls, 3)
        assert [ax.get_title() for ax in panels] == [f"z{dim}" for dim in top]
        for ax, dim in zip(panels, top):
            np.testing.assert_array_equal(ax.images[0].get_array(), directional[dim])
    plt.close(fig)

    assert impfig.most_important_dimension(lat) == int(np.argmax(lat.groupby("dim")["importance"].mean()))
    with pytest.raises(ValueError, match="class 9"):
        impfig.plot_class(pixel, lat, 9, 2)


@pytest.mark.parametrize("d", [32, 50])
def test_every_bar_is_named_in_the_plotted_order(d):
    """The class bar charts name every bar, in the order drawn (32 dimensions: matplotlib's own
    ticks named every other one); past MAX_BARS the most important are drawn and the rest counted."""
    import matplotlib.pyplot as plt

    pixel, lat = _figure_tables(3, 3, d, n_classes=2)
    shown = min(d, impfig.MAX_BARS)
    for fig, axes in ((impfig.plot_class(pixel, lat, 1, 3), [0]), (impfig.plot_classes(pixel, lat, 3), [0, 4])):
        fig.canvas.draw()
        for i, cls in zip(axes, (1,) if len(axes) == 1 else (0, 1)):
            ax = fig.axes[i]
            ranked = lat[lat["class"] == cls].sort_values("importance", ascending=False)
            heights = [b.get_height() for b in ax.patches]
            np.testing.assert_allclose(heights, ranked["importance"].to_numpy()[:shown])
            labels = [t.get_text() for t in ax.get_xticklabels()]
            assert labels == [f"z{dim}" for dim in ranked["dim"].to_numpy()[:shown]]
            assert list(ax.get_xticks()) == list(range(shown))
            assert (ax.get_xlabel() == f"top {shown} of {d} dimensions ({d - shown} not shown)") == (d > shown)
        plt.close(fig)


def test_plan_reads_the_image_shape_from_the_store(tmp_path):
    np.save(tmp_path / "images.npy", np.zeros((3, 1, 28, 28), np.uint8))
    assert importance_plan.plan(tmp_path, 64)["n_blocks"] == 13
    assert importance_plan.plan([tmp_path / "images.npy", tmp_path / "samples.parquet"], 64)["height"] == 28


# --------------------------------------------------------------------------------------------
# Jobs (latent_atlas.importance.jobs), called as the workflow calls them
# --------------------------------------------------------------------------------------------
def _model_files(tmp_path, arch):
    """A 16x16 tiny dataset (20 test images) and an untrained `arch` model on it, as files."""
    from model_helpers import TINY_PARAMS, tiny_dataset

    from latent_atlas.data.store import save_dataset
    from latent_atlas.models.networks import build_model, save_model

    ds = tiny_dataset(n=80)
    save_dataset(ds, tmp_path / "tiny")
    torch.manual_seed(0)
    save_model(build_model(arch, (1, 16, 16), 3, TINY_PARAMS[arch]), tmp_path / f"{arch}.pt", ds.class_names)
    write_json(importance_plan.plan(tmp_path / "tiny", 64), tmp_path / "plan.json")
    return Files(data=str(tmp_path / "tiny"), model=str(tmp_path / f"{arch}.pt"), plan=str(tmp_path / "plan.json"))


def _gather(shards, plan, name, out_dir, **settings):
    """Rule importance_gather (or _logits, by `name`): the pixel and group tables in `out_dir`."""
    outputs = Files(pixel=str(out_dir / f"{name}.parquet"), group=str(out_dir / f"{name}_groups.parquet"))
    jobs.importance_gather(_job(Files(shards=list(shards), plan=plan), outputs, analysis="importance"),
                           output_name=name, min_effect=settings.get("min_effect", 0.01),
                           fdr=settings.get("fdr", 0.05), permutation=settings.get("permutation", "marginal"))
    return outputs


def _job(inputs, outputs, model="tiny_model", **wildcards):
    return Job(input=inputs, output=outputs, wildcards=Files(dataset="tiny", model=model, **wildcards))


def _run(job_function, job, section=None, kind="autoencoder"):
    """Call `job_function` with the settings its rule passes: `section` (an `importance` section,
    defaults filled) for a model of `kind`, seed 3."""
    from rule_settings import importance_settings

    job_function(job, **importance_settings(job_function, section, kind=kind, seed=3))


@pytest.mark.parametrize("method", ["rank1", "kernel"])
def test_a_configured_method_that_does_not_apply_stops_the_run(tmp_path, method):
    """A conv model has no dense first layer: a configured rank1/kernel is an error, not rows."""
    from latent_atlas.schema import ConfigError

    settings = {"method": method, "device": "cpu", "n_perm": 1}
    job = _job(_model_files(tmp_path, "conv_ae"), Files([str(tmp_path / "block.parquet")]), model="my_conv",
               block="0000")
    with pytest.raises(ConfigError, match=rf"importance\.method: '{method}' does not apply to model 'my_conv'"):
        _run(jobs.importance_block, job, settings)
    assert not (tmp_path / "block.parquet").exists()


def test_a_configured_local_method_runs_on_conv_models_and_stops_on_dense_ones(tmp_path):
    from latent_atlas.schema import ConfigError

    settings = {"method": "local", "device": "cpu", "n_perm": 1, "block_size": 64}
    (tmp_path / "conv").mkdir()
    (tmp_path / "dense").mkdir()
    out = tmp_path / "conv" / "block.parquet"
    _run(jobs.importance_block, _job(_model_files(tmp_path / "conv", "conv_ae"), Files([str(out)]), block="0001"),
         settings)
    assert len(read_parquet(out)) > 0
    job = _job(_model_files(tmp_path / "dense", "dense_ae"), Files([str(tmp_path / "block.parquet")]),
               model="my_dense", block="0000")
    with pytest.raises(ConfigError, match=r"'local' does not apply to model 'my_dense'.*not convolutional"):
        _run(jobs.importance_block, job, settings)


def test_auto_falls_back_to_rows_naming_the_unsupported_layer(tmp_path, caplog, monkeypatch):
    from latent_atlas.importance import evaluation

    monkeypatch.setattr(evaluation, "model_stack",
                        lambda model, output, device=None: (None, "unsupported layer Upsample before the first Linear"))
    inputs = _model_files(tmp_path, "conv_ae")
    out = str(tmp_path / "block.parquet")
    job = _job(inputs, Files([out]), block="0001")
    with caplog.at_level("INFO", logger="latent_atlas"):
        _run(jobs.importance_block, job, {"device": "cpu", "n_perm": 1, "block_size": 64})
    assert ("importance.method auto: model tiny_model, latent output: no local path (unsupported layer "
            "Upsample before the first Linear); rows instead") in caplog.text
    assert "importance.method auto: model tiny_model, latent output, on cpu: path rows" in caplog.text


@pytest.mark.parametrize("arch, output, path", [("conv_ae", "latent", "local"), ("dense_ae", "latent", "kernel"),
                                                 ("mlp_classifier", "features", "kernel")])
def test_auto_picks_the_path_that_applies_and_logs_it(tmp_path, caplog, arch, output, path):
    inputs = _model_files(tmp_path, arch)
    out = str(tmp_path / "block.parquet")
    job = _job(inputs, Files([out]), block="0001")
    with caplog.at_level("INFO", logger="latent_atlas"):
        _run(jobs.importance_block, job, {"device": "cpu", "n_perm": 1, "block_size": 64}, kind=arch_kind(arch))
    assert f"importance.method auto: model tiny_model, {output} output, on cpu: path {path}" in caplog.text
    shard = read_parquet(out)
    assert read_parquet_metadata(out)["block"] == 1
    expected = [output, "logits"] if arch == "mlp_classifier" else [output]
    assert list(shard["output"].unique()) == expected
    for name in ("primary", "logits") if arch == "mlp_classifier" else ("primary",):
        # rules importance_gather and importance_gather_logits: the same job, output_name differs
        _gather([out], inputs.plan, name, tmp_path)
        table = read_parquet(tmp_path / f"{name}.parquet")
        assert read_parquet_metadata(tmp_path / f"{name}.parquet")["output"] == (output if name == "primary" else name)
        assert sorted(table["pixel"].unique()) == list(range(64, 128)) and "output" not in table


def test_jobs_write_the_stage_files(tmp_path):
    """Plan, one shard per block, gather, latent importance, explorer and figures of a model; the
    gathered table equals one computation over all pixels."""
    from latent_atlas.data.store import load_dataset
    from latent_atlas.importance.evaluation import evaluation_set
    from latent_atlas.models.networks import load_model

    inputs = _model_files(tmp_path, "dense_ae")
    settings = with_defaults({"device": "cpu", "n_perm": 2, "block_size": 100, "max_samples": 15,
                              "classes": [2], "top_k": 2}, "#/properties/importance", "importance")
    d = tmp_path / "importance"
    _run(jobs.importance_plan, Job(input=Files([inputs.data]), output=Files([str(d / "plan.json")])), settings)
    inputs = Files(data=inputs.data, model=inputs.model, plan=str(d / "plan.json"))
    n_blocks = read_json(d / "plan.json")["n_blocks"]
    assert n_blocks == 3
    shards = [str(d / f"block_{b:04d}.parquet") for b in range(n_blocks)]
    for b, shard in enumerate(shards):
        _run(jobs.importance_block, _job(inputs, Files([shard]), block=f"{b:04d}"), settings)
    pixel_path, latent_path = str(d / "pixel_importance.parquet"), str(d / "latent_importance.parquet")
    _gather(shards, inputs.plan, "primary", d)
    pixel_path = str(d / "primary.parquet")
    _run(jobs.latent_importance, _job(inputs, Files([latent_path])), settings)

    images, labels, _ = evaluation_set(load_dataset(inputs.data).test(), 15, 3)
    model = load_model(inputs.model)
    whole = tables.pixel_frame(engine.pixel_importance(model.encode, images, n_perm=2, seed=3,
                                                       split=model.first_linear_split("latent")))
    pixel = read_parquet(pixel_path)
    pd.testing.assert_frame_equal(pixel.drop(columns=["p_value", "significant"]), whole.drop(columns="output"))
    assert pixel["significant"].any() and not pixel["significant"].all()
    assert read_parquet_metadata(pixel_path)["n_shards"] == 3
    latent = read_parquet(latent_path)
    assert sorted(latent["class"].unique()) == sorted(np.unique(labels))
    assert latent["dim"].nunique() == pixel["dim"].nunique() == 4

    tables_in = Files(pixel=pixel_path, latent=latent_path, data=inputs.data)
    _run(jobs.importance_explorer, _job(tables_in, Files([str(d / "explorer.html")])), settings)
    assert "tiny / tiny_model" in (d / "explorer.html").read_text()
    figs = {name: [str(tmp_path / f"{name}.png")] for name in ("directional", "dimension", "classes", "class_2",
                                                                 "class_9")}
    # class 9 has no evaluation samples here: its figure says so (the default classes [0, 6] on a
    # dataset of two classes), the others are drawn
    assert not (latent["class"] == 9).any()
    jobs.plot_importance(_job(tables_in, Files(figs)), top_k=2, classes=[2, 9], fdr=0.05)
    assert all((tmp_path / f"{name}.png").stat().st_size > 1000 for name in figs)
    from latent_atlas.importance.figures import plot_absent_class

    fig = plot_absent_class(latent, 9)
    text = fig.axes[0].texts[0].get_text()
    assert text.startswith("class 9: no evaluation samples") and "class" in text and "(importance.classes" in text
    assert all(f"{int(c)} (" in text for c in latent["class"].unique())


# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_workflow_outputs(e2e_run):
    from pathlib import Path

    import yaml

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
