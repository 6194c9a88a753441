"""The samples explained end to end: which they are, and what the model's first layer makes of them.

torch is imported inside `first_layer_activations` only: the other explain jobs never need it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from latent_atlas.devices import infer, model_device
from latent_atlas.explain.maps import split_rows

# Module types taken as the nonlinearity that follows a first layer.
_ACTIVATIONS = ("ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softplus", "Mish")

# The explained samples are a handful: one batch holds them.
_BATCH_SIZE = 256


def default_sample_ids(ids: pd.DataFrame, n: int, split: str) -> list[int]:
    """The first sample of `split`, then the first of each next new class, until `n` ids.

    With n=2 and the test split this is the first test sample and the first test sample of a
    different class: the walkthrough's pair of samples of different classes.
    """
    rows = split_rows(ids, split)
    chosen, seen = [], set()
    for sid, label in zip(rows["sample_id"].to_numpy(), rows["label"].to_numpy()):
        if label not in seen:
            chosen.append(int(sid))
            seen.add(label)
        if len(chosen) == n:
            break
    return chosen


def explained_sample_ids(ids: pd.DataFrame, sample_ids: Sequence[int]) -> list[int]:
    """Configured sample ids (`explain.samples.ids`, checked to exist in the id frame `ids`) or,
    when none are given, the first test sample and the first test sample of another class."""
    if not sample_ids:
        return default_sample_ids(ids, 2, "test")
    known = set(ids["sample_id"].to_numpy().tolist())
    missing = [int(s) for s in sample_ids if int(s) not in known]
    if missing:
        raise ValueError(f"explain.samples.ids: sample ids {missing} are not in the latents table")
    return [int(s) for s in sample_ids]


def positions_of(known: np.ndarray, sample_ids: Sequence[int], source: str) -> np.ndarray:
    """Positions (n,) int64 of `sample_ids` in the array of a file's sample ids `known` (its rows),
    in the order of `sample_ids`; `source` names the file in the error for ids it lacks."""
    pos = pd.Index(known).get_indexer(list(sample_ids))
    missing = [int(s) for s, p in zip(sample_ids, pos) if p < 0]
    if missing:
        raise ValueError(f"{source}: sample ids {missing} not found")
    return pos.astype(np.int64)


def first_layer_activations(model, images: np.ndarray) -> tuple[np.ndarray, str]:
    """Activations of the model's first layer (after its nonlinearity), without gradients.

    images : ndarray (B, C, H, W) float32. Returns (activations float32, kind): for conv models the
    first Conv2d's feature maps, (B, channels, H', W'), kind 'conv'; for dense models the first
    Linear layer's units, (B, units), kind 'dense'. Runs on the model's device.

    A `convs` ModuleList (models.networks.CNNClassifier, which applies ReLU functionally) gives
    relu(convs[0](x)). Otherwise the nonlinearity is the first activation module that follows the
    first Conv2d/Linear before the next one (an MLP classifier's ReLU); a layer without one (e.g. a
    linear bottleneck) is returned as is. Autoencoders run only their encoder. A model loaded from
    a torch.export program gives its own (`models.loaded.LoadedModel.first_layer`).
    """
    import torch

    first_layer = getattr(model, "first_layer", None)
    if callable(first_layer):
        layer, kind = first_layer()
        return infer(layer, images, _BATCH_SIZE, model_device(model)), kind
    convs = getattr(model, "convs", None)
    if isinstance(convs, torch.nn.ModuleList) and len(convs):
        # CNNClassifier: Conv2d layers in `convs`, each followed by a functional torch.relu.
        return infer(lambda x: torch.relu(convs[0](x)), images, _BATCH_SIZE, model_device(model)), "conv"
    modules = [m for m in model.modules() if not list(m.children())]
    first = next((i for i, m in enumerate(modules) if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))), None)
    if first is None:
        raise ValueError(f"model {type(model).__name__} has no Conv2d or Linear layer")
    target = modules[first]
    for m in modules[first + 1:]:
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            break
        if type(m).__name__ in _ACTIVATIONS:
            target = m
            break
    kind = "conv" if isinstance(modules[first], torch.nn.Conv2d) else "dense"
    # Autoencoders: the first layer belongs to the encoder; decoding would only cost time.
    forward = model.encode if getattr(model, "kind", None) == "autoencoder" and hasattr(model, "encode") else model

    def activations(x):
        captured = {}
        handle = target.register_forward_hook(lambda _m, _i, out: captured.setdefault("out", out))
        try:
            forward(x)
        finally:
            handle.remove()
        return captured["out"]

    return infer(activations, images, _BATCH_SIZE, model_device(model)), kind
