"""Tables of latents made elsewhere (config `source.format: latents`), as a latents.parquet.

A table is a Parquet file (latent columns and optional `sample_id`, label and `split` columns), a
.npy array (n, d), or a .npz with `latents` (n, d) and optional `sample_id` and label arrays (read
with allow_pickle=False). Its rows are matched to a dataset by `sample_id` (every id exactly once)
or by row order (same count, the dataset's order), or stand alone with their own labels. The result
has the columns of every latents.parquet (`latents.ID_COLUMNS`, then z0..z{d-1} float32) in the
dataset's order, so the latents-only stages (geometry, its projections) read it as any other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from latent_atlas.latents import id_frame

_RESERVED = {"sample_id", "label", "label_name", "split"}


def read_table(path: str | os.PathLike, key: str, columns: Sequence[str] | None = None,
               label_column: str = "label") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The latent matrix (n, d) float32 of a table and its other columns by name (`sample_id`,
    `split`, and `label_column` where present). Errors name the config key and the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix in (".npy", ".npz"):
            loaded = np.load(path, allow_pickle=False)
        else:
            raise ValueError(f"{key}: {path}: a latents table is .parquet, .npy or .npz, not {suffix!r}")
    except ValueError as err:
        if str(err).startswith(key):
            raise
        raise ValueError(f"{key}: cannot read {path} ({type(err).__name__}: {err})") from None
    except OSError as err:
        raise ValueError(f"{key}: cannot read {path} ({type(err).__name__}: {err})") from None
    extra: dict[str, np.ndarray] = {}
    if suffix == ".parquet":
        reserved = _RESERVED | {label_column}
        if columns is None:
            columns = [c for c in df.columns if c not in reserved and pd.api.types.is_numeric_dtype(df[c])]
        missing = [c for c in columns if c not in df.columns]
        if missing or not columns:
            raise ValueError(f"{key}: {path} has no latent columns {missing or ''} "
                             f"(columns: {', '.join(map(str, df.columns[:12]))})")
        z = df[list(columns)].to_numpy(dtype=np.float32)
        extra = {c: df[c].to_numpy() for c in ("sample_id", "split", label_column) if c in df.columns}
    elif suffix == ".npy":
        z = np.asarray(loaded, dtype=np.float32)
    else:
        if "latents" not in loaded.files:
            raise ValueError(f"{key}: {path} has no array 'latents' (arrays: {', '.join(loaded.files)})")
        z = np.asarray(loaded["latents"], dtype=np.float32)
        extra = {c: loaded[c] for c in ("sample_id", "split", label_column) if c in loaded.files}
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise ValueError(f"{key}: {path}: the latents must be a non-empty (n_samples, d) matrix, got shape {z.shape}")
    bad = ~np.isfinite(z)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(f"{key}: {path}: {int(bad.sum())} NaN or infinite latent values in {len(rows)} rows "
                         f"(first rows {rows[:5].tolist()})")
    return z, extra


def match_rows(dataset_ids: np.ndarray, table_ids: np.ndarray | None, n_rows: int, match: str,
               key: str, path: str, dataset: str) -> np.ndarray:
    """For each dataset sample (in dataset order) the table row holding it.

    match 'sample_id': the table's `sample_id`s must be the dataset's, each exactly once;
    'row_order': the table has one row per sample, in the dataset's order.
    """
    n = len(dataset_ids)
    if match == "row_order":
        if n_rows != n:
            raise ValueError(f"{key}: {path} has {n_rows} rows; dataset {dataset!r} has {n} samples "
                             f"(source.match: row_order needs one row per sample, in the dataset's order)")
        return np.arange(n)
    if table_ids is None:
        raise ValueError(f"{key}: {path} has no sample_id column/array; add one or set source.match to "
                         f"row_order or standalone")
    table_ids = np.asarray(table_ids)
    if not np.issubdtype(table_ids.dtype, np.integer):
        raise ValueError(f"{key}: {path}: sample_id must be integers, got {table_ids.dtype}")
    unique, counts = np.unique(table_ids, return_counts=True)
    dup = unique[counts > 1]
    if len(dup):
        raise ValueError(f"{key}: {path}: {len(dup)} sample_ids appear more than once (e.g. {dup[:5].tolist()})")
    missing = np.setdiff1d(dataset_ids, table_ids)
    extra = np.setdiff1d(table_ids, dataset_ids)
    if len(missing) or len(extra):
        raise ValueError(
            f"{key}: {path} has {n_rows} rows; dataset {dataset!r} has {n} samples: {len(missing)} of its "
            f"sample_ids are not in the table (e.g. {missing[:5].tolist()}), {len(extra)} of the table's are "
            f"not in the dataset (e.g. {extra[:5].tolist()})")
    order = np.argsort(table_ids, kind="stable")
    return order[np.searchsorted(table_ids[order], dataset_ids)]


def standalone_ids(extra: dict[str, np.ndarray], n_rows: int, label_column: str, key: str,
                   path: str) -> pd.DataFrame:
    """Id columns of a standalone table: its `sample_id` (else the row number), its `split` (else
    every row 'test', the split the explain maps read by default), its labels from `label_column`
    (class names: the sorted distinct labels)."""
    if label_column not in extra:
        raise ValueError(f"{key}: {path} has no label column/array {label_column!r} "
                         f"(source.label_column; a standalone table brings its own labels)")
    labels = np.asarray(extra[label_column])
    names, codes = np.unique(labels.astype(str) if labels.dtype.kind not in "iu" else labels, return_inverse=True)
    sample_id = np.asarray(extra["sample_id"], np.int64) if "sample_id" in extra else np.arange(n_rows, dtype=np.int64)
    if len(np.unique(sample_id)) != n_rows:
        raise ValueError(f"{key}: {path}: sample_id values are not unique")
    split = np.asarray(extra["split"]).astype(str) if "split" in extra else np.full(n_rows, "test")
    return id_frame(sample_id, split, codes.astype(np.int64), [str(c) for c in names])
