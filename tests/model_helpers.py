"""Tiny synthetic data for the model-stage tests (test_models, test_training, test_latents), and the
exports of a built-in model to the formats a user brings (test_byom, benchmarks/byom.py)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from latent_atlas.data.store import Dataset

# Small sizes of every arch, so each test trains in well under a second.
TINY_PARAMS = {
    "dense_ae": {"hidden": [16], "latent_dim": 4},
    "dense_vae": {"hidden": [16], "latent_dim": 2},
    "conv_ae": {"channels": [4, 4, 8, 8], "latent_dim": 4},
    "conv_vae": {"channels": [4, 4, 8, 8], "latent_dim": 2},
    "cnn_classifier": {"channels": [4, 8], "feature_dim": 16},
    "mlp_classifier": {"hidden": [24, 16]},
    "conv1d_ae": {"channels": [4, 8], "latent_dim": 4},
    "conv1d_vae": {"channels": [4, 8], "latent_dim": 2},
}


def tiny_dataset(n: int = 160, n_classes: int = 3, shape=(1, 16, 16), seed: int = 0,
                 test_fraction: float = 0.25) -> Dataset:
    """Images in [0, 1] whose class is a bright horizontal band at a class-specific height."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    labels = np.arange(n) % n_classes
    images = (rng.random((n, c, h, w)) * 0.3).astype(np.float32)
    band = max(h // n_classes, 1)
    for k in range(n_classes):
        images[labels == k, :, k * band:(k + 1) * band, :] += 0.6
    n_test = int(n * test_fraction)
    split = np.array(["train"] * (n - n_test) + ["test"] * n_test)
    return Dataset(np.clip(images, 0, 1), labels, [f"class{k}" for k in range(n_classes)], split,
                   np.arange(n, dtype=np.int64) + 1000, "tiny")


class MethodCall(torch.nn.Module):
    """One method of a model as a module's forward: what a user exports.

    With `normalised` (a source's `input_range` / `mean` / `std`) the module takes the inputs that
    normalisation gives and, for `decode`, returns outputs in its input range: the network a user
    trained on normalised images would be, so the loaded model must map them back to the native one.
    """

    def __init__(self, model, method: str, normalised: dict | None = None):
        from latent_atlas.models.loaded import LoadedModel

        super().__init__()
        self.model, self.method = model, method
        self.normalised = bool(normalised)
        if self.normalised:  # the loaded model's own x' = scale * x + shift, inverted here
            io = LoadedModel("torch_export", model.kind, model.input_shape, 1, 1, {}, normalised)
            self.register_buffer("scale", io.in_scale.clone())
            self.register_buffer("shift", io.in_shift.clone())
            self.lo, self.hi = io.range

    def forward(self, x):
        if not self.normalised:
            return getattr(self.model, self.method)(x)
        if self.method == "decode":
            return self.model.decode(x) * (self.hi - self.lo) + self.lo
        return getattr(self.model, self.method)((x - self.shift) / self.scale)


def export_model(model, folder: Path, formats=("torch_export", "onnx", "state_dict"),
                 normalised: dict | None = None) -> dict[str, dict]:
    """A built-in model as torch.export programs (.pt2), ONNX graphs and a state dict, each with a
    dynamic batch dimension: {format: its `source` entry} (encoder, and decoder or head).

    `normalised`: export networks that take normalised inputs (see MethodCall); the state dict is
    then not written (it holds the native weights, which take [0, 1] images).
    """
    folder.mkdir(parents=True, exist_ok=True)
    autoencoder = model.kind == "autoencoder"
    x = torch.rand(4, *model.input_shape)
    z = model.encode(x) if autoencoder else model.features(x)
    first = MethodCall(model, "encode" if autoencoder else "features", normalised)
    second = MethodCall(model, "decode", normalised) if autoencoder else model.head
    programs = (("encoder", first, x), ("decoder" if autoencoder else "head", second, z))
    batch = {0: torch.export.Dim("batch")}
    out: dict[str, dict] = {}
    if "torch_export" in formats:
        out["torch_export"] = {"format": "torch_export"}
        for name, module, example in programs:
            torch.export.save(torch.export.export(module, (example,), dynamic_shapes=(batch,)), folder / f"{name}.pt2")
            out["torch_export"][name] = str(folder / f"{name}.pt2")
    if "onnx" in formats:
        out["onnx"] = {"format": "onnx"}
        for name, module, example in programs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (example,), str(folder / f"{name}.onnx"), dynamo=False,
                                  input_names=["input"], dynamic_axes={"input": {0: "batch"}})
            out["onnx"][name] = str(folder / f"{name}.onnx")
    if "state_dict" in formats and not normalised:
        torch.save(model.state_dict(), folder / "weights.pt")
        out["state_dict"] = {"format": "state_dict", "weights": str(folder / "weights.pt")}
    if normalised:
        for source in out.values():
            source.update(normalised)
    return out


def pickled_call(path: Path, func, *args) -> Path:
    """A torch.save file holding an object whose unpickling calls `func(*args)`: what reading with
    weights_only=True must refuse, naming the pickled global (`func`, or getattr for a method)."""

    class Call:
        def __reduce__(self):
            return func, args

    torch.save({"x": Call()}, path)
    return path


def randomise_batch_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so that folding them is tested."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.3)
            if m.affine:
                m.weight.data.copy_(torch.randn(n, generator=gen))
                m.bias.data.copy_(torch.randn(n, generator=gen))
    return model.eval()


class UserCNN(nn.Module):
    """A CNN as users train it: input normalisation, stride-2 Conv2d + BatchNorm2d + ReLU blocks,
    a 64-D feature layer (Linear + BatchNorm1d + ReLU)."""

    def __init__(self, channels=3, size=16, act=nn.ReLU):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406][:channels]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225][:channels]).view(1, -1, 1, 1))
        self.body = nn.Sequential(
            nn.Conv2d(channels, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), act(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), act(),
            nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16 * (size // 8) ** 2, 64), nn.BatchNorm1d(64), act(),
            nn.Dropout(0.3))

    def forward(self, x):
        return self.body((x - self.mean) / self.std)
