"""Autoencoders of tables and series: the `output` param (sigmoid / linear) and its loss, the 1-D
conv archs (exact shapes for any length, training), save/load, and permutation importance on them."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latent_atlas.data.store import Dataset
from latent_atlas.importance import engine
from latent_atlas.importance.evaluation import block_table
from latent_atlas.models import checkpoint
from latent_atlas.models.archs import AUTOENCODER_ARCHS, resolve_params
from latent_atlas.models.networks import build_model, load_model, model_record, save_model
from latent_atlas.models.training import batch_loss, evaluate, train_model
from latent_atlas.runtime import set_determinism

# Small sizes of every autoencoder (the 1-D archs with three, two and one conv blocks).
SMALL = {
    "dense_ae": {"hidden": [12], "latent_dim": 3},
    "dense_vae": {"hidden": [12], "latent_dim": 2},
    "conv_ae": {"channels": [4, 4, 8, 8], "latent_dim": 3},
    "conv_vae": {"channels": [4, 4, 8, 8], "latent_dim": 2},
    "conv1d_ae": {"channels": [4, 8, 8], "latent_dim": 3, "kernel_size": 3},
    "conv1d_vae": {"channels": [6, 8], "latent_dim": 2},
}


@pytest.fixture(autouse=True)
def _deterministic():
    set_determinism(0, 1)


def _built(arch, shape, **params):
    torch.manual_seed(0)
    return build_model(arch, shape, 2, {**SMALL[arch], **params})


def _series(n=96, channels=3, length=24, seed=0):
    """Standardised windows (n, 1, C, L): per class a sine of its own frequency per channel, phase
    and noise random; mean 0 and std 1 per channel and step over the train split (values unbounded)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    t = np.arange(length) / length
    freq = (1 + labels[:, None, None]) * (1 + np.arange(channels)[None, :, None])
    phase = rng.uniform(0, 2 * np.pi, (n, channels, 1))
    x = 3 * np.sin(2 * np.pi * freq * t + phase) + 0.1 * rng.standard_normal((n, channels, length))
    split = np.array(["train"] * (n - n // 4) + ["test"] * (n // 4))
    train = x[split == "train"]
    x = (x - train.mean(0)) / train.std(0)
    # Built without validate(): the store checks pixel values of images (kind image) against [0, 1].
    return Dataset(x[:, None].astype(np.float32), labels, ["slow", "fast"], split,
                   np.arange(n, dtype=np.int64), "series")


def test_output_defaults_to_sigmoid_and_is_checked():
    for arch in AUTOENCODER_ARCHS:
        assert resolve_params(arch, {})["output"] == "sigmoid"
        assert resolve_params(arch, {"output": "linear"})["output"] == "linear"
    with pytest.raises(ValueError, match=r"'conv1d_ae': params\.output must be one of sigmoid, linear, got 'relu'"):
        resolve_params("conv1d_ae", {"output": "relu"})
    with pytest.raises(ValueError, match=r"'cnn_classifier': unknown params \['output'\]"):
        resolve_params("cnn_classifier", {"output": "linear"})
    with pytest.raises(ValueError, match=r"'conv1d_vae': params\.channels needs at least one conv block"):
        resolve_params("conv1d_vae", {"channels": []})


@pytest.mark.parametrize("arch", AUTOENCODER_ARCHS)
def test_decode_is_sigmoid_by_default_and_the_logits_for_linear(arch):
    shape = (1, 4, 9)
    z = torch.randn(6, SMALL[arch]["latent_dim"], generator=torch.Generator().manual_seed(1))
    default = _built(arch, shape).eval()
    linear = _built(arch, shape, output="linear").eval()  # the same weights: same seed, same sizes
    assert default.output == "sigmoid" and linear.output == "linear"
    with torch.no_grad():
        logits = default.decode_logits(z)
        assert torch.equal(linear.decode_logits(z), logits)
        assert torch.equal(default.decode(z), torch.sigmoid(logits))
        assert torch.equal(linear.decode(z), logits)
        x = torch.randn(6, *shape)
        assert torch.equal(linear(x), linear.decode_logits(linear.encode(x)))


@pytest.mark.parametrize("arch", ["dense_ae", "conv1d_ae", "dense_vae", "conv1d_vae"])
def test_linear_loss_is_half_the_squared_error_plus_the_kl(arch):
    ds = _series(n=8, channels=2, length=10)
    x = torch.from_numpy(ds.images)
    y = torch.from_numpy(ds.labels)
    model = _built(arch, x.shape[1:], output="linear").eval()
    beta = 0.7
    with torch.no_grad():
        loss, parts = batch_loss(model, x, y, beta, None)  # None: decode the posterior mean
        if model.variational:
            mean, logvar = model.encode_distribution(x)
            posterior = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
            prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
            kl = torch.distributions.kl_divergence(posterior, prior).sum()
        else:
            mean, kl = model.encode(x), torch.zeros(())
        x_hat = model.decode(mean)
    expected = 0.5 * F.mse_loss(x_hat, x) + beta * kl / x.numel()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert set(parts) == {"loss", "mse", "kl"}
    assert float(parts["mse"]) == pytest.approx(float(((x_hat - x) ** 2).sum()), rel=1e-5)
    metrics = evaluate(model, ds.images, y, np.arange(len(ds)), beta)
    assert list(metrics) == ["loss", "mse", "kl"]
    assert metrics["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert metrics["mse"] == pytest.approx(float(F.mse_loss(x_hat, x)), rel=1e-5)
    assert list(evaluate(model, ds.images, y, np.arange(0))) == ["loss", "mse", "kl"]


def test_sigmoid_loss_is_the_binary_cross_entropy_as_before():
    """The sigmoid path's loss: BCE-with-logits summed, divided by the element count (the old formula)."""
    x = torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    model = _built("conv_ae", (1, 6, 6)).eval()
    with torch.no_grad():
        loss, parts = batch_loss(model, x, torch.zeros(5, dtype=torch.int64), 1.0, None)
        logits = model.decode_logits(model.encode(x))
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    assert torch.equal(loss, bce / x.numel()) and torch.equal(parts["bce"], bce)
    assert torch.equal(parts["mse"], (torch.sigmoid(logits) - x).pow(2).sum())
    assert list(evaluate(model, x.numpy(), torch.zeros(5, dtype=torch.int64), np.arange(5))) == \
        ["loss", "bce", "mse", "kl"]


@pytest.mark.parametrize("output", ["linear", "sigmoid"])
def test_saved_model_keeps_its_output(tmp_path, output):
    model = _built("conv1d_vae", (1, 3, 11), output=output).eval()
    save_model(model, tmp_path / "model.pt", class_names=["a", "b"])
    loaded = load_model(tmp_path / "model.pt")
    assert loaded.output == output and loaded.params == model.params
    z = torch.randn(4, 2)
    with torch.no_grad():
        assert torch.equal(loaded.decode(z), model.decode(z))


def test_a_record_without_output_loads_as_sigmoid(tmp_path):
    """model.pt files written before `output` existed hold params without it."""
    model = _built("dense_ae", (1, 4, 4)).eval()
    record = copy.deepcopy(model_record(model, ["a", "b"]))
    assert "output" not in record["params"]  # a sigmoid model's record is the one written before
    torch.save(record, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt")
    assert loaded.output == "sigmoid" and loaded.params == model.params
    z = torch.randn(3, 3)
    with torch.no_grad():
        assert torch.equal(loaded.decode(z), model.decode(z))
        assert float(loaded.decode(5 * z).min()) >= 0 and float(loaded.decode(5 * z).max()) <= 1


def test_a_checkpoint_belongs_to_one_output():
    """The output is among the fingerprinted params: a sigmoid run's checkpoint is not resumed for linear."""
    ds = _series(n=8, channels=2, length=6)
    labels, rows = torch.from_numpy(ds.labels), np.arange(6)
    prints = {out: checkpoint.fingerprint(_built("conv1d_ae", (1, 2, 6), output=out), {}, 0, ds.images, labels, rows)
              for out in ("sigmoid", "linear")}
    assert prints["sigmoid"] != prints["linear"]


@pytest.mark.parametrize("arch", ["conv1d_ae", "conv1d_vae"])
@pytest.mark.parametrize("channels, length", [(1, 1), (1, 2), (2, 3), (3, 7), (4, 16), (5, 33), (2, 100)])
def test_conv1d_restores_the_exact_shape(arch, channels, length):
    shape = (1, channels, length)
    model = _built(arch, shape, output="linear").eval()
    x = torch.randn(3, *shape)
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (3, model.latent_dim)
        assert model.decode(z).shape == model.decode_logits(z).shape == x.shape
        assert model(x).shape == x.shape
        if model.variational:
            mean, logvar = model.encode_distribution(x)
            assert torch.equal(mean, z) and logvar.shape == z.shape
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv1d)]
    assert [c.in_channels for c in convs][0] == channels and len(convs) == len(model.params["channels"])
    assert model.layer_sequence("latent") is None and model.first_linear_split("latent") is None


def test_conv1d_takes_the_rows_of_an_image_as_channels():
    """An input (c, C, L) is c * C channels: a 3-channel image works too."""
    model = _built("conv1d_ae", (3, 5, 12)).eval()
    assert model.encoder[1].in_channels == 15
    x = torch.rand(2, 3, 5, 12)
    with torch.no_grad():
        x_hat = model(x)
    assert x_hat.shape == x.shape and float(x_hat.min()) >= 0 and float(x_hat.max()) <= 1


@pytest.mark.parametrize("arch", ["conv1d_ae", "conv1d_vae", "dense_ae", "dense_vae"])
def test_training_on_standardised_data_lowers_the_loss(arch):
    """Series windows (n, 1, C, L) for the 1-D archs, a table (n, 1, 1, F) for the dense ones."""
    ds = _series(channels=3, length=24) if arch.startswith("conv1d") else _series(channels=1, length=12)
    if arch.startswith("dense"):
        ds.images = ds.images.reshape(len(ds), 1, 1, -1)  # a table of 12 features
    assert ds.images.min() < -1 and ds.images.max() > 1
    model = _built(arch, ds.images.shape[1:], output="linear")
    labels, train = torch.from_numpy(ds.labels), np.flatnonzero(ds.split == "train")
    before = evaluate(model, ds.images, labels, train)["loss"]
    result = train_model(model, ds.images, ds.labels, ds.split,
                         {"epochs": 30, "batch_size": 8, "lr": 0.01, "validation_fraction": 0.2}, progress=False)
    after = evaluate(result.model.cpu(), ds.images, labels, train)["loss"]
    assert after < 0.85 * before, (before, after)
    losses = list(result.log["train_loss"])
    assert losses[-1] < losses[0] and np.isfinite(result.log["val_loss"]).all()
    metrics = result.metrics
    assert "test_bce" not in metrics and np.isfinite(metrics["test_mse"]) and np.isfinite(metrics["test_loss"])
    assert ("test_kl" in metrics) == arch.endswith("vae")


def test_importance_on_conv1d_takes_the_rows_path_and_equals_the_naive_loop(caplog):
    """auto finds no local path (it handles Conv2d only), says why, and runs rows; its numbers are
    the naive loop's (float64 reference) to 1e-5 of the largest value."""
    ds = _series(n=40, channels=3, length=10)
    x = ds.images
    model = _built("conv1d_ae", x.shape[1:], output="linear").eval()
    stack, why = engine.model_stack(model, "latent")
    assert stack is None and "Conv1d" in why
    with caplog.at_level("INFO", logger="latent_atlas"):
        frame = block_table(model, "series_ae", x, list(range(6)), logits=False, method="auto", n_perm=2,
                            batch_size=64, sign_threshold=0.0, confidence=0.95, seed=3, device="cpu")
    assert ("importance.method auto: model series_ae, latent output: no local path (arch 'conv1d_ae' runs "
            "Conv1d layers; the local path handles Conv2d only); rows instead") in caplog.text
    assert "importance.method auto: model series_ae, latent output, on cpu: path rows" in caplog.text
    assert len(frame) > 0 and np.isfinite(frame["importance"]).all()

    exact = copy.deepcopy(model).double()
    ref = engine.pixel_importance(lambda t: exact.encode(t.double()), x, n_perm=3, seed=5, method="naive",
                                  device="cpu")  # a bare function: its device is not its module's
    got = engine.pixel_importance(model.encode, x, n_perm=3, seed=5, method="auto", batch_size=37)
    assert got.method == "rows" and ref.importance.max() > 0
    scale = ref.per_permutation.max()
    assert np.abs(got.per_permutation - ref.per_permutation).max() <= 1e-5 * scale
    np.testing.assert_array_equal(got.sign, ref.sign)
