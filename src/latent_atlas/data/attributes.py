"""Per-sample attributes of a dataset: the store's `attributes.parquet` (docs/architecture.md).

One row per sample of the store, in its order: `sample_id`, `class` (the label every source has),
then every attribute the source carries (CelebA's 40 binary attributes; synthetic_factors' five
factor indices), then the columns of the user's own table (`datasets.<name>.attributes.file`,
matched by sample_id). Values are small integers 0..m-1 (int8 where they fit); the file's
`attributes` metadata lists each column with what its values stand for (`levels`) and where it
came from (`origin`: class, source, or the table's path).

Attributes are read from the source's tables (and the user's table), never from the images, so
the job is cheap and does not touch the store's images: `prepare_data` stays as it was, and a
store written by an earlier version gains attributes without being rewritten.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from latent_atlas.data.store import DataError

CLASS = "class"
ID = "sample_id"


def integer_column(values: np.ndarray, where: str) -> np.ndarray:
    """`values` as the smallest signed integer dtype that holds them (int8 for binary attributes).
    Booleans become 0/1; floats must be whole numbers; NaN and other types are a DataError naming
    `where` (the file and column)."""
    values = np.asarray(values)
    if values.dtype == bool:
        return values.astype(np.int8)
    if values.dtype.kind == "f":
        if np.isnan(values).any():
            rows = np.flatnonzero(np.isnan(values))
            raise DataError(f"{where}: {len(rows)} missing values (NaN), first at rows {rows[:5].tolist()}; "
                            f"every sample needs a value")
        if not np.all(values == np.round(values)):
            raise DataError(f"{where}: attribute values must be whole numbers (a class or a level), "
                            f"got e.g. {values[values != np.round(values)][:3].tolist()}")
    elif values.dtype.kind not in "iu":
        raise DataError(f"{where}: attribute values must be integers or booleans, got {values.dtype} "
                        f"(e.g. {values[:3].tolist()})")
    values = values.astype(np.int64)
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if not len(values) or (values.min() >= info.min and values.max() <= info.max):
            return values.astype(dtype)
    return values


def read_attribute_table(path: str | os.PathLike, key: str, id_column: str,
                         columns: Sequence[str] | None) -> pd.DataFrame:
    """A user's attribute table (CSV or Parquet): `id_column` and the attribute columns (`columns`,
    default every other column), one row per sample id. Errors name the config key and the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}.file: attribute table not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv"):
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        else:
            raise DataError(f"{key}.file: {path}: an attribute table is .csv, .tsv or .parquet, not {suffix!r}")
    except (OSError, ValueError, pd.errors.ParserError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{key}.file: cannot read {path} ({type(err).__name__}: {err})") from None
    if id_column not in df.columns:
        raise DataError(f"{key}.id_column: {path} has no column {id_column!r} "
                        f"(columns: {', '.join(map(str, df.columns[:12]))})")
    names = [c for c in df.columns if c != id_column] if columns is None else list(columns)
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise DataError(f"{key}.columns: {path} has no column(s) {missing} "
                        f"(columns: {', '.join(map(str, df.columns[:12]))})")
    if not names:
        raise DataError(f"{key}: {path} has no attribute columns besides {id_column!r}")
    ids = df[id_column].to_numpy()
    if ids.dtype.kind not in "iu":
        raise DataError(f"{key}.id_column: {path}: column {id_column!r} must hold integer sample ids, "
                        f"got {ids.dtype}")
    dup = pd.Index(ids).duplicated()
    if dup.any():
        raise DataError(f"{key}.file: {path}: sample id(s) {np.unique(ids[dup])[:5].tolist()} appear more than once")
    out = {ID: ids.astype(np.int64)}
    for name in names:
        out[str(name)] = integer_column(df[name].to_numpy(), f"{key}.file: {path}, column {name!r}")
    return pd.DataFrame(out)


def match_table(table: pd.DataFrame, sample_id: np.ndarray, n_source: int, key: str, path: str) -> pd.DataFrame:
    """The rows of a user's table for the store's samples, in their order. An id the source does
    not have (outside 0..n_source-1) is an error, as is a stored sample the table lacks."""
    ids = table[ID].to_numpy()
    unknown = (ids < 0) | (ids >= n_source)
    if unknown.any():
        raise DataError(f"{key}.file: {path}: {int(unknown.sum())} sample id(s) the dataset's source does not have "
                        f"(it has ids 0..{n_source - 1}), e.g. {ids[unknown][:5].tolist()}")
    pos = pd.Index(ids).get_indexer(sample_id)
    if (pos < 0).any():
        lacking = sample_id[pos < 0]
        raise DataError(f"{key}.file: {path} has no row for {len(lacking)} sample(s) of the dataset, "
                        f"e.g. sample ids {lacking[:5].tolist()}")
    return table.iloc[pos].reset_index(drop=True)


def attribute_frame(sample_id: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                    source: Mapping[str, np.ndarray] | None, source_levels: Mapping[str, list] | None,
                    table: pd.DataFrame | None, table_path: str | None, key: str) -> tuple[pd.DataFrame, list[dict]]:
    """The attribute table of a store's samples and its column descriptions.

    Parameters
    ----------
    sample_id, labels : (n,) the store's samples in order, and their classes.
    source : name -> (n,) integer values of the source's own attributes for those samples.
    table : a user's table already matched to the samples (`match_table`), or None.

    Returns the frame (sample_id, class, source attributes, table attributes) and, per attribute
    column, {"name", "origin", "levels"} (levels: what each value stands for; None where unknown).
    """
    frame = {ID: np.asarray(sample_id, np.int64), CLASS: integer_column(labels, f"{key}: labels")}
    described = [{"name": CLASS, "origin": "class", "levels": list(class_names)}]
    for name, values in (source or {}).items():
        if name in frame:
            raise DataError(f"{key}: the source's attribute {name!r} clashes with the column {name!r}")
        frame[name] = integer_column(values, f"{key}: attribute {name!r}")
        described.append({"name": name, "origin": "source", "levels": (source_levels or {}).get(name)})
    if table is not None:
        for name in table.columns:
            if name == ID:
                continue
            if name in frame:
                raise DataError(f"{key}.attributes.file: {table_path}: column {name!r} has the name of an attribute "
                                f"the dataset already has ({', '.join(list(frame)[1:])[:200]}); rename it")
            frame[name] = table[name].to_numpy()
            described.append({"name": name, "origin": str(table_path), "levels": None})
    return pd.DataFrame(frame), described



def attribute_mask(path: str | os.PathLike, sample_id: np.ndarray, selection: Mapping[str, Sequence[Any]],
                   key: str) -> np.ndarray:
    """True for the samples (`sample_id`, the store's order) whose attributes take one of the listed
    values, for every attribute of `selection` (name -> values), in the attribute table `path`.

    A value is a level's name (what the table's `levels` list, compared as text: "theo", 2) or,
    where an attribute has no level names, its integer value. An unknown attribute or value is a
    DataError naming `key` and listing what the table has.
    """
    from latent_atlas.io import read_parquet, read_parquet_metadata

    described = {d["name"]: d for d in read_parquet_metadata(path).get("attributes") or []}
    unknown = [name for name in selection if name not in described]
    if unknown:
        raise DataError(f"{key}: the dataset has no attribute(s) {', '.join(map(repr, unknown))} ({path}); "
                        f"it has: {', '.join(described)}")
    table = read_parquet(path, columns=[ID, *selection])
    if not np.array_equal(table[ID].to_numpy(), np.asarray(sample_id)):
        raise DataError(f"{key}: {path} does not list the dataset store's samples; rerun dataset_attributes")
    keep = np.ones(len(table), bool)
    for name, values in selection.items():
        levels = described[name].get("levels")
        names = [str(level) for level in levels] if levels else None
        codes = []
        for value in values:
            if names is not None and str(value) in names:
                codes.append(names.index(str(value)))
            elif names is None and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                codes.append(int(value))
            else:
                held = ", ".join(names) if names is not None else "integer values"
                raise DataError(f"{key}.{name}: no value {value!r}; attribute {name!r} takes: {held}")
        keep &= np.isin(table[name].to_numpy(), codes)
    if not keep.any():
        raise DataError(f"{key}: no sample has these attribute values")
    return keep
