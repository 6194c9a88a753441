"""Which layer and units an optimisation targets, and that layer's activation as a function of the
input image.

Layers are numbered as the study counts them: hidden layers 1..L (1-based, in network order) and
the output layer L+1 (also called "output"); units are 0-based. A classifier offers
`hidden_layer_names()`, `hidden(x)` (post-ReLU activations by layer name), `forward(x)` (logits)
and `input_shape`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from latent_atlas.devices import model_device

OUTPUT = "output"
OBJECTIVES = ("probability", "log_probability")

LayerFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Layer:
    """A resolved layer reference: 1-based `number`, the model's `name` (or "output"), `units`."""

    number: int
    name: str
    units: int

    @property
    def is_output(self) -> bool:
        return self.name == OUTPUT


def hidden_layer_sizes(model: nn.Module) -> list[tuple[str, int]]:
    """[(name, units), ...] of the classifier's hidden layers in network order."""
    names = list(model.hidden_layer_names())
    x = torch.zeros((1, *model.input_shape), device=model_device(model))
    with torch.no_grad():  # one probe image, for the sizes only
        acts = model.hidden(x)
    return [(name, int(acts[name].shape[1])) for name in names]


def resolve_layer(ref: int | str, model: nn.Module, key: str = "layer") -> Layer:
    """Resolve a layer reference: 1..L a hidden layer (1-based), L+1 or "output" the output layer.

    Raises ValueError naming `key`, the reference and the layers the model has.
    """
    sizes = hidden_layer_sizes(model)
    n_hidden = len(sizes)
    n_classes = int(model.n_classes) if hasattr(model, "n_classes") else None
    if isinstance(ref, str) and ref.lower() == OUTPUT:
        ref = n_hidden + 1
    if isinstance(ref, bool) or not isinstance(ref, (int, np.integer)) or not 1 <= ref <= n_hidden + 1:
        raise ValueError(
            f"{key}: layer {ref!r} does not exist; the model has hidden layers 1..{n_hidden} "
            f"(1-based, as the study counts them) and the output layer {n_hidden + 1} ('output')"
        )
    ref = int(ref)
    if ref == n_hidden + 1:
        if n_classes is None:
            with torch.no_grad():
                n_classes = int(model(torch.zeros((1, *model.input_shape),
                                                  device=model_device(model))).shape[1])
        return Layer(ref, OUTPUT, n_classes)
    name, units = sizes[ref - 1]
    return Layer(ref, name, units)


def check_units(units: Sequence[int], layer: Layer, key: str = "units") -> list[int]:
    """Validate 0-based unit indices against a layer's size."""
    units = [int(u) for u in units]
    bad = [u for u in units if not 0 <= u < layer.units]
    if bad:
        raise ValueError(
            f"{key}: units {bad} do not exist in layer {layer.number} ({layer.name}, "
            f"{layer.units} units, 0-based indices 0..{layer.units - 1})"
        )
    return units


def first_units(units: int | Sequence[int], layer: Layer, key: str = "units") -> list[int]:
    """An int n: the layer's first n units (all if it has fewer); a list: those units, checked."""
    if isinstance(units, (int, np.integer)):
        return list(range(min(int(units), layer.units)))
    return check_units(units, layer, key)


def layer_function(model: nn.Module, layer: Layer, objective: str) -> LayerFn:
    """x (B, C, H, W) -> (B, units): the layer's activation, differentiable.

    Hidden layers: post-ReLU activation from `model.hidden(x)`. Output layer: the softmax
    probability (`objective="probability"`, the study's) or its log (`"log_probability"`, whose
    gradient does not vanish from a confidently classified start).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if layer.is_output:
        if objective == "log_probability":
            return lambda x: torch.log_softmax(model(x), dim=1)
        return lambda x: torch.softmax(model(x), dim=1)
    return lambda x: model.hidden(x)[layer.name]
