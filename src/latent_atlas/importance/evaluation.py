"""Permutation importance of one model: its evaluation images, its outputs, the engine path the
config asks for, and the tables of the results (the computation of the block and latent jobs).

Autoencoders are measured on their latent code (`encode`), classifiers on their penultimate
features and, with `importance.classifier_logits`, on their class outputs.
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np
import pandas as pd

from latent_atlas.schema import ConfigError
from latent_atlas.devices import infer
from latent_atlas.importance.engine import (choose_method, latent_importance, model_split, model_stack,
                                            output_function, pixel_importance)
from latent_atlas.importance.streams import LATENT_STREAM
from latent_atlas.importance.tables import latent_frame, pixel_frame

log = logging.getLogger("latent_atlas")


def evaluation_set(test, max_samples: int | None, seed: int, what: str = "the test split"):
    """Images (N, C, H, W), labels (N,) and class names of the candidate images `test` (the test
    split, `Dataset.test()`, or the selected samples that `what` names): every image, or a seeded
    random subset of `max_samples` in their original order. Only these rows are read from a stored
    dataset."""
    if len(test) < 2:
        raise ValueError(f"dataset {test.name!r}: {what} has {len(test)} images; importance needs >= 2")
    idx = evaluation_rows(len(test), max_samples, seed)
    return test.images[idx], test.labels[idx], list(test.class_names)


def evaluation_rows(n: int, max_samples: int | None, seed: int) -> np.ndarray:
    """Positions (k,) int64, ascending, of the evaluation images among `n` candidates: all, or a
    seeded random subset of `max_samples`."""
    idx = np.arange(n)
    if max_samples is not None and max_samples < n:
        rng = np.random.default_rng([int(seed), LATENT_STREAM + 1])
        idx = np.sort(rng.choice(n, size=int(max_samples), replace=False))
    return idx


def primary_output(model) -> str:
    return "latent" if model.kind == "autoencoder" else "features"


def pixel_outputs(model, classifier_logits: bool) -> list[str]:
    """The outputs whose pixel importance is measured, primary first."""
    outputs = [primary_output(model)]
    if model.kind == "classifier" and classifier_logits:
        outputs.append("logits")
    return outputs


def configured_method(method: str, model_name: str, output: str, split, device,
                      stack=None, why_no_stack: str = "") -> str:
    """The engine path for one output of a model: the configured `importance.method`, or for
    `auto` the fastest that applies. A configured path that does not apply to the model stops
    the run (it is never silently replaced by another). `stack` and `why_no_stack`: `model_stack`."""
    try:
        chosen, _ = choose_method(method, split, device, stack)
    except ValueError as err:
        why = f" ({why_no_stack})" if method == "local" and why_no_stack else ""
        raise ConfigError(
            f"importance.method: {method!r} does not apply to model {model_name!r} ({output} output): "
            f"{err}{why}; set importance.method to auto (the fastest path that applies), rows or naive"
        ) from None
    if method == "auto":
        log.info("importance.method auto: model %s, %s output, on %s: path %s", model_name, output,
                 device, chosen)
    return chosen


def method_stack(method: str, model, model_name: str, output: str, split, device):
    """`model_stack` where the path may be local: for `local`, and for `auto` on models without
    a first-Linear split (conv models); else (None, ""). When auto finds no stack it logs why
    (e.g. the unsupported layer) and the path falls back to rows."""
    if method == "local" or (method == "auto" and split is None):
        stack, why = model_stack(model, output, device)
        if stack is None and method == "auto":
            log.info("importance.method auto: model %s, %s output: no local path (%s); rows instead",
                     model_name, output, why)
        return stack, why
    return None, ""


def block_table(model, model_name: str, images: np.ndarray, pixels: Sequence[int] | None, *, logits: bool,
                method: str, n_perm: int, batch_size: int, sign_threshold: float, confidence: float,
                seed: int, device, memory_mb: float | None = None, groups=None, group_ids=None,
                conditional: dict | None = None) -> pd.DataFrame:
    """Importance of a block of pixels or groups (one shard) for every output of a model.

    Parameters
    ----------
    model : a model of `latent_atlas.models.networks`, on `device`.
    images : ndarray of shape (N, C, H, W), its evaluation images.
    pixels : flat pixel indices row * W + col of the block (each alone), or None with `groups`.
    logits : also the class outputs of a classifier (importance.classifier_logits).
    method, n_perm, batch_size, sign_threshold, confidence, memory_mb : the `importance`
        settings (`engine.pixel_importance`).
    groups : the block's groups (flat pixel indices each), permuted jointly; group_ids: their
        indices in the model's group layout (default: the pixels).
    conditional : None (marginal) or {"ring", "clusters"} (conditional permutations).

    Returns
    -------
    The `pixel_frame` of each output, concatenated (primary output first).
    """
    frames = []
    for output in pixel_outputs(model, logits):
        split = model_split(model, output)
        stack, why = method_stack(method, model, model_name, output, split, device)
        path = configured_method(method, model_name, output, split, device, stack, why)
        start = time.perf_counter()
        result = pixel_importance(
            output_function(model, output), images, pixels, groups=groups, conditional=conditional, n_perm=n_perm,
            seed=seed, split=split, stack=stack, method=path, batch_size=batch_size, device=device,
            sign_threshold=sign_threshold, confidence=confidence, memory_mb=memory_mb)
        if result.memory_plan is not None:
            mp = result.memory_plan
            log.info("memory plan (importance.memory_mb %g): %d MB held before the block, %d rows per pass%s, "
                     "predicted peak %.0f MB%s", memory_mb, mp.rss_mb, mp.batch_size,
                     f", local cache of {mp.cache_bytes / 2**20:.0f} MB" if mp.cache_bytes else "",
                     mp.predicted_peak_mb, f" ({mp.note})" if mp.note else "")
        what = f"{len(groups)} groups" if groups is not None else f"{len(pixels)} pixels"
        log.info("%s from %d%s, output %s, %d images on %s: method %s, %.2f s", what, result.pixels[0],
                 ", conditional" if conditional else "", output, len(images), device, result.method,
                 time.perf_counter() - start)
        frames.append(pixel_frame(result, output, group_ids))
    return pd.concat(frames, ignore_index=True)


def latent_table(model, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *, n_perm: int,
                 batch_size: int, confidence: float, seed: int, device) -> pd.DataFrame:
    """Encoded dimension -> output importance per class of a model, as a `latent_frame`.

    Autoencoders: shuffle z_j within a class, decode, MSE against the unpermuted reconstruction.
    Classifiers: shuffle feature j within a class, apply the class layer (`model.head`), MSE of
    the class outputs. images (N, C, H, W) and labels (N,) are the evaluation set.
    """
    z = infer(output_function(model, primary_output(model)), images, batch_size, device)
    if model.kind == "autoencoder":
        out_fn = model.decode
    elif hasattr(model, "head"):
        out_fn = model.head
    else:
        raise ValueError(f"classifier {model.arch!r} has no `head` (class layer on the features)")
    result = latent_importance(out_fn, z, labels, n_perm=n_perm, seed=seed, batch_size=batch_size,
                               device=device, confidence=confidence)
    return latent_frame(result, class_names)
