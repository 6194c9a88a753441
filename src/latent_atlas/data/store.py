"""The dataset type and its store: the folder `results/data/{dataset}/` (docs/architecture.md).

`Dataset` holds images (N, C, H, W) with labels, class names, the train/test split and stable
sample ids. The store is two files:

- `images.npy`: every sample, C-order, a plain .npy file so a row is found by arithmetic and read
  on its own. Images: (N, C, H, W), uint8 0..255 for an 8-bit source (float32 in [0, 1]
  otherwise). Tables (`kind` "table"): (N, F) float32 standardised features. Sensor series
  (`kind` "series"): (N, C, L) float32 windows of C standardised channels, L steps each;
- `samples.parquet`: one row per sample, `sample_id`, `split`, `label` (series add `recording` and
  `start_s`, the window's first step in seconds from its recording's start), with the dataset's
  name, class names, `kind`, and for tables and series the feature or channel names, the
  sampling rate and the standardisation in the file's key-value metadata.

Every stage sees a sample as an image (`Dataset.images`, `input_shape`): a table row as (1, 1, F),
a series window as (1, C, L), channels down the rows and time across, so a "pixel" of the
importance stage is a feature or a (channel, time) cell, and `ImageAxes` (feature and channel
names, seconds) labels the figures in those units.

`write_dataset` writes the images chunk by chunk as they are decoded (peak memory: one chunk, not
the dataset); `load_dataset` returns a `Dataset` whose `images` are `StoredImages`: indexing reads
only the rows asked for (positional reads, not a memory map, so the pages read are the kernel's
page cache and never count in the job's resident memory) and returns them as float32 in [0, 1],
converted where the batch is used (`to_float`, the same values as converting the whole array).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from latent_atlas.io import atomic_path, read_parquet, read_parquet_metadata, write_parquet

SPLITS = ("train", "test")
KINDS = ("image", "table", "series")
IMAGES_FILE, SAMPLES_FILE = "images.npy", "samples.parquet"
# Bytes (as float32) per chunk when a whole-dataset pass (a value check, a hash) reads images.
CHUNK_BYTES = 16 << 20


class DataError(ValueError):
    """Bad data or a bad dataset option; the message names the file or the config key."""


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 k/255; float -> float32 (values must already be in [0, 1])."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255)
    return images.astype(np.float32, copy=False)


def read_rows(fd: int, offset: int, row_bytes: int, rows: np.ndarray, out: np.ndarray, path) -> None:
    """Fill `out` (C-contiguous, len(rows) rows of `row_bytes` bytes) with the rows `rows` (int64,
    any order) of the file open as `fd`, whose row 0 starts at byte `offset`: one positional read
    per run of consecutive rows (safe after fork: no shared file position). `path` names the file
    in errors."""
    flat = memoryview(out.reshape(-1).view(np.uint8))
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    for s, e in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
        view = flat[s * row_bytes:e * row_bytes]
        pos = offset + int(rows[s]) * row_bytes
        while len(view):
            got = os.preadv(fd, [view], pos)
            if got <= 0:
                raise DataError(f"{path}: file ended early (truncated while reading?)")
            view, pos = view[got:], pos + got


class _ImageFile:
    """An open images.npy: its header, and rows read with positional reads (safe after fork)."""

    def __init__(self, path: Path):
        self.path, self._fd, self._pid = path, None, None
        try:
            with open(path, "rb") as fh:
                major, _ = np.lib.format.read_magic(fh)
                read_header = (np.lib.format.read_array_header_1_0 if major == 1
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(fh)
                self.offset = fh.tell()
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: not a readable .npy images file: {err}") from err
        if fortran or not (len(shape) == 4 and dtype in (np.uint8, np.float32)
                           or len(shape) in (2, 3) and dtype == np.float32):
            raise DataError(f"{path}: images must be a C-order (N, C, H, W) uint8 or float32 array, or "
                            f"(N, F) / (N, C, L) float32 (tables, series), got shape {shape} {dtype}"
                            f"{' (Fortran order)' if fortran else ''}")
        self.stored_shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.shape = as_image_shape(self.stored_shape)
        self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        expected = self.offset + self.shape[0] * self.row_bytes
        if path.stat().st_size != expected:
            raise DataError(f"{path}: header says {self.shape} {self.dtype} ({expected} bytes), "
                            f"the file holds {path.stat().st_size} bytes")

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked worker opens its own
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The stored rows `rows` (int64, any order), as stored (uint8 or float32)."""
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        if len(rows):
            read_rows(self._descriptor(), self.offset, self.row_bytes, rows, out, self.path)
        return out

    def __del__(self):
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)


