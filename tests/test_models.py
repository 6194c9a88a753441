"""The model registry: shapes of every arch on every input size, the dense split, save/load."""

from __future__ import annotations

import pytest
import torch

from latent_atlas.schema import schema_node
from latent_atlas.models.archs import ARCH_DEFAULTS, extract_settings, latent_size, resolve_params
from latent_atlas.models.networks import build_model, first_layer_weights, load_model, save_model
from model_helpers import TINY_PARAMS

SHAPES = [(1, 28, 28), (1, 32, 32), (3, 96, 96), (1, 16, 16)]
ARCHS = sorted(ARCH_DEFAULTS)


def _built(arch, shape, params=None, n_classes=5):
    torch.manual_seed(0)
    return build_model(arch, shape, n_classes, TINY_PARAMS[arch] if params is None else params)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("arch", ARCHS)
def test_shapes(arch, shape):
    model = _built(arch, shape).eval()
    x = torch.rand(3, *shape)
    assert model.arch == arch and model.input_shape == shape
    assert model.latent_dim == latent_size(arch, TINY_PARAMS[arch])
    with torch.no_grad():
        if model.kind == "autoencoder":
            z = model.encode(x)
            assert z.shape == (3, model.latent_dim)
            x_hat = model.decode(z)
            assert x_hat.shape == x.shape
            assert float(x_hat.min()) >= 0 and float(x_hat.max()) <= 1
            assert torch.equal(model(x), x_hat)
            assert model.decode_logits(z).shape == x.shape
        else:
            assert model(x).shape == (3, 5)
            assert model.features(x).shape == (3, model.latent_dim)
            hidden = model.hidden(x)
            assert list(hidden) == model.hidden_layer_names()
            assert all(h.shape[0] == 3 and h.ndim == 2 and float(h.min()) >= 0 for h in hidden.values())
            assert torch.equal(list(hidden.values())[-1], model.features(x))


@pytest.mark.parametrize("arch", ARCHS)
def test_default_params_on_28x28(arch):
    model = build_model(arch, (1, 28, 28), 10, {})
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        out = model.encode(x) if model.kind == "autoencoder" else model.features(x)
    assert out.shape == (2, latent_size(arch, {}))
    if arch == "mlp_classifier":
        assert [h.shape[1] for h in model.hidden(x).values()] == [1250, 1000, 750, 500, 250, 100, 32]
    if arch == "cnn_classifier":
        assert model.latent_dim == 128


def test_vae_encode_is_the_posterior_mean():
    model = _built("conv_vae", (1, 28, 28)).eval()
    x = torch.rand(4, 1, 28, 28)
    mean, logvar = model.encode_distribution(x)
    assert torch.equal(model.encode(x), mean) and logvar.shape == mean.shape


@pytest.mark.parametrize("arch,params,outputs", [
    ("dense_ae", {"hidden": [], "latent_dim": 6}, ["latent"]),
    ("dense_ae", {"hidden": [12, 8], "latent_dim": 3, "latent_activation": "relu"}, ["latent"]),
    ("dense_vae", {"hidden": [12], "latent_dim": 2}, ["latent"]),
    ("mlp_classifier", {"hidden": [20, 12, 7]}, ["latent", "features", "logits"]),
])
def test_first_linear_split_reproduces_the_network(arch, params, outputs):
    model = _built(arch, (1, 16, 16), params).eval()
    x = torch.rand(7, 1, 16, 16)
    full = {"latent": model.encode if model.kind == "autoencoder" else model.features,
            "features": getattr(model, "features", None), "logits": model}
    with torch.no_grad():
        for output in outputs:
            linear, rest = model.first_linear_split(output)
            assert isinstance(linear, torch.nn.Linear) and linear.in_features == 256
            assert torch.equal(rest(linear(x.flatten(1))), full[output](x)), output


@pytest.mark.parametrize("arch", ["conv_ae", "conv_vae", "cnn_classifier"])
def test_conv_models_have_no_linear_split(arch):
    model = _built(arch, (1, 16, 16))
    assert model.first_linear_split("latent") is None and first_layer_weights(model) is None


def test_first_linear_split_rejects_unknown_output():
    with pytest.raises(ValueError, match="'latent'"):
        _built("dense_ae", (1, 16, 16)).first_linear_split("logits")


def test_first_layer_weights_are_images():
    model = _built("mlp_classifier", (3, 8, 8))
    assert first_layer_weights(model).shape == (24, 3, 8, 8)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip(tmp_path, arch):
    from latent_atlas.models.networks import stored_params

    model = _built(arch, (1, 16, 16)).eval()
    path = tmp_path / "model.pt"
    save_model(model, path, class_names=["a", "b", "c", "d", "e"], dataset="tiny")
    record = torch.load(path, weights_only=True)
    assert {"arch", "params", "input_shape", "n_classes", "class_names", "state_dict"} <= set(record)
    assert record["input_shape"] == [1, 16, 16] and record["params"] == stored_params(model)
    loaded = load_model(path)
    assert loaded.params == model.params
    assert not loaded.training and loaded.class_names == ["a", "b", "c", "d", "e"]
    assert loaded.record_extra == {"dataset": "tiny"}
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_every_configurable_arch_has_its_defaults_in_the_schema():
    assert sorted(schema_node("#/$defs/model/properties/arch")["enum"]) == ARCHS
    assert resolve_params("dense_ae", {"latent_dim": 3}) == {"hidden": [], "latent_dim": 3,
                                                             "latent_activation": "linear", "output": "sigmoid"}
    assert list(resolve_params("conv_ae", {})) == ["channels", "latent_dim", "kernel_size", "output"]


def test_an_image_autoencoders_record_keeps_its_bytes_without_the_default_output(tmp_path):
    """model.pt keeps `output` only where it is linear (a sigmoid model's record is the one written
    before outputs existed: params in their order, without the key); loading fills it back."""
    from latent_atlas.models.networks import build_model, load_model, model_record, save_model

    model = build_model("conv_ae", (1, 16, 16), 3, {"channels": [4, 4, 8, 8], "latent_dim": 4})
    assert model.output == "sigmoid" and list(model_record(model)["params"]) == ["channels", "latent_dim",
                                                                                  "kernel_size"]
    linear = build_model("conv_ae", (1, 16, 16), 3, {"channels": [4, 4, 8, 8], "latent_dim": 4, "output": "linear"})
    assert model_record(linear)["params"]["output"] == "linear"
    for m, name in ((model, "s.pt"), (linear, "l.pt")):
        save_model(m, tmp_path / name)
        assert load_model(tmp_path / name).output == m.output


def test_param_errors_name_the_key():
    with pytest.raises(ValueError, match="unknown params.*'hiden'"):
        resolve_params("dense_ae", {"hiden": [3]})
    with pytest.raises(ValueError, match="channels needs 4"):
        build_model("conv_ae", (1, 28, 28), 10, {"channels": [8, 16]})
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("resnet", (1, 28, 28), 10, {})
    with pytest.raises(ValueError, match="1 or 3 channels"):
        build_model("conv_ae", (2, 28, 28), 10, {})
    with pytest.raises(ValueError, match="extract: unknown keys.*'hidden'"):
        extract_settings({"extract": {"hidden": False}})
