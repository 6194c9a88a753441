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
    se, interval_low, interval_high : ndarrays of shape (P, d): the standard error over images and
        permutations and the interval from it (`importance.inference`).
    groups : None for pixels alone; else the P groups' flat pixel indices (`pixels` holds each
        group's first pixel, and slope and sign are those of the group's mean value).
    conditional : None (marginal permutations) or the conditional settings (ring, clusters).
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
    se: np.ndarray | None = None
    interval_low: np.ndarray | None = None
    interval_high: np.ndarray | None = None
    groups: list | None = None
    conditional: dict | None = None

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


def pixel_frame(result: PixelImportance, output: str = "latent", group_ids=None) -> pd.DataFrame:
    """Long table: one row per pixel (or group) and output dimension.

    Columns: output, pixel (a group's first pixel), row, col, dim, importance, std, ci_low, ci_high,
    slope, sign, directional (= sign * importance), se, interval_low, interval_high, group (its index
    in the model's group layout: `group_ids`, default the pixel).
    """
    p, d = result.importance.shape
    w = result.image_shape[2]
    pix = np.repeat(result.pixels, d)
    groups = np.repeat(result.pixels if group_ids is None else np.asarray(group_ids, dtype=np.int64), d)
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
        "se": result.se.ravel(),
        "interval_low": result.interval_low.ravel(),
        "interval_high": result.interval_high.ravel(),
        "group": groups.astype(np.int64),
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


def gather_shards(shards: Sequence[pd.DataFrame], output: str, *, min_effect: float, fdr: float):
    """One output's rows of the shard tables, sorted by (group, dim), without the output column,
    with each score's p-value (H0: importance <= delta) and whether Benjamini-Hochberg at `fdr`
    declares it over the whole table (`inference.declare`); and delta per dimension (d,)."""
    from latent_atlas.importance.inference import declare

    df = pd.concat(shards, ignore_index=True)
    df = df[df["output"] == output].drop(columns="output")
    if df.duplicated(["group", "dim"]).any():
        raise ValueError("importance shards overlap: a (group, dim) appears twice")
    df = df.sort_values(["group", "dim"], kind="stable").reset_index(drop=True)
    d = int(df["dim"].max()) + 1 if len(df) else 0
    if len(df) != df["group"].nunique() * d:
        raise ValueError("importance shards are incomplete: not every group has every dimension")
    shape = (len(df) // d if d else 0, d)
    delta, p, declared = declare(df["importance"].to_numpy().reshape(shape), df["se"].to_numpy().reshape(shape),
                                 min_effect=min_effect, fdr=fdr)
    df["p_value"] = p.ravel()
    df["significant"] = declared.ravel()
    return df, delta


def groups_on_pixels(table: pd.DataFrame, groups: list[np.ndarray] | None, width: int) -> pd.DataFrame:
    """A group table (`gather_shards`) drawn on the image grid: one row per pixel and dimension,
    sorted by (pixel, dim). Where every pixel is in one group (pixels, superpixels, patches at
    stride = size) a pixel carries its group's row; where patches overlap, the mean of its groups'
    values (sign: of the mean slope; p_value: the smallest; significant: declared in any; group:
    the first). `groups` None: the table is per pixel already."""
    if groups is None:
        return table.sort_values(["pixel", "dim"], kind="stable").reset_index(drop=True)
    import scipy.sparse as sp

    d = int(table["dim"].max()) + 1
    n_pixels = int(max(int(np.max(g)) for g in groups)) + 1
    owner = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)])
    member = np.concatenate(groups)
    counts = np.bincount(member, minlength=n_pixels)
    if (counts == 0).any():
        raise ValueError("the group layout leaves pixels in no group")
    pixels = np.arange(n_pixels)
    gid = table["group"].to_numpy().reshape(-1, d)[:, 0]
    row_of = np.full(len(groups), -1)
    row_of[gid] = np.arange(len(gid))
    if (row_of < 0).any():
        raise ValueError("the importance table lacks groups of the layout")
    cols = {c: table[c].to_numpy().reshape(-1, d) for c in table.columns}
    out = {"pixel": np.repeat(pixels, d), "row": np.repeat(pixels // width, d), "col": np.repeat(pixels % width, d),
           "dim": np.tile(np.arange(d), n_pixels)}
    if (counts == 1).all():
        first = np.empty(n_pixels, dtype=np.int64)
        first[member] = row_of[owner]
        for c in table.columns:
            if c not in out:
                out[c] = cols[c][first].ravel()
        return pd.DataFrame(out)[list(table.columns)]
    m = sp.csr_matrix((np.ones(len(member)), (member, row_of[owner])), shape=(n_pixels, len(gid)))
    mean = sp.diags(1.0 / counts) @ m
    for c in ("importance", "std", "ci_low", "ci_high", "slope", "se", "interval_low", "interval_high"):
        out[c] = np.asarray(mean @ cols[c]).ravel()
    out["sign"] = np.sign(out["slope"]).astype(np.int8)
    out["directional"] = out["sign"] * out["importance"]
    lil = m.tolil()
    first_row = np.array([min(r) for r in lil.rows])
    out["group"] = gid[first_row].repeat(d)
    p = cols["p_value"]
    out["p_value"] = np.array([p[r].min(axis=0) for r in lil.rows]).ravel()
    out["significant"] = np.asarray((m @ cols["significant"].astype(np.float64)) > 0).ravel()
    return pd.DataFrame(out)[list(table.columns)]