def as_image_shape(shape: Sequence[int]) -> tuple[int, int, int, int]:
    """The (N, C, H, W) view of a stored shape: (N, F) -> (N, 1, 1, F), (N, C, L) -> (N, 1, C, L)."""
    shape = tuple(int(s) for s in shape)
    return {2: (shape[0], 1, 1, shape[1]), 3: (shape[0], 1, *shape[1:]), 4: shape}[len(shape)]


class StoredImages:
    """The images of a dataset store (or a subset of its rows), read lazily.

    Behaves like a read-only float32 array of shape (n, C, H, W) for `len`, `shape` and indexing:
    `images[i]`, `images[a:b]`, `images[index_array]`, `images[bool_mask]` (and those with more
    axes after them) read only the selected rows and return float32 in [0, 1]. `np.asarray(images)`
    reads everything (small datasets and tests only). `rows(index)` is a subset, still lazy.
    """

    dtype = np.dtype(np.float32)
    ndim = 4

    def __init__(self, file: _ImageFile, rows: np.ndarray | None = None):
        self._file = file
        self._rows = np.arange(file.shape[0], dtype=np.int64) if rows is None else rows

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self._rows), *self._file.shape[1:])

    @property
    def stored_dtype(self) -> np.dtype:
        """uint8 or float32: how the store holds the pixels."""
        return self._file.dtype

    def __len__(self) -> int:
        return len(self._rows)

    def rows(self, index) -> "StoredImages":
        """The subset selected by an index array, a boolean mask or a slice (no pixels read)."""
        return StoredImages(self._file, self._rows[index])

    def __getitem__(self, key):
        if isinstance(key, tuple):
            head, rest = key[0], key[1:]
            out = self[head]
            return out[rest] if np.ndim(head) == 0 and not isinstance(head, slice) else out[(slice(None), *rest)]
        picked = self._rows[key]
        if np.ndim(picked) == 0:
            return to_float(self._file.read(np.array([picked])))[0]
        return to_float(self._file.read(picked))

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)



