"""Importance results and the long tables they become (torch-free: the gather job stays light).

pixel_importance.parquet: one row per pixel and output dimension (`pixel_frame`); the block jobs
write one shard per pixel block, holding every output of the model, and `gather_shards` joins
one output's rows. latent_importance.parquet: one row per class and encoded dimension
(`latent_frame`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd


@dataclass
class PixelImportance:
    """Pixel -> output importance of a set of pixels.

    Attributes
    ----------
    pixels : ndarray of shape (P,), flat pixel index row * W + col (all channels shuffled together).
    per_permutation : ndarray of shape (P, K, d), mean squared change of each output per permutation.
    importance, std, ci_low, ci_high : ndarrays of shape (P, d): mean over the K permutations,
        their standard deviation (ddof=1; 0 for K=1) and a t confidence interval of the mean.
    slope : ndarray of shape (P, d), least-squares slope of output j on pixel i (0 if constant).
    sign : ndarray of shape (P, d) int8 in {-1, 0, 1}: sign of the slope where |slope| > threshold.
    image_shape : (C, H, W).
    method : the path that computed it.
    memory_plan : the `importance.memory.MemoryPlan` it ran under (None without a budget).
    """

    pixels: np.ndarray
    per_permutation: np.ndarray
    importance: np.ndarray
    std: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    slope: np.ndarray
    sign: np.ndarray
    image_shape: tuple[int, int, int]
    method: str
    memory_plan: object = None

    @property
    def directional(self) -> np.ndarray:
        return self.sign * self.importance


@dataclass
class LatentImportance:
    """Encoded dimension -> output importance per class.

    Attributes
    ----------
    classes : ndarray of shape (K,), class labels.
    per_permutation : ndarray of shape (K, d, n_perm).
    importance, std, ci_low, ci_high : ndarrays of shape (K, d).
    """

    classes: np.ndarray
    per_permutation: np.ndarray
    importance: np.ndarray
    std: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray


def pixel_frame(result: PixelImportance, output: str = "latent") -> pd.DataFrame:
    """Long table: one row per pixel and output dimension.

    Columns: output, pixel, row, col, dim, importance, std, ci_low, ci_high, slope, sign,
    directional (= sign * importance).
    """
    p, d = result.importance.shape
    w = result.image_shape[2]
    pix = np.repeat(result.pixels, d)
    return pd.DataFrame({
        "output": pd.Series([output] * (p * d), dtype="string") if p * d else pd.Series([], dtype="string"),
        "pixel": pix.astype(np.int64),
        "row": (pix // w).astype(np.int64),
        "col": (pix % w).astype(np.int64),
        "dim": np.tile(np.arange(d, dtype=np.int64), p),
        "importance": result.importance.ravel(),
        "std": result.std.ravel(),
        "ci_low": result.ci_low.ravel(),
        "ci_high": result.ci_high.ravel(),
        "slope": result.slope.ravel(),
        "sign": result.sign.ravel().astype(np.int8),
        "directional": result.directional.ravel().astype(np.float64),
    })


def latent_frame(result: LatentImportance, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Long table: one row per class and encoded dimension (class, class_name, dim, importance, std,
    ci_low, ci_high, rank), rank 1 = most important dimension of the class."""
    k, d = result.importance.shape
    names = [str(class_names[int(c)]) if class_names is not None and int(c) < len(class_names)
             else str(int(c)) for c in result.classes]
    order = np.argsort(-result.importance, axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[np.arange(k)[:, None], order] = np.arange(1, d + 1)[None, :]
    return pd.DataFrame({
        "class": np.repeat(result.classes.astype(np.int64), d),
        "class_name": pd.Series(np.repeat(names, d), dtype="string"),
        "dim": np.tile(np.arange(d, dtype=np.int64), k),
        "importance": result.importance.ravel(),
        "std": result.std.ravel(),
        "ci_low": result.ci_low.ravel(),
        "ci_high": result.ci_high.ravel(),
        "rank": rank.ravel().astype(np.int64),
    })


def shard_outputs(output_column: pd.Series) -> list[str]:
    """The outputs a model's shards hold (their `output` column), primary first ('latent' or
    'features', then 'logits')."""
    return sorted(set(output_column), key=lambda o: (o == "logits", o))


def gather_shards(shards: Sequence[pd.DataFrame], output: str) -> pd.DataFrame:
    """One output's rows of the shard tables, sorted by (pixel, dim), without the output column."""
    df = pd.concat(shards, ignore_index=True)
    df = df[df["output"] == output].drop(columns="output")
    if df.duplicated(["pixel", "dim"]).any():
        raise ValueError("importance shards overlap: a (pixel, dim) appears twice")
    return df.sort_values(["pixel", "dim"], kind="stable").reset_index(drop=True)
