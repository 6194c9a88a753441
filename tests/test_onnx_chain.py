"""ONNX graphs as torch layer chains (models.onnx_chain): onnx2torch's conversion checked against
onnxruntime, the chain read from it and folded (models.chain.fold_chain), and ONNX files whose
weights sit in an external data file (what the README's torch.onnx.export call writes)."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from model_helpers import UserCNN, randomise_batch_norms
from onnx import helper, numpy_helper
from onnx.external_data_helper import uses_external_data
from torch import nn
from torch.nn import functional as F

from latent_atlas.models.chain import fold_chain
from latent_atlas.models.loaded import OnnxProgram, import_record, model_from_record
from latent_atlas.models.onnx_chain import onnx_bytes, read_torch_chain, torch_from_onnx

SHAPE = (3, 16, 16)
KEY = "models.user.source.encoder"


def _user_cnn(act=nn.ReLU, pool="avg") -> nn.Module:
    """UserCNN (normalisation, stride-2 Conv2d + BatchNorm2d blocks, Linear 64 + BatchNorm1d) with
    a 2x2 average pooling or global average pooling before the Flatten."""
    model = UserCNN(act=act)
    if pool == "global":
        model.body[6], model.body[8] = nn.AdaptiveAvgPool2d(1), nn.Linear(16, 64)
    return randomise_batch_norms(model)


def _export(module: nn.Module, path, batch_norm_nodes=False):
    """`module` exported as tests/model_helpers.py does (TorchScript exporter, dynamic batch). The
    exporter folds an eval BatchNorm into the Conv2d before it; `batch_norm_nodes` keeps it a node of
    its own (TrainingMode.PRESERVE of an eval model), as other exporters leave it."""
    training = torch.onnx.TrainingMode.PRESERVE if batch_norm_nodes else torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.rand(4, *SHAPE),), str(path), dynamo=False, training=training,
                          input_names=["images"], dynamic_axes={"images": {0: "batch"}})
    return path


def _readme_export(encoder: nn.Module, path):
    """The export call of config/README.md ("Bring your own model"): torch's default exporter
    (dynamo, with onnxscript), which writes the weights to `<path>.data`."""
    x = torch.rand(8, *SHAPE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch advises dynamic_shapes over dynamic_axes
        torch.onnx.export(encoder.eval(), (x,), str(path), input_names=["images"],
                          dynamic_axes={"images": {0: "batch"}})
    return path


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *SHAPE), dtype=np.float32)


def _folded_matches_onnxruntime(data: bytes, layers: list[nn.Module]) -> None:
    """fold_chain(layers) gives onnxruntime's outputs on new images, to 1e-5 of the largest."""
    folded = fold_chain(layers, SHAPE)
    names = [type(m).__name__ for m in folded]
    assert not any("BatchNorm" in n for n in names), names
    x = torch.from_numpy(_images(16, seed=5))
    want = next(iter(OnnxProgram(data, "graph")(x).values()))
    with torch.no_grad():
        got = nn.Sequential(*folded)(x)
    assert got.shape == want.shape
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()


@pytest.mark.parametrize("act, pool, batch_norm_nodes", [(nn.ReLU, "avg", True), (nn.ReLU, "global", False),
                                                         (nn.GELU, "avg", True), (nn.SiLU, "global", True)])
def test_a_batch_norm_cnn_converts_and_its_folded_chain_gives_onnxruntimes_outputs(tmp_path, act, pool,
                                                                                   batch_norm_nodes):
    data = _export(_user_cnn(act, pool), tmp_path / "encoder.onnx", batch_norm_nodes).read_bytes()
    module, why = torch_from_onnx(data, torch.from_numpy(_images(8, seed=1)), "encoder")
    assert module is not None and why == "", why
    assert not module.training
    layers, why = read_torch_chain(module)
    assert layers is not None and why == "", why
    names = [type(m).__name__ for m in layers]
    # (x - mean) / std, two conv blocks, the pooling, Flatten, Linear + BatchNorm1d + activation
    assert names[:2] == ["ChannelAffine", "ChannelAffine"], names
    assert names.count("BatchNorm2d") == (2 if batch_norm_nodes else 0), names
    assert names.count("BatchNorm1d") == 1, names  # the exporter folds BatchNorm into Conv only
    assert names.count(act.__name__) == 3 and "AvgPool2d" in names and "Flatten" in names, names
    _folded_matches_onnxruntime(data, layers)


