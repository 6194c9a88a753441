"""Layer chains of networks trained elsewhere: reading torch.export graphs (models.loaded.read_chain)
and folding BatchNorm and input normalisations (models.chain.fold_chain), so that a user's real
CNN takes the fast importance paths and explain's first-layer reading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import UserCNN, randomise_batch_norms
from torch import nn

from latent_atlas.importance.engine import model_split, model_stack, pixel_importance
from latent_atlas.models.chain import ChannelAffine, fold_chain
from latent_atlas.models.loaded import import_record, model_from_record, read_chain

BATCH = {0: torch.export.Dim("batch")}


def _export(module: nn.Module, shape) -> nn.Module:
    x = torch.rand(4, *shape)
    return torch.export.export(module.eval(), (x,), dynamic_shapes=(BATCH,)).module()


def test_fold_chain_is_exact_and_leaves_the_original_layers_alone():
    gen = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, groups=2)  # no padding: an affine map before it folds in
    padded = nn.Conv2d(6, 5, 3, padding=1)  # padding: an affine map before it stays a step
    affine_in = ChannelAffine(torch.rand(4, generator=gen) + 0.5, torch.randn(4, generator=gen))
    bn = randomise_batch_norms(nn.BatchNorm2d(6))
    bn2 = randomise_batch_norms(nn.BatchNorm2d(5), seed=3)
    linear = nn.Linear(5 * 4 * 4, 7)
    bn1 = randomise_batch_norms(nn.BatchNorm1d(7), seed=2)
    affine_mid = ChannelAffine(torch.rand(6, generator=gen) + 0.5, torch.randn(6, generator=gen))
    chain = [affine_in, conv, bn, nn.ReLU(), affine_mid, padded, nn.MaxPool2d(2), bn2, nn.Flatten(), linear, bn1, nn.Dropout(0.5), nn.Tanh()]
    before = [p.detach().clone() for m in chain for p in m.parameters()]
    folded = fold_chain(chain, (4, 10, 10))
    kinds = [type(m).__name__ for m in folded]
    # the first affine and the BatchNorm go into conv; the affine before the padded conv stays a
    # step; bn2 (after the pooling, before Flatten) and bn1 go into the Linear; dropout is dropped
    assert kinds == ["Conv2d", "ReLU", "ChannelAffine", "Conv2d", "MaxPool2d", "Flatten", "Linear", "Tanh"], kinds
    x = torch.rand(8, 4, 10, 10, generator=gen) * 3 - 1
    with torch.no_grad():
        want = nn.Sequential(*chain).eval()(x)
        got = nn.Sequential(*folded)(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(before, [p for m in chain for p in m.parameters()]))
    # an affine map before Flatten -> Linear folds per channel, the positions known from the shape
    chain2 = [nn.Conv2d(2, 3, 3), ChannelAffine(torch.tensor([2.0, 0.5, -1.0]), torch.tensor([0.1, -0.2, 0.3])),
              nn.Flatten(), nn.Linear(3 * 6 * 6, 4)]
    folded2 = fold_chain(chain2, (2, 8, 8))
    assert [type(m).__name__ for m in folded2] == ["Conv2d", "Flatten", "Linear"]
    x2 = torch.rand(5, 2, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(nn.Sequential(*folded2)(x2), nn.Sequential(*chain2)(x2), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="training mode"):
        fold_chain([nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2).train()])


def test_a_user_cnn_with_batch_norm_and_normalisation_reads_as_a_folded_chain():
    model = randomise_batch_norms(UserCNN(act=nn.SiLU))
    program = _export(model, (3, 16, 16))
    layers, why = read_chain(program)
    assert why == "" and layers is not None
    names = [type(m).__name__ for m in layers]
    assert names.count("BatchNorm2d") == 2 and names.count("BatchNorm1d") == 1 and "ChannelAffine" in names
    folded = fold_chain(layers, (3, 16, 16))
    names = [type(m).__name__ for m in folded]
    assert not any("BatchNorm" in n or n == "Dropout" for n in names), names
    assert names[0] == "ChannelAffine"  # the normalisation stays before the padded first conv
    x = torch.rand(16, 3, 16, 16)
    with torch.no_grad():
        want = program(x)
        got = nn.Sequential(*folded)(x)
    assert (got - want).abs().max() <= 1e-6 * max(1.0, float(want.abs().max()))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        h = h + self.conv2(h)
        return self.fc(h.flatten(1))


def test_a_residual_block_is_refused_with_the_node_named():
    layers, why = read_chain(_export(Residual(), (1, 8, 8)))
    assert layers is None
    assert "node 'add'" in why and "residual or branching" in why, why


def _loaded(model: nn.Module, tmp_path, images, settings: dict | None = None, kind="classifier"):
    """`model` (features of a classifier) exported with torch.export and imported as users do."""
    path = tmp_path / "encoder.pt2"
    torch.export.save(torch.export.export(model.eval(), (torch.from_numpy(images[:4]),), dynamic_shapes=(BATCH,)),
                      path)
    head = nn.Linear(64, 3)
    head_path = tmp_path / "head.pt2"
    torch.export.save(torch.export.export(head, (torch.rand(4, 64),), dynamic_shapes=(BATCH,)), head_path)
    source = {"format": "torch_export", "encoder": str(path), "head": str(head_path), "latent_output": 0,
              "logits_output": None, "input_name": None, "input_range": None, "mean": None, "std": None,
              **(settings or {})}
    record = import_record("user", kind, source, images, 3, ["a", "b", "c"], "tiny")
    return model_from_record(record)


@pytest.mark.parametrize("shape, settings", [
    ((3, 16, 16), None),
    ((3, 16, 16), {"input_range": "-1,1", "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.4, 2.0]}),
    ((1, 28, 28), None),  # 28 -> 14 -> 7 -> pooled to 3: the pooling never reads the last row and column
])
def test_a_batch_norm_cnn_takes_the_local_path_with_the_naive_loops_values(tmp_path, shape, settings):
    """A user's exported CNN with BatchNorm and normalisation (in the graph, and in the source's
    settings) goes through importance on the local path, as exact as the naive loop: both float32,
    compared with a float64 naive loop of the original network. These networks' features move
    little under one pixel (importance ~1e-5 of the squared features), so float32's rounding of
    the features is ~1e-5 of the largest value for either path."""
    torch.manual_seed(0)
    images = np.random.default_rng(0).random((40, *shape), dtype=np.float32)
    model = randomise_batch_norms(UserCNN(channels=shape[0], size=shape[1]))
    loaded = _loaded(model, tmp_path, images, settings)
    assert model_split(loaded, "features") is None
    stack, why = model_stack(loaded, "features")
    assert stack is not None, why
    hw = shape[1] * shape[2]
    pixels = [0, 17, hw // 2 + 3, hw - 1, hw - 2 - shape[2]]
    fast = pixel_importance(loaded.features, images, pixels, n_perm=2, seed=3, stack=stack)
    slow = pixel_importance(loaded.features, images, pixels, n_perm=2, seed=3, method="naive")
    assert fast.method == "local" and slow.method == "naive"
    exact = model.double()
    scale64, shift64 = loaded.in_scale.double(), loaded.in_shift.double()
    ref = pixel_importance(lambda x: exact(x.double() * scale64 + shift64), images, pixels, n_perm=2, seed=3,
                           method="naive", device="cpu").per_permutation
    scale = np.abs(ref).max()
    assert scale > 0
    fast_error, slow_error = np.abs(fast.per_permutation - ref).max(), np.abs(slow.per_permutation - ref).max()
    assert fast_error <= max(2 * slow_error, 1e-6 * scale)  # as exact as the float32 loop
    assert fast_error <= 5e-5 * scale and slow_error <= 5e-5 * scale


def test_explain_reads_the_first_layer_of_a_batch_norm_program(tmp_path):
    """first_layer: the first conv with its BatchNorm and the input normalisation folded in, then
    its activation: the first block of the user's network on [0, 1] images."""
    images = np.random.default_rng(1).random((8, 3, 16, 16), dtype=np.float32)
    model = randomise_batch_norms(UserCNN())
    loaded = _loaded(model, tmp_path, images)
    layer, kind = loaded.first_layer()
    x = torch.from_numpy(images)
    with torch.no_grad():
        want = model.body[:3]((x - model.mean) / model.std)
        got = layer(x)
    assert kind == "conv" and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_program_that_cannot_be_read_says_which_node_stops_it(tmp_path):
    images = np.random.default_rng(2).random((8, 3, 16, 16), dtype=np.float32)
    loaded = _loaded(TestGate(), tmp_path, images)
    stack, why = model_stack(loaded, "features")
    assert stack is None and "torch_export encoder: node" in why and "reads 2 activations" in why, why
    with pytest.raises(ValueError, match="torch_export encoder: node"):
        loaded.first_layer()


