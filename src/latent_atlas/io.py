"""Atomic, deterministic reading and writing of the pipeline's files.

Every output is written to a temporary name beside its target and renamed when complete, so a
killed job never leaves a half-written file that Snakemake would take as done. Writers are
byte-deterministic: the same data gives the same bytes (no timestamps, fixed compression).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# A fixed date for zip members (npz): zipfile would otherwise stamp the current time.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `path` on success.

    On an exception the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes the file private (0600); results are meant to be read by others.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(data: bytes, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(text: str, path: str | os.PathLike) -> None:
    write_bytes(text.encode("utf-8"), path)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write JSON with sorted keys and a trailing newline (stable bytes for stable input)."""
    write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n", path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_parquet(
    df: pd.DataFrame, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None
) -> None:
    """Write `df` (its index dropped) to Parquet with key-value `metadata`.

    Metadata values that are not strings are stored as JSON. Compression and row-group size are
    fixed so that equal frames give equal bytes.
    """
    table = pa.Table.from_pandas(df, preserve_index=False)
    # pandas' own schema metadata carries no timestamps, but we replace it anyway so the file
    # holds only what we put there plus the column types.
    kv = {k: v for k, v in (table.schema.metadata or {}).items()}
    for key, value in (metadata or {}).items():
        kv[str(key).encode()] = (
            value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=_json_default)
        ).encode()
    table = table.replace_schema_metadata(kv)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 20)


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Parquet file not found: {path}")
    return pd.read_parquet(path, columns=columns)


def read_parquet_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Key-value metadata written by `write_parquet` (JSON values decoded), pandas' own key dropped."""
    raw = pq.read_schema(path).metadata or {}
    out: dict[str, Any] = {}
    for k, v in raw.items():
        key = k.decode()
        if key == "pandas":
            continue
        text = v.decode()
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Like `np.savez_compressed`, but byte-deterministic (fixed member dates) and atomic."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    write_bytes(buf.getvalue(), path)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"file not found: {path}")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def config_hash(obj: Any) -> str:
    """A short, stable hash of a JSON-serialisable config fragment."""
    text = json.dumps(obj, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape numerical results (recorded in file metadata)."""
    import importlib.metadata as md

    out = {}
    for name in ("latent-atlas", "torch", "numpy", "pandas", "pyarrow", "scikit-learn",
                 "openTSNE", "umap-learn"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out
