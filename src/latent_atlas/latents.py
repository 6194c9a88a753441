"""The latents table, written once for every stage: its id columns and the one reader.

latents.parquet (docs/architecture.md): `sample_id`, `split`, `label`, `label_name`, then `z0 .. z{d-1}`
float32, one row per sample in dataset order (AE bottleneck, VAE posterior mean, classifier
penultimate features); key-value metadata: dataset, model, arch, config_hash, versions, latent_dim.
Extraction (models.extract) writes it; geometry, explain and importance read it through
`read_latents`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from latent_atlas.io import library_versions, read_parquet, read_parquet_metadata

ID_COLUMNS = ["sample_id", "split", "label", "label_name"]
# Latent columns read at a time (182,732 CelebA samples: 23 MB).
_BATCH_COLUMNS = 32
_Z = re.compile(r"z(\d+)")


def latent_columns(df: pd.DataFrame) -> list[str]:
    """The latent columns `z0 .. z{d-1}` of a latents frame, in dimension order."""
    cols = [c for c in df.columns if isinstance(c, str) and _Z.fullmatch(c)]
    return sorted(cols, key=lambda c: int(c[1:]))


@dataclass(frozen=True)
class Latents:
    """A latents table as every stage reads it.

    ids : DataFrame of shape (n_samples, 4), the id columns `sample_id`, `split`, `label`, `label_name`
    z : ndarray of shape (n_samples, d), float32, the latent vectors in dimension order
    class_names : the class names in label order (`class_names_of(ids)`)
    metadata : the file's key-value metadata (dataset, model, arch, config_hash, ...)
    """

    ids: pd.DataFrame
    z: np.ndarray
    class_names: list[str]
    metadata: dict[str, Any]


def read_latents(path: str | os.PathLike, rows: np.ndarray | None = None) -> Latents:
    """Read latents.parquet (or any per-sample table with id columns and `z` columns); with `rows`
    (positions, any order), only those rows, in that order.

    The latent columns are read a few at a time into one float32 array, so the peak memory is the
    rows kept (plus a few columns of every row), not a data frame of every row besides them.
    """
    import pyarrow.parquet as pq

    if not os.path.exists(path):
        raise FileNotFoundError(f"Parquet file not found: {path}")
    file = pq.ParquetFile(path)
    names = file.schema_arrow.names
    cols = sorted((c for c in names if _Z.fullmatch(c)), key=lambda c: int(c[1:]))
    if not cols:
        raise ValueError(f"{path}: no latent columns z0..z{{d-1}} found (columns: {names[:8]}...)")
    missing = [c for c in ID_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{path}: id columns {missing} missing (a latents table has {ID_COLUMNS})")
    ids = file.read(columns=ID_COLUMNS).to_pandas()
    n = len(ids)
    keep = None if rows is None else np.asarray(rows, np.int64)
    # Column-major, as pandas gave it before (its float block is stored by column): reductions over
    # samples then sum in the same order, and every stage's results keep their bits.
    z = np.empty((n if keep is None else len(keep), len(cols)), np.float32, order="F")
    # A few columns at a time: a file is one row group, which a reader of rows decompresses whole.
    for j in range(0, len(cols), _BATCH_COLUMNS):
        part = file.read(columns=cols[j:j + _BATCH_COLUMNS])
        for k in range(part.num_columns):
            column = part.column(k).to_numpy()
            z[:, j + k] = column if keep is None else column[keep]
        del part
    class_names = class_names_of(ids)  # of every row, also where only some are kept
    if keep is not None:
        ids = ids.iloc[keep].reset_index(drop=True)
    return Latents(ids=ids, z=z, class_names=class_names, metadata=read_parquet_metadata(path))


def read_latent_ids(path: str | os.PathLike) -> pd.DataFrame:
    """The id columns of a latents table alone (to choose rows before `read_latents(path, rows)`)."""
    return read_parquet(path, columns=ID_COLUMNS)


def id_frame(sample_id: np.ndarray, split: np.ndarray, labels: np.ndarray,
             class_names: Sequence[str]) -> pd.DataFrame:
    """The id columns shared by every per-sample table."""
    labels = np.asarray(labels, dtype=np.int64)
    return pd.DataFrame({
        "sample_id": np.asarray(sample_id, dtype=np.int64),
        "split": np.asarray(split).astype(str),
        "label": labels,
        "label_name": np.asarray(class_names, dtype=object)[labels].astype(str),
    })


def latents_frame_of(ids: pd.DataFrame, z: np.ndarray) -> pd.DataFrame:
    """A latents table: the id columns `ids`, then z0..z{d-1} float32 from z (n_samples, d)."""
    zs = pd.DataFrame(np.asarray(z, dtype=np.float32), columns=[f"z{i}" for i in range(z.shape[1])])
    return pd.concat([ids.reset_index(drop=True), zs], axis=1)


def file_metadata(dataset: str, model_name: str, arch: str, config_hash: str,
                  **extra: Any) -> dict[str, Any]:
    return {"dataset": dataset, "model": model_name, "arch": arch, "config_hash": config_hash,
            "versions": library_versions(), **extra}


def class_names_of(df: pd.DataFrame) -> list[str]:
    """Class names in label order from a per-sample table's `label` and `label_name` columns
    (classes absent from the table are named by their number)."""
    pairs = df[["label", "label_name"]].drop_duplicates().sort_values("label")
    names = dict(zip(pairs["label"].astype(int), pairs["label_name"].astype(str)))
    return [names.get(k, str(k)) for k in range(max(names) + 1)] if names else []