@dataclass
class ImageAxes:
    """Physical axes of a dataset's images (spectrograms: frequency down the rows, time across).

    Attributes
    ----------
    rows : ndarray of shape (height,)
        The value at the centre of each image row, row 0 first (spectrograms: Hz, decreasing, so
        low frequencies are drawn at the bottom).
    cols : ndarray of shape (width,)
        The value at the centre of each column (spectrograms: seconds from the recording's start,
        or the share of the recording when recordings are stretched to the width).
    row_label, col_label : str
        Axis labels with units, e.g. "frequency (Hz)", "time (s)".
    settings : dict
        How the images were made (spectrograms: sample_rate, n_fft, hop_length, band, ...).
    """

    rows: np.ndarray
    cols: np.ndarray
    row_label: str
    col_label: str
    settings: dict = field(default_factory=dict)
    # Names of the rows or columns where they are categories, not values: a series' channels
    # (rows), a table's features (columns). None for numeric axes.
    row_names: list[str] | None = None
    col_names: list[str] | None = None

    def __post_init__(self):
        self.rows = np.asarray(self.rows, dtype=np.float64)
        self.cols = np.asarray(self.cols, dtype=np.float64)
        self.row_names = None if self.row_names is None else [str(n) for n in self.row_names]
        self.col_names = None if self.col_names is None else [str(n) for n in self.col_names]

    def arrays(self) -> dict[str, np.ndarray]:
        """The dataset file's `axes_*` entries."""
        out = {"axes_rows": self.rows, "axes_cols": self.cols,
               "axes_labels": np.asarray([self.row_label, self.col_label], dtype=str),
               "axes_settings": np.asarray(json.dumps(self.settings, sort_keys=True), dtype=str)}
        for key, names in (("axes_row_names", self.row_names), ("axes_col_names", self.col_names)):
            if names is not None:
                out[key] = np.asarray(names, dtype=str)
        return out

    @classmethod
    def from_arrays(cls, arrays) -> "ImageAxes | None":
        """The axes stored by `arrays()` in a dataset file's entries, or None if it has none."""
        if "axes_rows" not in arrays:
            return None
        row_label, col_label = (str(s) for s in arrays["axes_labels"])
        names = {k: [str(n) for n in arrays[f"axes_{k}"]] if f"axes_{k}" in arrays else None
                 for k in ("row_names", "col_names")}
        return cls(arrays["axes_rows"], arrays["axes_cols"], row_label, col_label,
                   json.loads(str(arrays["axes_settings"])), **names)

    def to_metadata(self) -> dict:
        """The samples table's `axes` metadata entry (JSON; floats written exactly)."""
        out = {"rows": self.rows.tolist(), "cols": self.cols.tolist(), "row_label": self.row_label,
               "col_label": self.col_label, "settings": self.settings}
        for key in ("row_names", "col_names"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_metadata(cls, meta: dict) -> "ImageAxes | None":
        """The axes stored by `to_metadata()` under the samples table's `axes` key, or None."""
        if "axes" not in meta:
            return None
        a = meta["axes"]
        return cls(a["rows"], a["cols"], a["row_label"], a["col_label"], a.get("settings", {}),
                   a.get("row_names"), a.get("col_names"))


@dataclass
class Dataset:
    """Images with integer labels, class names and a train/test split.

    Attributes
    ----------
    images : ndarray or StoredImages of shape (n_samples, n_channels, height, width), float32 in [0, 1]
        In memory (a built dataset) or read from the store as it is indexed (`load_dataset`).
    labels : ndarray of shape (n_samples,), int64 in 0..n_classes-1
    class_names : list of str, length n_classes
    split : ndarray of shape (n_samples,), str, each 'train' or 'test'
    sample_id : ndarray of shape (n_samples,), int64
        Stable, unique index of each sample in its source (the source's training part first,
        then its test part), so a sample keeps its id when options change.
    name : str
        The dataset's key in the config.
    axes : ImageAxes or None
        Physical axes of the images (spectrograms; the features of a table, the channels and
        seconds of a series), None for plain images.
    kind : {'image', 'table', 'series'}
        What a sample is. Tables are (n, 1, 1, F) and series (n, 1, C, L), standardised float32
        (any finite value); images lie in [0, 1].
    """

    images: np.ndarray | StoredImages
    labels: np.ndarray
    class_names: list[str]
    split: np.ndarray
    sample_id: np.ndarray
    name: str = ""
    axes: ImageAxes | None = None
    kind: str = "image"

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.sample_id = np.asarray(self.sample_id, dtype=np.int64)
        self.split = np.asarray(self.split).astype("<U5")
        self.class_names = [str(c) for c in self.class_names]
        n = len(self.images)
        if self.images.ndim != 4:
            raise DataError(
                f"dataset {self.name!r}: images must have shape (N, C, H, W), got {self.images.shape}"
            )
        for what in ("labels", "split", "sample_id"):
            if getattr(self, what).shape != (n,):
                raise DataError(
                    f"dataset {self.name!r}: {what} has shape {getattr(self, what).shape}, "
                    f"expected ({n},) like images"
                )
        if self.axes is not None and (self.axes.rows.shape, self.axes.cols.shape) != ((self.images.shape[2],),
                                                                                      (self.images.shape[3],)):
            raise DataError(
                f"dataset {self.name!r}: axes of {len(self.axes.rows)} rows x {len(self.axes.cols)} columns "
                f"do not match images of shape {self.images.shape}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(int(s) for s in self.images.shape[1:])

    def subset(self, mask: np.ndarray) -> "Dataset":
        """The samples selected by a boolean mask (n_samples,) or an index array (same classes);
        stored images stay lazy."""
        images = self.images.rows(mask) if isinstance(self.images, StoredImages) else self.images[mask]
        return Dataset(
            images,
            self.labels[mask],
            list(self.class_names),
            self.split[mask],
            self.sample_id[mask],
            self.name,
            self.axes,
            self.kind,
        )

    def train(self) -> "Dataset":
        return self.subset(self.split == "train")

    def test(self) -> "Dataset":
        return self.subset(self.split == "test")

    def validate(self, where: str | None = None) -> None:
        """Check values against the file contract; raise DataError naming `where` (or the dataset).

        The pixel values of stored uint8 images are in range by their type and are not read.
        """
        where = where or f"dataset {self.name!r}"
        if self.kind not in KINDS:
            raise DataError(f"{where}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.images.dtype != np.float32:
            raise DataError(f"{where}: images must be float32, got {self.images.dtype}")
        if self.kind != "image":
            check_finite(self.images, where)
        elif not (isinstance(self.images, StoredImages) and self.images.stored_dtype == np.uint8):
            check_pixel_range(self.images, where)
        if len(self) and (self.labels.min() < 0 or self.labels.max() >= self.n_classes):
            raise DataError(
                f"{where}: labels must lie in 0..{self.n_classes - 1}, got "
                f"{self.labels.min()}..{self.labels.max()}"
            )
        bad = set(np.unique(self.split)) - set(SPLITS)
        if bad:
            raise DataError(f"{where}: split values must be 'train' or 'test', got {sorted(bad)}")
        if len(np.unique(self.sample_id)) != len(self):
            raise DataError(f"{where}: sample_id values are not unique")

    def summary(self) -> str:
        counts = {s: int((self.split == s).sum()) for s in SPLITS}
        c, h, w = self.input_shape
        what = {"image": f"images {c}x{h}x{w}", "table": f"rows of {w} features",
                "series": f"windows of {h} channels x {w} steps"}[self.kind]
        return (
            f"{self.name}: {len(self):,} {what} ({counts['train']:,} train, "
            f"{counts['test']:,} test), {self.n_classes} classes: {', '.join(self.class_names)}"
        )


def chunk_rows(images, max_bytes: int = CHUNK_BYTES) -> int:
    """Rows of `images` (N, ...) per chunk so that a chunk as float32 takes at most `max_bytes`
    (at least one row)."""
    return max(1, max_bytes // max(1, 4 * int(np.prod(images.shape[1:]))))


def float_chunks(images, max_bytes: int = CHUNK_BYTES) -> Iterable[np.ndarray]:
    """Consecutive row chunks of `images` (N, ...; an ndarray or `StoredImages`) as float32 arrays
    of at most `max_bytes` (at least one row each), in order: a pass over a dataset that holds one
    chunk at a time."""
    rows = chunk_rows(images, max_bytes)
    for start in range(0, len(images), rows):
        yield np.asarray(images[start:start + rows], dtype=np.float32)


def check_pixel_range(images, where: str) -> None:
    """DataError at `where` unless every value of (N, C, H, W) `images` lies in [0, 1] (chunk by chunk)."""
    lo, hi = np.inf, -np.inf
    for x in float_chunks(images):
        if x.size:
            lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
    if lo < 0 or hi > 1 or np.isnan(lo) or np.isnan(hi):
        raise DataError(f"{where}: image values must lie in [0, 1], got [{lo:g}, {hi:g}]")


def check_finite(values, where: str) -> None:
    """DataError at `where` unless every value of `values` (N, ...) is finite (chunk by chunk)."""
    for x in float_chunks(values):
        if x.size and not np.isfinite(x).all():
            raise DataError(f"{where}: values must be finite, found NaN or infinity")


def store_folder(path) -> Path:
    """The store folder of `path`: the folder itself, one of its two files, or a rule's input list
    of them (Snakemake's `rules.prepare_data.output`)."""
    if not isinstance(path, (str, os.PathLike)):
        path = list(path)[0]
    path = Path(path)
    return path.parent if path.name in (IMAGES_FILE, SAMPLES_FILE) else path


def write_dataset(folder, sample_id: np.ndarray, split: np.ndarray, labels: np.ndarray,
                  class_names: Sequence[str], name: str, chunks: Iterable[np.ndarray],
                  axes: ImageAxes | None = None, kind: str = "image", metadata: dict | None = None,
                  columns: dict[str, np.ndarray] | None = None) -> None:
    """Write a dataset store: the images chunk by chunk as `chunks` yields them, then the samples.

    Parameters
    ----------
    folder : the store folder (created); its two files are each written to a temporary name and
        renamed when complete, images first.
    sample_id, split, labels : (n,) each, in the order of the images.
    chunks : (k, C, H, W) arrays, n rows in all, in order; every chunk uint8 (stored as uint8) or
        every chunk float in [0, 1] (stored as float32). Peak memory: one chunk. Tables: (k, F),
        series: (k, C, L), float with any finite values (stored as float32).
    axes : the images' physical axes (spectrograms, features, channels), kept in the samples
        table's metadata.
    kind : 'image', 'table' or 'series'; metadata : more key-value metadata of the samples table
        (a table's or series' names, rate, standardisation); columns : more per-sample columns
        of the samples table (name -> (n,) values), after sample_id, split, label.

    The bytes depend only on the values (a .npy header and raw rows; Parquet with fixed settings).
    """
    folder = Path(folder)
    ids = pd.DataFrame({"sample_id": np.asarray(sample_id, np.int64),
                        "split": np.asarray(split).astype(str),
                        "label": np.asarray(labels, np.int64), **(columns or {})})
    n = len(ids)
    where = f"dataset {name!r}"
    if kind not in KINDS:
        raise DataError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    ndim = {"image": 4, "table": 2, "series": 3}[kind]
    written, shape, dtype = 0, None, None
    # Plain sequential writes, not a memory map: pages of a written map stay resident in the job
    # (its RSS grew with N), while written file pages go to the kernel's page cache.
    with atomic_path(folder / IMAGES_FILE) as tmp, open(tmp, "wb") as fh:
        for chunk in chunks:
            chunk = np.asarray(chunk)
            if chunk.ndim != ndim:
                raise DataError(f"{where}: a chunk of {kind} samples has {chunk.ndim} dimensions "
                                f"{chunk.shape}, expected {ndim}")
            if shape is None:
                dtype = np.dtype(np.uint8 if chunk.dtype == np.uint8 and kind == "image" else np.float32)
                shape = (n, *chunk.shape[1:])
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(fh, header)  # what np.save writes for it
            if chunk.shape[1:] != shape[1:]:
                raise DataError(f"{where}: a chunk of images has shape {chunk.shape}, expected "
                                f"(k, {', '.join(map(str, shape[1:]))})")
            if kind == "image" and (chunk.dtype == np.uint8) != (dtype == np.uint8):
                raise DataError(f"{where}: chunks mix uint8 and float images ({chunk.dtype} after {dtype})")
            if kind != "image":
                check_finite(chunk, where)
            elif dtype == np.float32:
                check_pixel_range(chunk, where)
            if written + len(chunk) > n:
                raise DataError(f"{where}: more images than the {n} samples")
            fh.write(np.ascontiguousarray(chunk, dtype=dtype).data)
            written += len(chunk)
        if shape is None or written != n:
            raise DataError(f"{where}: {written} images for {n} samples")
        height, width = as_image_shape(shape)[2:]
        if axes is not None and (len(axes.rows), len(axes.cols)) != (height, width):
            raise DataError(f"{where}: axes of {len(axes.rows)} rows x {len(axes.cols)} columns "
                            f"for images of {height}x{width}")
    meta = {"name": name, "class_names": list(class_names)}
    if kind != "image":  # image stores keep the metadata (and bytes) they had before kinds existed
        meta["kind"] = kind
    if axes is not None:
        meta["axes"] = axes.to_metadata()
    write_parquet(ids, folder / SAMPLES_FILE, metadata={**meta, **(metadata or {})})


def save_dataset(ds: Dataset, folder) -> None:
    """Write an in-memory `ds` as a store (`write_dataset`); images stored as uint8 when they are
    exactly k/255 (an 8-bit source, losslessly), else as float32."""
    ds.validate()
    as_bytes = as_uint8(np.asarray(ds.images)) if ds.kind == "image" else None
    images = ds.images if as_bytes is None else as_bytes
    if ds.kind != "image":  # stored as (N, F) / (N, C, L)
        images = np.asarray(images).reshape(len(ds), *stored_shape(ds.kind, ds.input_shape))
    chunks = (images[s:s + 1024] for s in range(0, len(ds), 1024))
    write_dataset(folder, ds.sample_id, ds.split, ds.labels, ds.class_names, ds.name, chunks, ds.axes, ds.kind)


def stored_shape(kind: str, input_shape: Sequence[int]) -> tuple[int, ...]:
    """One sample's stored shape from its (C, H, W) view: table (F,), series (C, L), image as is."""
    c, h, w = input_shape
    return {"image": (c, h, w), "table": (w,), "series": (h, w)}[kind]


def as_uint8(images: np.ndarray, chunk: int = 4096) -> np.ndarray | None:
    """`images` (float32 in [0, 1]) as uint8 0..255 if they are exactly k/255 (as `to_float` makes
    them, so storing them as uint8 loses nothing); else None."""
    out = np.empty(images.shape, np.uint8)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk]
        k = np.rint(x * np.float32(255))
        if k.size and (k.min() < 0 or k.max() > 255):
            return None
        out[start : start + chunk] = k
        if not np.array_equal(out[start : start + chunk].astype(np.float32) / np.float32(255), x):
            return None
    return out


def load_dataset(path) -> Dataset:
    """The dataset store at `path` (`store_folder`): samples in memory, images read as indexed.

    Reads the two files' headers and the samples table only; pixels are read when a job indexes
    `images`, as float32 in [0, 1].
    """
    folder = store_folder(path)
    images_path, samples_path = folder / IMAGES_FILE, folder / SAMPLES_FILE
    for p in (images_path, samples_path):
        if not p.is_file():
            raise FileNotFoundError(f"dataset file not found: {p} (written by rule prepare_data)")
    try:
        ids = read_parquet(samples_path, columns=["sample_id", "split", "label"])
        meta = read_parquet_metadata(samples_path)
        class_names, name = meta["class_names"], meta.get("name", folder.name)
    except (KeyError, ValueError, OSError) as err:
        raise DataError(f"{samples_path}: not a readable samples table "
                        f"(sample_id, split, label; class_names in its metadata): {err}") from err
    file = _ImageFile(images_path)
    kind = str(meta.get("kind", "image"))
    if {"image": 4, "table": 2, "series": 3}.get(kind) != len(file.stored_shape):
        raise DataError(f"{folder}: the samples table says kind {kind!r}, {images_path.name} holds an array "
                        f"of shape {file.stored_shape}")
    images = StoredImages(file)
    if len(images) != len(ids):
        raise DataError(f"{folder}: {images_path.name} holds {len(images)} images, "
                        f"{samples_path.name} {len(ids)} samples")
    try:
        ds = Dataset(images, ids["label"].to_numpy(copy=True), list(class_names), ids["split"].to_numpy(),
                     ids["sample_id"].to_numpy(copy=True), str(name), ImageAxes.from_metadata(meta),
                     kind)
    except (DataError, ValueError, TypeError) as err:
        raise DataError(f"{folder}: malformed dataset store: {err}") from err
    ds.validate(where=str(folder))
    return ds


def image_shape(path) -> tuple[int, int, int]:
    """(C, H, W) of a dataset store's images, from the images.npy header only."""
    return _ImageFile(store_folder(path) / IMAGES_FILE).shape[1:]


def load_kind(path) -> str:
    """'image', 'table' or 'series': what a dataset store's samples are (its samples table's metadata)."""
    return str(read_parquet_metadata(store_folder(path) / SAMPLES_FILE).get("kind", "image"))


def load_image_axes(path) -> ImageAxes | None:
    """The physical axes of a dataset store's images (None for plain images), from the samples
    table's metadata only."""
    return ImageAxes.from_metadata(read_parquet_metadata(store_folder(path) / SAMPLES_FILE))


def stored_sample_ids(folder) -> np.ndarray | None:
    """The sample ids of the store in `folder` (its samples table's one column), or None when
    there is no store there yet."""
    path = Path(folder) / SAMPLES_FILE
    if not path.is_file():
        return None
    return read_parquet(path, columns=["sample_id"])["sample_id"].to_numpy()
