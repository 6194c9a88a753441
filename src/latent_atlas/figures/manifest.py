"""The figure manifest: which figures a run made, their hashes, and what made them."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import pandas as pd

from latent_atlas.io import sha256_file, write_text


# Snakemake's own marker in a folder output (its modification time), not part of the figure.
_MARKER = ".snakemake_timestamp"


def _files(figure: str) -> list[str]:
    """The files of one figure output: itself, or every file in a folder output (the folder
    atlas) but Snakemake's marker, sorted by path."""
    if not os.path.isdir(figure):
        return [figure]
    return sorted(os.path.join(root, name) for root, _, names in os.walk(figure) for name in names
                  if name != _MARKER)


def manifest_table(figures: Sequence[str], rules: Mapping[str, str], config_hash: str) -> pd.DataFrame:
    """One row per figure file, sorted by path: file, sha256, rule, config_hash (a folder output
    gives a row per file in it, each with the folder's rule)."""
    rows = [
        {"file": path, "sha256": sha256_file(path), "rule": rules.get(f, "unknown"), "config_hash": config_hash}
        for f in figures for path in _files(f)
    ]
    return pd.DataFrame(rows, columns=["file", "sha256", "rule", "config_hash"]).sort_values("file", ignore_index=True)


def write_manifest(figures: Sequence[str], rules: Mapping[str, str], config_hash: str,
                   path: str | os.PathLike) -> None:
    table = manifest_table(figures, rules, config_hash)
    write_text(table.to_csv(sep="\t", index=False, lineterminator="\n"), path)


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str)
