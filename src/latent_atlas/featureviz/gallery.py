"""Figure set 5: a gallery of one hidden layer's units, each optimised with the same
regularisation, and the choice of a start from which each unit can move at all.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from torch import nn

from latent_atlas.featureviz.describe import describe_images, layer_activations, stack_results
from latent_atlas.featureviz.layers import Layer, first_units, resolve_layer
from latent_atlas.featureviz.optimise import Optimiser


def auto_starts(model: nn.Module, layer: Layer, units: Sequence[int], opt: Optimiser,
                images: np.ndarray | None = None, image_ids: Sequence[int] | None = None
                ) -> tuple[np.ndarray, list[str]]:
    """A start per unit from which gradient ascent can move it: a unit at 0 (ReLU off) gets no
    gradient and would stay blank.

    The near-zero image where the unit is active there; else a seeded (`opt.seed`) random image
    where it is active there; else, when real `images` (M, C, H, W) are given, the one that
    activates the unit most (if any does). A unit that none of these activates keeps the random
    start (and stays at 0). Returns the starts (len(units), C, H, W) and each start's kind
    ("zero", "random" or "image:<id>", the image's entry of `image_ids`, default its row of
    `images`).
    """
    zero = opt.starts("zero", len(units), model)
    rand = opt.starts("random", len(units), model)
    on_zero = describe_images(model, zero, layer, units)["activation"].to_numpy() > 0
    on_rand = describe_images(model, rand, layer, units)["activation"].to_numpy() > 0
    x0 = np.where(on_zero[:, None, None, None], zero, rand).astype(np.float32)
    kinds = ["zero" if z else "random" for z in on_zero]
    off = np.flatnonzero(~on_zero & ~on_rand)
    if images is not None and len(off) and len(images):
        acts = layer_activations(model, np.asarray(images, dtype=np.float32), layer)[:, np.asarray(units)[off]]
        best = acts.argmax(axis=0)
        for i, row, value in zip(off, best, acts[best, np.arange(len(off))]):
            if value > 0:
                x0[i] = images[row]
                kinds[i] = f"image:{int(image_ids[row] if image_ids is not None else row)}"
    return x0, kinds


def gallery(model: nn.Module, class_names: Sequence[str], opt: Optimiser, *, layer: int,
            units: int | Sequence[int], tv: float, l1: float, steps: int, start: str, jitter: bool,
            penalty: float, images: np.ndarray | None = None, image_ids: Sequence[int] | None = None
            ) -> tuple[pd.DataFrame, np.ndarray]:
    """Units of one hidden layer, each optimised with the same regularisation (one batch).

    `units`: an int n (the first n units) or a list of 0-based indices. `start="auto"`: see
    `auto_starts` (`images`: real images to fall back on for units neither the near-zero nor a
    random image activates). Table: `describe_images` columns + `tv_weight`, `l1_weight`, `steps`,
    `start` (which start each unit got), `index` first; images (N, C, H, W) float32.
    """
    lay = resolve_layer(layer, model, "featureviz.gallery.layers")
    units = first_units(units, lay, "featureviz.gallery.units")
    if start == "auto":
        x0, kinds = auto_starts(model, lay, units, opt, images, image_ids)
    else:
        x0, kinds = opt.starts(start, len(units), model), [start] * len(units)
    img = opt.run(model, lay, units, x0, steps=steps, tv=tv, l1=l1, penalty=penalty, jitter=jitter,
                  clip=True, desc=f"gallery layer {lay.number}")
    df = describe_images(model, img, lay, units, class_names)
    df["tv_weight"] = tv
    df["l1_weight"] = l1
    df["steps"] = steps
    df["start"] = kinds
    return stack_results([df], [img])
