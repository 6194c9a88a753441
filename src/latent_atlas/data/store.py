"""The dataset type and its file: `results/data/{dataset}.npz` (docs/architecture.md).

`Dataset` holds images (N, C, H, W) float32 in [0, 1] with labels, class names, the train/test
split and stable sample ids. `save_dataset` / `load_dataset` write and read the file; images are
stored as uint8 when that loses nothing (`as_uint8`), and always read back as float32 (`to_float`).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latent_atlas.io import read_npz, write_npz

SPLITS = ("train", "test")


class DataError(ValueError):
    """Bad data or a bad dataset option; the message names the file or the config key."""


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

    def __post_init__(self):
        self.rows = np.asarray(self.rows, dtype=np.float64)
        self.cols = np.asarray(self.cols, dtype=np.float64)

    def arrays(self) -> dict[str, np.ndarray]:
        """The dataset file's `axes_*` entries."""
        return {"axes_rows": self.rows, "axes_cols": self.cols,
                "axes_labels": np.asarray([self.row_label, self.col_label], dtype=str),
                "axes_settings": np.asarray(json.dumps(self.settings, sort_keys=True), dtype=str)}

    @classmethod
    def from_arrays(cls, arrays) -> "ImageAxes | None":
        """The axes stored by `arrays()` in a dataset file's entries, or None if it has none."""
        if "axes_rows" not in arrays:
            return None
        row_label, col_label = (str(s) for s in arrays["axes_labels"])
        return cls(arrays["axes_rows"], arrays["axes_cols"], row_label, col_label,
                   json.loads(str(arrays["axes_settings"])))


@dataclass
class Dataset:
    """Images with integer labels, class names and a train/test split.

    Attributes
    ----------
    images : ndarray of shape (n_samples, n_channels, height, width), float32 in [0, 1]
    labels : ndarray of shape (n_samples,), int64 in 0..n_classes-1
    class_names : list of str, length n_classes
    split : ndarray of shape (n_samples,), str, each 'train' or 'test'
    sample_id : ndarray of shape (n_samples,), int64
        Stable, unique index of each sample in its source (the source's training part first,
        then its test part), so a sample keeps its id when options change.
    name : str
        The dataset's key in the config.
    axes : ImageAxes or None
        Physical axes of the images (spectrograms), None for plain images.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    split: np.ndarray
    sample_id: np.ndarray
    name: str = ""
    axes: ImageAxes | None = None

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
        """The samples selected by a boolean mask (n_samples,) or an index array (same classes)."""
        return Dataset(
            self.images[mask],
            self.labels[mask],
            list(self.class_names),
            self.split[mask],
            self.sample_id[mask],
            self.name,
            self.axes,
        )

    def train(self) -> "Dataset":
        return self.subset(self.split == "train")

    def test(self) -> "Dataset":
        return self.subset(self.split == "test")

    def validate(self, where: str | None = None) -> None:
        """Check values against the file contract; raise DataError naming `where` (or the dataset)."""
        where = where or f"dataset {self.name!r}"
        if self.images.dtype != np.float32:
            raise DataError(f"{where}: images must be float32, got {self.images.dtype}")
        if len(self) and (float(self.images.min()) < 0 or float(self.images.max()) > 1):
            raise DataError(
                f"{where}: image values must lie in [0, 1], got "
                f"[{self.images.min():g}, {self.images.max():g}]"
            )
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
        return (
            f"{self.name}: {len(self):,} images {c}x{h}x{w} ({counts['train']:,} train, "
            f"{counts['test']:,} test), {self.n_classes} classes: {', '.join(self.class_names)}"
        )


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 k/255; float -> float32 (values must already be in [0, 1])."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255)
    return images.astype(np.float32, copy=False)


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


_FILE_KEYS = ("images", "labels", "class_names", "split", "sample_id")


def save_dataset(ds: Dataset, path: str | os.PathLike) -> None:
    """Write `ds` to an .npz file (atomic, byte-deterministic).

    Images are stored as uint8 (0..255) when they are exactly k/255 (an 8-bit source, losslessly),
    else as float32 in [0, 1].
    """
    ds.validate()
    as_bytes = as_uint8(ds.images)
    images = ds.images if as_bytes is None else as_bytes
    write_npz(
        path,
        images=images,
        labels=ds.labels.astype(np.int64),
        class_names=np.asarray(ds.class_names, dtype=str),
        split=ds.split.astype("<U5"),
        sample_id=ds.sample_id.astype(np.int64),
        name=np.asarray(ds.name, dtype=str),
        **(ds.axes.arrays() if ds.axes is not None else {}),
    )


def load_dataset(path: str | os.PathLike) -> Dataset:
    """Read a dataset file written by `save_dataset`; images always float32 in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path} (written by rule prepare_data)")
    try:
        arrays = read_npz(path)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable dataset file (.npz): {err}") from err
    missing = [k for k in _FILE_KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path}: malformed dataset file, missing {', '.join(missing)}")
    images = arrays["images"]
    if images.dtype not in (np.uint8, np.float32, np.float64):
        raise DataError(f"{path}: images must be uint8 or float, got {images.dtype}")
    name = str(arrays["name"]) if "name" in arrays else path.stem
    try:
        ds = Dataset(
            to_float(images),
            arrays["labels"],
            list(arrays["class_names"]),
            arrays["split"],
            arrays["sample_id"],
            name,
            ImageAxes.from_arrays(arrays),
        )
    except (DataError, ValueError, TypeError) as err:
        raise DataError(f"{path}: malformed dataset file: {err}") from err
    ds.validate(where=str(path))
    return ds


def load_image_axes(path: str | os.PathLike) -> ImageAxes | None:
    """The physical axes stored in a dataset file (None for plain images), without its images."""
    with np.load(path, allow_pickle=False) as arrays:
        return ImageAxes.from_arrays({k: arrays[k] for k in arrays.files if k.startswith("axes_")})
