"""Figure set 2: adversarial examples, real images of class a pushed towards output b != a by the
same gradient ascent (no regularisation, clipped to [0, 1]), and their success rate per pair.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd
from torch import nn

from latent_atlas.featureviz.describe import class_probabilities, describe_images
from latent_atlas.featureviz.layers import OUTPUT, resolve_layer
from latent_atlas.featureviz.optimise import Optimiser

log = logging.getLogger("latent_atlas")


def adversarial_examples(model: nn.Module, images: np.ndarray, labels: np.ndarray,
                         sample_ids: np.ndarray, class_names: Sequence[str], opt: Optimiser, *,
                         per_pair: int, steps: int, lr: float, objective: str,
                         max_linf: float | None, success_threshold: float
                         ) -> tuple[pd.DataFrame, np.ndarray]:
    """Real images (N, C, H, W) float32 with `labels` (N,) pushed towards every other class.

    Sources are the first `per_pair` images of each class (in the given order) that the network
    classifies correctly; each goes to every other class. Returns the table (one row per
    (source, target): `index`, `sample_id`, `source_class`, `target_class`, `describe_images`
    columns, `source_prob` (the original's probability of a), `target_prob_before`, `pred_before`,
    `target_prob` (after), `success` (pred == b and target_prob >= `success_threshold`),
    `before_p{c}` and `after_p{c}` for every class c, `l2`, `linf`, `steps`, `objective`) and
    images (rows, 2, C, H, W) float32: original and result.
    """
    probs = class_probabilities(model, images)
    pred = probs.argmax(axis=1)
    k = probs.shape[1]
    chosen = []
    for a in range(k):
        idx = np.flatnonzero((labels == a) & (pred == a))[:per_pair]
        if len(idx) < per_pair:
            log.warning("adversarial: only %d correctly classified images of class %d", len(idx), a)
        chosen += list(idx)
    src, tgt = [], []
    for i in chosen:
        for b in range(k):
            if b != labels[i]:
                src.append(i)
                tgt.append(b)
    src = np.asarray(src, dtype=np.int64)
    tgt = np.asarray(tgt, dtype=np.int64)
    out_layer = resolve_layer(OUTPUT, model)
    x0 = images[src].astype(np.float32)
    result = opt.run(model, out_layer, tgt, x0, steps=steps, objective=objective, clip=True,
                     max_linf=max_linf, lr=lr, desc="adversarial")
    df = describe_images(model, result, out_layer, tgt, class_names)
    diff = (result - x0).reshape(len(src), -1).astype(np.float64)
    df.insert(0, "sample_id", np.asarray(sample_ids)[src].astype(np.int64))
    df.insert(1, "source_class", labels[src].astype(np.int64))
    df.insert(2, "target_class", tgt)
    df["source_prob"] = probs[src, labels[src]].astype(np.float64)
    df["target_prob_before"] = probs[src, tgt].astype(np.float64)
    df["pred_before"] = pred[src].astype(np.int64)
    df["target_prob"] = df["activation"]
    df["success"] = (df["pred"].to_numpy() == tgt) & (df["target_prob"].to_numpy() >= success_threshold)
    after = class_probabilities(model, result)
    for c in range(k):
        df[f"before_p{c}"] = probs[src, c].astype(np.float64)
    for c in range(k):
        df[f"after_p{c}"] = after[:, c].astype(np.float64)
    df["l2"] = np.linalg.norm(diff, axis=1)
    df["linf"] = np.abs(diff).max(axis=1)
    df["steps"] = steps
    df["objective"] = objective
    df.insert(0, "index", np.arange(len(df), dtype=np.int64))
    return df, np.stack([x0, result], axis=1).astype(np.float32)


def adversarial_success(table: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Success rate per (source class, target class) of `adversarial_examples`' table, with
    counts (`n`, `successes`), median L2 / L-infinity, mean target probability and class names."""
    g = table.groupby(["source_class", "target_class"])
    out = g.agg(n=("success", "size"), successes=("success", "sum"),
                median_l2=("l2", "median"), median_linf=("linf", "median"),
                mean_target_prob=("target_prob", "mean")).reset_index()
    out["success_rate"] = out["successes"] / out["n"]
    out["source_name"] = [str(class_names[c]) for c in out["source_class"]]
    out["target_name"] = [str(class_names[c]) for c in out["target_class"]]
    return out
