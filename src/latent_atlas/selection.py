"""Named selections of samples (the atlas page's `selection.csv`) as the samples a stage works on.

A selection file is CSV with the header `sample_id,selection`: one row per (sample, named
selection), so one file may hold several named selections. A stage's `samples` key
(`{file, selection}`, schema `$defs/samples_file`) names one of them (or, with `selection: null`,
every row). The workflow makes the file an input of the rules that read it and passes the key as
their `samples` param (`selection_inputs`, `selection_params`); a job reads the ids
(`selected_ids`) and finds them among its own samples (`restrict`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from latent_atlas.data.store import DataError
from latent_atlas.schema import ConfigError

# Ids listed in an error about ids a stage cannot use.
_SHOWN = 10


def read_selection(path: str | os.PathLike, selection: str | None, where: str) -> np.ndarray:
    """Sample ids (n,) int64, sorted and unique, of the selection named `selection` in the CSV
    file `path` (None: every row). `where` is the config key of the file (e.g.
    `importance.samples.file`), named in every error with the file: a missing file, no `sample_id`
    column, ids that are not non-negative integers, a selection the file does not hold (the error
    lists those it holds), or no ids at all."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{where}: selection file {path} not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{where}: {path} is not a CSV file with the header sample_id,selection ({err})") from None
    if "sample_id" not in frame.columns:
        raise DataError(f"{where}: {path} has no `sample_id` column (columns: {list(frame.columns)}); "
                        "expected the header sample_id,selection")
    if selection is not None:
        held = list(dict.fromkeys(frame["selection"])) if "selection" in frame.columns else []
        if selection not in held:
            raise DataError(f"{where}: {path} holds no selection {selection!r}; it holds {held}")
        frame = frame[frame["selection"] == selection]
    text = frame["sample_id"].str.strip()
    bad = text[~text.str.fullmatch(r"\d+")].unique().tolist()
    if bad:
        raise DataError(f"{where}: {path}: sample_id values that are not non-negative integers: {bad[:_SHOWN]}")
    ids = np.unique(np.array([int(s) for s in text], dtype=np.int64))
    if not len(ids):
        what = "the file" if selection is None else f"selection {selection!r}"
        raise DataError(f"{where}: {path}: {what} holds no samples")
    return ids


def restrict(ids_wanted: np.ndarray, sample_ids_available: np.ndarray, where: str, path: str | os.PathLike,
             among: str = "the samples available") -> np.ndarray:
    """Positions (n,) int64 of `ids_wanted` (n,) in `sample_ids_available` (m,), in the order of
    `ids_wanted`. Ids that are not available are a DataError naming `where` (the config key), the
    selection file `path`, what they are missing from (`among`, e.g. "dataset 'digits'") and up to
    ten of them."""
    wanted = np.asarray(ids_wanted, dtype=np.int64)
    positions = pd.Index(np.asarray(sample_ids_available, dtype=np.int64)).get_indexer(wanted)
    missing = wanted[positions < 0]
    if len(missing):
        shown = ", ".join(str(int(s)) for s in missing[:_SHOWN]) + (", ..." if len(missing) > _SHOWN else "")
        raise DataError(f"{where}: {len(missing)} of the {len(wanted)} samples selected in {path} are not in "
                        f"{among}: [{shown}]")
    return positions.astype(np.int64)


def selected_ids(samples: Mapping[str, Any], path: str | os.PathLike) -> np.ndarray:
    """The sample ids (n,) int64, sorted, of a job's `samples` param (`selection_params`) read
    from `path`, the job's input `samples` (the param's file)."""
    return read_selection(path, samples["selection"], f"{samples['key']}.file")


def selection_inputs(section: Mapping[str, Any]) -> dict[str, str]:
    """A rule's inputs from a config section (e.g. `importance`): its selection file as input
    `samples` where the section sets `samples`, else none."""
    samples = section.get("samples")
    return {"samples": samples["file"]} if samples else {}


def selection_params(section: Mapping[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """A rule's params from the config section `section` (named `key`): `samples` = the config
    key, the file and the selection name where the section sets `samples`, else none (so the
    rules of a config without it keep their params)."""
    samples = section.get("samples")
    if not samples:
        return {}
    return {"samples": {"key": f"{key}.samples", "file": samples["file"], "selection": samples["selection"]}}


def explained_inputs(samples: Mapping[str, Any]) -> dict[str, str]:
    """Rule explain_maps' inputs from `explain.samples`: its selection file as input `samples`
    where it names one, else none."""
    return {"samples": samples["file"]} if samples.get("file") is not None else {}


def explained_samples(samples: Mapping[str, Any]) -> list[int] | dict[str, Any]:
    """The explained samples rule explain_maps passes as `sample_ids`, from `explain.samples`
    (defaults filled): its `ids`, or, where it names a selection file, the selection (the key,
    file and name: `selection_params`). Both is a ConfigError naming both keys."""
    if samples.get("file") is None:
        return list(samples["ids"])
    if samples["ids"]:
        raise ConfigError(f"explain.samples: set explain.samples.ids or explain.samples.file, not both "
                          f"(ids {list(samples['ids'])}, file {samples['file']!r})")
    return selection_params({"samples": samples}, "explain")["samples"]
