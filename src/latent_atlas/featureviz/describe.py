"""What the network makes of images: class probabilities, a layer's activations, and the table
that describes each optimised image (its target's activation, the ratio to the runner-up unit,
the network's top classes, the image's L1 and TV).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from latent_atlas.devices import infer, model_device
from latent_atlas.featureviz.layers import Layer
from latent_atlas.featureviz.optimise import l1_norm, total_variation


def class_probabilities(model: nn.Module, images: np.ndarray, batch_size: int = 1024,
                        device: torch.device | str | None = None) -> np.ndarray:
    """Softmax probabilities (N, K) float32 of float32 `images` (N, C, H, W), in batches."""
    return infer(lambda x: torch.softmax(model(x), dim=1), images, batch_size,
                 device if device is not None else model_device(model))


def layer_activations(model: nn.Module, images: np.ndarray, layer: Layer, batch_size: int = 1024,
                      device: torch.device | str | None = None) -> np.ndarray:
    """Activations (N, units) float32 of `layer` for float32 `images` (N, C, H, W), in batches:
    softmax probabilities for the output layer, post-ReLU values for hidden layers."""
    if layer.is_output:
        return class_probabilities(model, images, batch_size, device)
    return infer(lambda x: model.hidden(x)[layer.name], images, batch_size,
                 device if device is not None else model_device(model))


def describe_images(
    model: nn.Module,
    images: np.ndarray,
    layer: Layer,
    targets: Sequence[int],
    class_names: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    top: int = 3,
) -> pd.DataFrame:
    """What the network makes of each optimised image (N, C, H, W), target unit `targets[i]`.

    Returns one row per image: `layer` (1-based), `layer_name`, `unit`, `activation` (the target's:
    softmax probability for the output layer, post-ReLU value for hidden layers), `next_unit`,
    `next_activation` (the highest other unit of the layer), `ratio` = activation / next (inf when
    the next is 0 and the target is positive, 0 when both are 0), `layer_mean` (mean activation
    of the other units), `pred`, and the network's top-`top` classes `top{k}`, `top{k}_name`,
    `top{k}_prob` (k = 1..top), plus `l1` and `tv` of the image.
    """
    x = np.asarray(images, dtype=np.float32)
    whole = max(len(x), 1)  # the images go through the network as one batch, like the optimisation
    probs = class_probabilities(model, x, whole, device)
    acts = probs if layer.is_output else layer_activations(model, x, layer, whole, device)
    probs = probs.astype(np.float64)
    acts = acts.astype(np.float64)
    device = device if device is not None else model_device(model)
    tv = infer(total_variation, x, whole, device)
    l1 = infer(l1_norm, x, whole, device)
    targets = np.asarray(targets, dtype=np.int64)
    n = len(targets)
    rows = np.arange(n)
    target_act = acts[rows, targets]
    others = acts.copy()
    others[rows, targets] = -np.inf
    next_unit = others.argmax(axis=1) if acts.shape[1] > 1 else np.zeros(n, dtype=np.int64)
    next_act = others[rows, next_unit] if acts.shape[1] > 1 else np.zeros(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(next_act > 0, target_act / np.where(next_act > 0, next_act, 1.0),
                         np.where(target_act > 0, np.inf, 0.0))
    layer_mean = (acts.sum(axis=1) - target_act) / max(acts.shape[1] - 1, 1)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    if class_names is None:
        class_names = [str(c) for c in range(probs.shape[1])]
    df = pd.DataFrame({
        "layer": np.full(n, layer.number, dtype=np.int64),
        "layer_name": [layer.name] * n,
        "unit": targets,
        "activation": target_act,
        "next_unit": next_unit.astype(np.int64),
        "next_activation": next_act,
        "ratio": ratio,
        "layer_mean": layer_mean,
        "pred": order[:, 0].astype(np.int64),
    })
    for k in range(order.shape[1]):
        df[f"top{k + 1}"] = order[:, k].astype(np.int64)
        df[f"top{k + 1}_name"] = [str(class_names[c]) for c in order[:, k]]
        df[f"top{k + 1}_prob"] = probs[rows, order[:, k]]
    df["l1"] = l1.astype(np.float64)
    df["tv"] = tv.astype(np.float64)
    return df


def stack_results(tables: Sequence[pd.DataFrame], images: Sequence[np.ndarray]
                  ) -> tuple[pd.DataFrame, np.ndarray]:
    """One figure set's parts as one table with an `index` column (first) and the images
    (N, C, H, W) float32 whose row `index` each table row describes."""
    df = pd.concat(tables, ignore_index=True)
    df.insert(0, "index", np.arange(len(df), dtype=np.int64))
    return df, np.concatenate(images).astype(np.float32)