def test_explain_refuses_a_program_whose_first_layer_cannot_be_read_at_config_check(tmp_path, monkeypatch):
    """A torch.export encoder that is no layer chain is refused for explain when the config is
    checked (naming the node), before any job runs; a BatchNorm CNN passes the check."""
    from latent_atlas.config import ConfigError, check_config

    monkeypatch.chdir(tmp_path)
    gate = TestGate()
    torch.export.save(torch.export.export(gate.eval(), (torch.rand(4, 3, 16, 16),), dynamic_shapes=(BATCH,)),
                      tmp_path / "gate.pt2")
    torch.export.save(torch.export.export(randomise_batch_norms(UserCNN()), (torch.rand(4, 3, 16, 16),),
                                          dynamic_shapes=(BATCH,)), tmp_path / "bn.pt2")

    def config(encoder):
        source = {"format": "torch_export", "encoder": encoder, "logits_output": 0}
        return {"datasets": {"tiny": {"source": "sklearn_digits"}},
                "models": {"user": {"dataset": "tiny", "kind": "classifier", "source": source}},
                "explain": {"models": ["user"]}}

    check_config(config("bn.pt2"))
    with pytest.raises(ConfigError, match=r"explain\.models\[0\]: model 'user' cannot run explain: its encoder "
                                          r"gate\.pt2 cannot be read as a chain of layers: node '\w+' .*reads 2 activations"):
        check_config(config("gate.pt2"))


class TestGate(nn.Module):
    """conv -> ReLU -> x * sigmoid(mean of x over the map): a gate reads the activation twice."""
    __test__ = False

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 64)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc((h * torch.sigmoid(h.mean(dim=(2, 3), keepdim=True))).flatten(1))


def test_featureviz_gets_the_gradients_of_a_batch_norm_program(tmp_path):
    """featureviz optimises images through the program: the loaded BatchNorm CNN passes the
    original network's input gradients (of a class output through its head)."""
    torch.manual_seed(0)
    images = np.random.default_rng(3).random((8, 3, 16, 16), dtype=np.float32)
    model = randomise_batch_norms(UserCNN())
    loaded = _loaded(model, tmp_path, images)
    head = loaded.programs["head"]
    x = torch.rand(3, 3, 16, 16, requires_grad=True)
    torch.log_softmax(loaded(x), 1)[:, 2].sum().backward()
    got, x.grad = x.grad.clone(), None
    torch.log_softmax(head(model(x)), 1)[:, 2].sum().backward()
    assert got.abs().sum() > 0
    torch.testing.assert_close(got, x.grad, rtol=1e-5, atol=1e-6)
