"""Figure sets 1, 3 and 4: the same neurons optimised under a range of settings, each set one
batch per layer: without and with clipping (unregularised), a series of TV weights (TV sweep),
and every pair of TV weight and L1 fraction (TV x L1 grid).

Each returns (table, images): `describe.describe_images` columns plus the settings of each image,
an `index` column first, and the images (N, C, H, W) float32 with row `index` of the table.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from torch import nn

from latent_atlas.data.store import CHUNK_BYTES, chunk_rows
from latent_atlas.featureviz.describe import describe_images, stack_results
from latent_atlas.featureviz.layers import OUTPUT, check_units, first_units, resolve_layer
from latent_atlas.featureviz.optimise import Optimiser


def unregularised_outputs(model: nn.Module, class_names: Sequence[str], opt: Optimiser, *,
                          steps_output: int, steps_hidden: int, hidden_layer: int | None,
                          hidden_units: int | Sequence[int], start: str
                          ) -> tuple[pd.DataFrame, np.ndarray]:
    """Figure set 1: each output neuron (and optional hidden units) optimised without
    regularisation, once without clipping and once with clipping.

    `hidden_units`: an int n (the first n units of `hidden_layer`) or a list of unit indices.
    Table columns added: `clip`, `steps`, `start`.
    """
    out = resolve_layer(OUTPUT, model)
    jobs = [(out, list(range(out.units)), steps_output)]
    if hidden_layer is not None:
        hl = resolve_layer(hidden_layer, model, "featureviz.unregularised.hidden_layer")
        units = first_units(hidden_units, hl, "featureviz.unregularised.hidden_units")
        jobs.append((hl, units, steps_hidden))
    tables, images = [], []
    for layer, units, steps in jobs:
        for clip in (False, True):
            x0 = opt.starts(start, len(units), model)
            img = opt.run(model, layer, units, x0, steps=steps, clip=clip,
                          desc=f"layer {layer.number} clip={clip}")
            df = describe_images(model, img, layer, units, class_names)
            df["clip"] = clip
            df["steps"] = steps
            df["start"] = start
            tables.append(df)
            images.append(img)
    return stack_results(tables, images)


def confident_class_means(probs: np.ndarray, images: np.ndarray, threshold: float
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Mean image of the samples the network assigns to each class with probability > threshold.

    probs : (N, K); images : (N, C, H, W), an array or the store's `StoredImages`. Returns means
    (K, C, H, W) float32 (zeros for a class with no such sample) and counts (K,).

    A class's images are read a chunk of rows at a time (`data.store.CHUNK_BYTES`) and summed row
    after row in float64, the order in which `images[mask].mean(axis=0, dtype=float64)` sums
    them: the same bits, without holding the class (at CelebA's size, gigabytes) in memory.
    """
    k = probs.shape[1]
    means = np.zeros((k, *images.shape[1:]), dtype=np.float64)
    counts = np.zeros(k, dtype=np.int64)
    per_chunk = chunk_rows(images, CHUNK_BYTES)
    for c in range(k):
        rows = np.flatnonzero(probs[:, c] > threshold)
        counts[c] = len(rows)
        for start in range(0, len(rows), per_chunk):
            for row in images[rows[start:start + per_chunk]]:
                means[c] += row
        if counts[c]:
            means[c] /= counts[c]
    return means.astype(np.float32), counts


def tv_sweep(model: nn.Module, class_names: Sequence[str], opt: Optimiser, *,
             classes: Sequence[int] | None, tv: Sequence[float], l1_fraction: float, steps: int,
             start: str, jitter: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """Figure set 3: output neurons `classes` (None: all) optimised with each TV weight in `tv`
    (L1 = `l1_fraction` x TV), one batch. Table columns added: `tv_weight`, `l1_weight`, `steps`,
    `start`."""
    out = resolve_layer(OUTPUT, model)
    classes = check_units(range(out.units) if classes is None else classes, out,
                          "featureviz.tv_sweep.classes")
    units = np.repeat(classes, len(tv))
    tvw = np.tile(np.asarray(tv, dtype=np.float64), len(classes))
    l1w = tvw * l1_fraction
    x0 = opt.starts(start, len(units), model)
    img = opt.run(model, out, units, x0, steps=steps, tv=tvw, l1=l1w, jitter=jitter, clip=True,
                  desc="tv sweep")
    df = describe_images(model, img, out, units, class_names)
    df["tv_weight"] = tvw
    df["l1_weight"] = l1w
    df["steps"] = steps
    df["start"] = start
    return stack_results([df], [img])


def tv_l1_grid(model: nn.Module, class_names: Sequence[str], opt: Optimiser, *, layer: int | str,
               unit: int, tv_weights: Sequence[float], l1_fractions: Sequence[float], steps: int,
               start: str, jitter: bool, keys: tuple[str, str] = ("layer", "unit")
               ) -> tuple[pd.DataFrame, np.ndarray]:
    """Figure set 4, one panel: one neuron optimised for every (TV weight, L1 = fraction x TV)
    pair, one batch (TV major). `keys` name the config keys of `layer` and `unit` in errors.
    Table columns added: `tv_weight`, `l1_fraction`, `l1_weight`, `steps`."""
    lay = resolve_layer(layer, model, keys[0])
    (unit,) = check_units([unit], lay, keys[1])
    tvw, frac = np.meshgrid(np.asarray(tv_weights, float), np.asarray(l1_fractions, float), indexing="ij")
    tvw, frac = tvw.ravel(), frac.ravel()
    units = np.full(len(tvw), unit)
    x0 = opt.starts(start, len(units), model)
    img = opt.run(model, lay, units, x0, steps=steps, tv=tvw, l1=tvw * frac, jitter=jitter,
                  clip=True, desc=f"grid layer {lay.number}")
    df = describe_images(model, img, lay, units, class_names)
    df["tv_weight"] = tvw
    df["l1_fraction"] = frac
    df["l1_weight"] = tvw * frac
    df["steps"] = steps
    return stack_results([df], [img])


def tv_l1_grids(model: nn.Module, class_names: Sequence[str], opt: Optimiser, *, output_class: int,
                hidden_layer: int | None, hidden_unit: int, tv: Sequence[float],
                l1_fractions: Sequence[float], steps_output: int, steps_hidden: int, start: str,
                jitter: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """Figure set 4 as one job: the TV x L1 grid of output neuron `output_class` and, when
    `hidden_layer` is set, of `hidden_unit` in that layer; column `panel` is "output"/"hidden"."""
    parts = [("output", OUTPUT, output_class, steps_output, "output_class")]
    if hidden_layer is not None:
        parts.append(("hidden", hidden_layer, hidden_unit, steps_hidden, "hidden_unit"))
    tables, images = [], []
    for panel, layer, unit, steps, unit_key in parts:
        keys = ("featureviz.tv_l1_grid.hidden_layer", f"featureviz.tv_l1_grid.{unit_key}")
        df, img = tv_l1_grid(model, class_names, opt, layer=layer, unit=unit, tv_weights=tv,
                             l1_fractions=l1_fractions, steps=steps, start=start, jitter=jitter,
                             keys=keys)
        df = df.drop(columns="index")
        df.insert(0, "panel", panel)
        tables.append(df)
        images.append(img)
    return stack_results(tables, images)