def test_the_readme_export_is_stored_with_its_external_data_and_reads_as_a_chain(tmp_path):
    model = _user_cnn(nn.ReLU, "global")
    path = _readme_export(model, tmp_path / "encoder.onnx")
    data_file = tmp_path / "encoder.onnx.data"
    assert data_file.is_file()  # torch keeps the weights beside the graph
    whole = onnx_bytes(path, KEY)
    assert not any(uses_external_data(t) for t in onnx.load_from_string(whole).graph.initializer)
    images = _images(16, seed=2)
    source = {"format": "onnx", "encoder": str(path), "latent_output": 0, "logits_output": None,
              "input_name": None, "input_range": None, "mean": None, "std": None}
    record = import_record("user", "autoencoder", source, images, 0, [], "tiny")
    assert record["programs"]["encoder"].numpy().tobytes() == whole
    data_file.unlink()  # the record holds the whole graph
    loaded = model_from_record(record)
    x = torch.from_numpy(images)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), model(x), rtol=1e-5, atol=1e-5)
    module, why = torch_from_onnx(whole, x[:8], KEY)
    assert module is not None, why
    layers, why = read_torch_chain(module)
    assert layers is not None, why
    _folded_matches_onnxruntime(whole, layers)


def test_onnx_bytes_embeds_external_data_and_names_a_missing_data_file(tmp_path):
    plain = _export(_user_cnn(), tmp_path / "plain.onnx")
    assert onnx_bytes(plain, KEY) == plain.read_bytes()  # no external data: the file's bytes
    split = tmp_path / "split" / "model.onnx"
    split.parent.mkdir()
    onnx.save_model(onnx.load(plain), str(split), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    whole = onnx_bytes(split, KEY)
    x = torch.from_numpy(_images(4, seed=3))
    want = OnnxProgram(plain.read_bytes(), "plain")(x)
    got = OnnxProgram(whole, "whole")(x)
    assert all(torch.equal(got[k], want[k]) for k in want)
    # a graph over protobuf's limit (its external data says so) is refused before anything is read
    big = onnx.load(split, load_external_data=False)
    for entry in big.graph.initializer[0].external_data:
        if entry.key == "length":
            entry.value = str(3 * 2**30)
    big_path = split.with_name("big.onnx")
    big_path.write_bytes(big.SerializeToString())
    with pytest.raises(ValueError, match=r"3\.00 GiB.*limited to 2 GiB"):
        onnx_bytes(big_path, KEY)
    data_file = split.with_name("model.onnx.data")
    data_file.unlink()
    with pytest.raises(ValueError) as err:
        onnx_bytes(split, KEY)
    message = str(err.value)
    assert message.startswith(KEY) and str(split) in message and f"{data_file}, which is missing" in message


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc((h + self.conv2(h)).flatten(1))


def test_a_residual_graph_is_refused_with_the_node_named(tmp_path):
    data = _export(Residual(), tmp_path / "residual.onnx").read_bytes()
    module, why = torch_from_onnx(data, torch.rand(4, *SHAPE), "residual")
    assert module is not None, why  # onnx2torch converts it; it is not a chain
    layers, why = read_torch_chain(module)
    assert layers is None
    assert "node 'Add' (Add): reads 2 activations (a residual or branching block)" in why, why


def _graph_with(op_type: str, **attributes) -> bytes:
    """images -> Conv -> `op_type` -> Flatten, built with onnx.helper (torch exports neither op)."""
    weight = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["images", "weight"], ["conv"], name="conv"),
             helper.make_node(op_type, ["conv"], ["act"], name="act", **attributes),
             helper.make_node("Flatten", ["act"], ["out"], name="flatten")]
    graph = helper.make_graph(
        nodes, "net", [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["batch", *SHAPE])],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, ["batch", 4 * 14 * 14])],
        [numpy_helper.from_array(weight, "weight")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=9).SerializeToString()


@pytest.mark.parametrize("op_type, attributes, act", [("Mish", {}, F.mish),
                                                       ("Shrink", {"lambd": 0.5}, lambda x: F.hardshrink(x, 0.5))])
def test_an_op_onnx2torch_does_not_map_is_named_and_onnxruntime_still_runs_it(op_type, attributes, act):
    data = _graph_with(op_type, **attributes)
    x = torch.rand(4, *SHAPE)
    module, why = torch_from_onnx(data, x, KEY)
    assert module is None
    assert why == f"{KEY}: node 'act' ({op_type}, opset 20): onnx2torch has no converter for it", why
    weight = torch.tensor(numpy_helper.to_array(onnx.load_from_string(data).graph.initializer[0]))
    with torch.no_grad():  # the caller keeps onnxruntime
        want = act(F.conv2d(x, weight)).flatten(1)
    torch.testing.assert_close(next(iter(OnnxProgram(data, KEY)(x).values())), want, rtol=1e-5, atol=1e-5)
