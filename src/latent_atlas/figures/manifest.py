"""The figure manifest: which figures a run made, their hashes, and what made them."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import pandas as pd

from latent_atlas.io import sha256_file, write_text


def manifest_table(figures: Sequence[str], rules: Mapping[str, str], config_hash: str) -> pd.DataFrame:
    """One row per figure, sorted by path: file, sha256, rule, config_hash."""
    rows = [
        {"file": f, "sha256": sha256_file(f), "rule": rules.get(f, "unknown"), "config_hash": config_hash}
        for f in sorted(figures)
    ]
    return pd.DataFrame(rows, columns=["file", "sha256", "rule", "config_hash"])


def write_manifest(figures: Sequence[str], rules: Mapping[str, str], config_hash: str,
                   path: str | os.PathLike) -> None:
    table = manifest_table(figures, rules, config_hash)
    write_text(table.to_csv(sep="\t", index=False, lineterminator="\n"), path)


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str)
