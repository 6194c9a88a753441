"""Datasets: read a configured source, apply the common options, store one file per dataset.

A *source* reader (idx, torchvision, sklearn_digits, image_folder, audio_digits) returns the
source's labels, class names, its own train/test split where it has one, and a function that
loads the images of given samples. `build_dataset` then applies the options every source shares,
in this order: fold labels, keep classes (renumbered), split, subsample per split, load the kept
images only (so a large source is never decoded whole), resize and set the colour channels.

`save_dataset` / `load_dataset` write and read `results/data/{dataset}.npz` (docs/architecture.md).
"""

from __future__ import annotations

import gzip
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from . import audio
from .io import read_npz, write_npz

log = logging.getLogger("latent_atlas")

SPLITS = ("train", "test")
TORCHVISION_ROOT = "resources/torchvision"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
# Independent random streams derived from one seed (so a new option never shifts another's draws).
_SPLIT_STREAM, _SUBSAMPLE_STREAM = 1, 2
# ITU-R BT.601 luma, the weights PIL uses for RGB -> L.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


class DataError(ValueError):
    """Bad data or a bad dataset option; the message names the file or the config key."""


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------


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
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    split: np.ndarray
    sample_id: np.ndarray
    name: str = ""

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


@dataclass
class Source:
    """What a source reader returns: everything but the pixels, and a loader for the pixels.

    labels : int64 (n,) source labels 0..K-1; class_names : K names; split : str (n,) or None when
    the source has no split of its own; groups : str (n,) speaker of each sample (audio) or None;
    load(indices) -> (len(indices), C, H, W) uint8 (0..255) or float32 in [0, 1].
    """

    labels: np.ndarray
    class_names: list[str]
    load: Callable[[np.ndarray], np.ndarray]
    split: np.ndarray | None = None
    groups: np.ndarray | None = None
    resized: bool = False  # the loader already applied `size` (and `color`)


# --------------------------------------------------------------------------------------------
# Building a dataset from its config entry
# --------------------------------------------------------------------------------------------


def build_dataset(name: str, spec: Mapping[str, Any], seed: int) -> Dataset:
    """Read the source of config entry `datasets.<name>` and apply its options.

    Parameters
    ----------
    name : str
        The dataset's key under `datasets:` (used in messages as `datasets.<name>.<key>`).
    spec : mapping
        That entry, as validated against `$defs/dataset` of the config schema (missing optional
        keys take the schema's defaults).
    seed : int
        The config's base seed; the split and the subsample draw from their own streams of it
        unless `split.seed` / `subsample.seed` are given.

    Returns
    -------
    Dataset
        Samples ordered train first, then test, each by `sample_id`.
    """
    key = f"datasets.{name}"
    kind = spec.get("source")
    if kind not in SOURCES:
        raise DataError(f"{key}.source: unknown source {kind!r}; expected one of {', '.join(SOURCES)}")
    src = SOURCES[kind](spec, key)
    class_names = _source_class_names(src, spec, key)
    labels = fold_labels(src.labels, spec.get("fold_labels") or {}, len(class_names), f"{key}.fold_labels")
    keep, labels, class_names = select_classes(labels, class_names, spec.get("classes"), f"{key}.classes")
    index = np.flatnonzero(keep)

    split_spec = dict(spec.get("split") or {})
    split = assign_split(
        labels,
        own_split=None if src.split is None else src.split[index],
        groups=None if src.groups is None else src.groups[index],
        method=split_spec.get("method"),
        test_fraction=float(split_spec.get("test_fraction", 0.15)),
        test_groups=split_spec.get("test_speakers"),
        random_state=_stream(split_spec.get("seed"), seed, _SPLIT_STREAM),
        key=f"{key}.split",
        source=kind,
    )
    for part in SPLITS:
        if not np.any(split == part):
            raise DataError(f"{key}.split: the {part} split is empty ({len(split)} samples after `classes`)")
    sub = dict(spec.get("subsample") or {})
    rng = _stream(sub.get("seed"), seed, _SUBSAMPLE_STREAM)
    chosen = np.concatenate(
        [
            np.flatnonzero(split == part)[stratified_subsample(labels[split == part], sub.get(part), rng)]
            for part in SPLITS
        ]
    )
    # Train first, then test; within each by source index (chosen is already in that order).
    index, labels, split = index[chosen], labels[chosen], split[chosen]

    images = src.load(index)
    if not src.resized:
        images = set_channels(images, spec.get("color"))
        if spec.get("size"):
            images = resize_images(images, int(spec["size"]))
    ds = Dataset(to_float(images), labels, class_names, split, index, name)
    ds.validate()
    log.info("built %s", ds.summary())
    return ds


def _stream(explicit: int | None, seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(explicit if explicit is not None else [int(seed), stream])


def _source_class_names(src: Source, spec: Mapping[str, Any], key: str) -> list[str]:
    names = spec.get("class_names")
    if names is None:
        return list(src.class_names)
    if len(names) != len(src.class_names):
        raise DataError(
            f"{key}.class_names: the source has {len(src.class_names)} labels "
            f"(0..{len(src.class_names) - 1}), but {len(names)} names were given"
        )
    return [str(n) for n in names]


def fold_labels(labels: np.ndarray, mapping: Mapping[Any, int], n_classes: int, key: str) -> np.ndarray:
    """Relabel samples of source label `a` as `mapping[a]` (e.g. EMNIST lowercase a -> uppercase A).

    Keys may be ints or strings of ints (YAML / JSON object keys). Returns a new (n,) int64 array.
    """
    out = labels.copy()
    for src_label, dst_label in mapping.items():
        try:
            a, b = int(src_label), int(dst_label)
        except (TypeError, ValueError):
            raise DataError(
                f"{key}: keys and values must be integer labels, got {src_label!r}: {dst_label!r}"
            ) from None
        for lab in (a, b):
            if not 0 <= lab < n_classes:
                raise DataError(f"{key}: label {lab} is not a source label (0..{n_classes - 1})")
        out[labels == a] = b
    return out


def select_classes(
    labels: np.ndarray, class_names: Sequence[str], classes: Sequence[Any] | None, key: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Keep the listed classes and renumber them 0..k-1 in the given order.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,), int
        Source labels (after folding).
    class_names : sequence of str
        Names of the source labels 0..K-1.
    classes : sequence of str or int, or None
        Class names or source labels to keep. None keeps every class that has samples.
    key : str
        Config key for messages (`datasets.<name>.classes`).

    Returns
    -------
    keep : ndarray of shape (n_samples,), bool
    new_labels : ndarray of shape (n_kept,), int64
    new_names : list of str
    """
    if classes is None:
        wanted = [int(c) for c in np.unique(labels)]
    else:
        wanted = []
        for c in classes:
            if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
                if not 0 <= c < len(class_names):
                    raise DataError(
                        f"{key}: label {c} is out of range; the source's labels are "
                        f"0..{len(class_names) - 1} ({', '.join(class_names)})"
                    )
                wanted.append(int(c))
            elif str(c) in class_names:
                wanted.append(list(class_names).index(str(c)))
            else:
                raise DataError(f"{key}: unknown class {c!r}; valid names: {', '.join(class_names)}")
        if len(set(wanted)) != len(wanted):
            raise DataError(f"{key}: a class is listed twice: {list(classes)}")
        empty = [class_names[w] for w in wanted if not np.any(labels == w)]
        if empty:
            raise DataError(
                f"{key}: no samples of class {', '.join(map(repr, empty))} "
                "(folded into another class by fold_labels?)"
            )
    lookup = np.full(len(class_names), -1, np.int64)
    lookup[wanted] = np.arange(len(wanted))
    new = lookup[labels]
    keep = new >= 0
    return keep, new[keep], [class_names[w] for w in wanted]


def assign_split(
    labels: np.ndarray,
    own_split: np.ndarray | None,
    groups: np.ndarray | None,
    method: str | None,
    test_fraction: float,
    test_groups: Sequence[str] | None,
    random_state: np.random.Generator,
    key: str,
    source: str,
) -> np.ndarray:
    """'train' / 'test' for each sample.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,)
    own_split : ndarray of shape (n_samples,) of str, or None
        The source's own split; None when the source has none.
    groups : ndarray of shape (n_samples,) of str, or None
        Speaker of each sample (audio sources).
    method : {'source', 'fraction', 'speaker'} or None
        None = 'source' when the source has its own split, else 'fraction'.
    test_fraction : float
        Fraction of samples ('fraction', stratified by class) or, at least, of samples whose
        speakers are held out ('speaker', unless `test_groups` names them).
    test_groups : sequence of str or None
        Speakers held out ('speaker' only); None = speakers drawn at random.
    random_state : numpy Generator
    key, source : str
        Config key (`datasets.<name>.split`) and source kind, for messages.

    Returns
    -------
    split : ndarray of shape (n_samples,), '<U5'
    """
    if method is None:
        method = "source" if own_split is not None else "fraction"
    if method == "source":
        if own_split is None:
            raise DataError(
                f"{key}.method: source {source!r} has no train/test split of its own; "
                "use method 'fraction'" + (" or 'speaker'" if groups is not None else "")
            )
        return own_split.astype("<U5")
    if method == "fraction":
        return stratified_split(labels, test_fraction, random_state)
    if method == "speaker":
        if groups is None:
            raise DataError(
                f"{key}.method: 'speaker' needs a source with speakers (audio_digits), not {source!r}"
            )
        speakers = np.unique(groups)
        if test_groups is not None:
            unknown = sorted(set(map(str, test_groups)) - set(speakers))
            if unknown:
                raise DataError(
                    f"{key}.test_speakers: unknown speaker(s) {', '.join(unknown)}; "
                    f"speakers: {', '.join(speakers)}"
                )
            held_out = set(map(str, test_groups))
        else:
            held_out = _draw_speakers(groups, speakers, test_fraction, random_state)
        if len(held_out) in (0, len(speakers)):
            raise DataError(
                f"{key}: the speaker split needs at least one training and one test speaker "
                f"(speakers: {', '.join(speakers)})"
            )
        return np.where(np.isin(groups, sorted(held_out)), "test", "train").astype("<U5")
    raise DataError(f"{key}.method: unknown method {method!r}; expected source, fraction or speaker")


def _draw_speakers(
    groups: np.ndarray, speakers: np.ndarray, fraction: float, rng: np.random.Generator
) -> set[str]:
    """Speakers in a random order, taken until they hold at least `fraction` of the samples."""
    counts = {s: int((groups == s).sum()) for s in speakers}
    held, total = set(), 0
    for s in speakers[rng.permutation(len(speakers))]:
        if total >= fraction * len(groups) or len(held) == len(speakers) - 1:
            break
        held.add(str(s))
        total += counts[s]
    return held


def stratified_split(
    labels: np.ndarray, test_fraction: float, random_state: np.random.Generator
) -> np.ndarray:
    """Random train/test split with round(test_fraction * n_c) test samples of each class c.

    Returns a '<U5' array (n_samples,) of 'train' / 'test'.
    """
    split = np.full(len(labels), "train", dtype="<U5")
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_test = int(round(test_fraction * len(members)))
        split[random_state.permutation(members)[:n_test]] = "test"
    return split


def stratified_subsample(labels: np.ndarray, n: int | None, random_state: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most `n` samples, each class represented in proportion to its size.

    Each class's samples are shuffled and given the keys (rank + 0.5) / class size; the `n`
    smallest keys are kept, so every class gets its share up to one sample.
    """
    order = random_state.permutation(len(labels))
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    shuffled = labels[order]
    rank = np.empty(len(labels), np.float64)
    for c in np.unique(labels):
        at = np.flatnonzero(shuffled == c)
        rank[at] = (np.arange(len(at)) + 0.5) / len(at)
    return np.sort(order[np.argsort(rank, kind="stable")[:n]])


# --------------------------------------------------------------------------------------------
# Pixels: dtype, channels, size
# --------------------------------------------------------------------------------------------


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


def set_channels(images: np.ndarray, color: str | None) -> np.ndarray:
    """Make (N, C, H, W) `images` gray (C=1, BT.601 luma) or rgb (C=3, gray repeated); None: unchanged."""
    c = images.shape[1]
    if color is None or (color == "gray" and c == 1) or (color == "rgb" and c == 3):
        return images
    if color == "rgb" and c == 1:
        return np.repeat(images, 3, axis=1)
    if color == "gray" and c == 3:
        gray = np.tensordot(_LUMA, images.astype(np.float32), axes=(0, 1))[:, None]
        return np.rint(gray).astype(np.uint8) if images.dtype == np.uint8 else gray
    raise DataError(f"cannot convert images with {c} channels to {color!r}")


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize (antialiased when shrinking) of (N, C, H, W) images to (N, C, size, size).

    uint8 stays uint8 (rounded), float stays float32.
    """
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images
    dtype = np.uint8 if images.dtype == np.uint8 else np.float32
    out = np.empty((n, c, size, size), dtype)
    for i in range(n):
        for j in range(c):
            out[i, j] = np.asarray(
                Image.fromarray(images[i, j].astype(dtype, copy=False)).resize(
                    (size, size), Image.Resampling.BILINEAR
                )
            )
    return out


def pil_to_array(
    img: Image.Image, color: str, size: int | None, center_crop: int | None, where: str
) -> np.ndarray:
    """A PIL image -> (C, H, W) uint8: centre square crop of side `center_crop`, resize, gray/rgb."""
    img = img.convert("RGB" if color == "rgb" else "L")
    if center_crop:
        w, h = img.size
        if center_crop > min(w, h):
            raise DataError(f"{where}: image is {w}x{h}, smaller than center_crop {center_crop}")
        left, top = (w - center_crop) // 2, (h - center_crop) // 2
        img = img.crop((left, top, left + center_crop, top + center_crop))
    if size and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _stack(parts: list[np.ndarray], where: str) -> np.ndarray:
    shapes = sorted({p.shape for p in parts})
    if len(shapes) > 1:
        raise DataError(
            f"{where}: images differ in size ({', '.join('x'.join(map(str, s[1:])) for s in shapes[:4])}); "
            "set `size` to resize them to one size"
        )
    return np.stack(parts)


# --------------------------------------------------------------------------------------------
# Source: idx (MNIST-format) folders
# --------------------------------------------------------------------------------------------

IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}
_IDX_NDIM = {"images": 3, "labels": 1}
_IDX_PARTS = {"train": ("train",), "test": ("t10k", "test")}


def read_idx(path: str | os.PathLike, kind: str) -> np.ndarray:
    """Read an idx file (plain or .gz) of unsigned bytes.

    Parameters
    ----------
    path : path-like
    kind : {'images', 'labels'}
        images: magic 0x00000803, returns (n, rows, cols) uint8; labels: magic 0x00000801, (n,) uint8.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"idx file not found: {path}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read idx file {path}: {err}") from err
    ndim = _IDX_NDIM[kind]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: too short for an idx {kind} file ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != IDX_MAGIC[kind]:
        raise DataError(
            f"{path}: wrong magic number 0x{magic:08X} for an idx {kind} file "
            f"(expected 0x{IDX_MAGIC[kind]:08X}: unsigned bytes, {ndim} dimension(s))"
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise DataError(
            f"{path}: header says {'x'.join(map(str, dims))} = {expected} bytes of data, "
            f"file holds {len(raw) - offset}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def idx_files(folder: str | os.PathLike, prefix: str | None, key: str) -> dict[tuple[str, str], Path]:
    """Find {(part, kind): path} for parts train/test and kinds images/labels in an idx folder.

    File names: `{prefix}{train|t10k|test}-{images-idx3|labels-idx1}-ubyte[.gz]`. Without a
    prefix, the folder must hold one set (e.g. Fashion-MNIST; an EMNIST folder holding several
    splits needs `prefix`, e.g. "emnist-balanced-").
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{key}.path: folder not found: {folder}")
    if prefix is None:
        names = os.listdir(folder)
        found = sorted(
            {
                n[: n.index("train-images-idx3-ubyte")]
                for n in names
                if n.removesuffix(".gz").endswith("train-images-idx3-ubyte")
            }
        )
        if not found:
            raise FileNotFoundError(f"{key}.path: {folder} holds no train-images-idx3-ubyte[.gz] file")
        if len(found) > 1 and "" not in found:
            raise DataError(
                f"{key}.prefix: {folder} holds several idx sets "
                f"({', '.join(map(repr, found))}); set prefix to choose one"
            )
        prefix = "" if "" in found else found[0]
    out = {}
    for part, stems in _IDX_PARTS.items():
        for kind, tag in (("images", "images-idx3"), ("labels", "labels-idx1")):
            names = [f"{prefix}{stem}-{tag}-ubyte{ext}" for stem in stems for ext in ("", ".gz")]
            present = [folder / n for n in names if (folder / n).is_file()]
            if not present:
                raise FileNotFoundError(
                    f"{key}.path: {folder} has no {part} {kind} file " f"(looked for {', '.join(names)})"
                )
            out[part, kind] = present[0]
    return out


def _read_idx_source(spec: Mapping[str, Any], key: str) -> Source:
    files = idx_files(spec["path"], spec.get("prefix"), key)
    prefix = files["train", "images"].name.split("train-images")[0]
    images, labels, split = [], [], []
    for part in SPLITS:
        x = read_idx(files[part, "images"], "images")
        y = read_idx(files[part, "labels"], "labels")
        if len(x) != len(y):
            raise DataError(
                f"{key}: {files[part, 'images']} holds {len(x)} images but "
                f"{files[part, 'labels']} holds {len(y)} labels"
            )
        images.append(x)
        labels.append(y)
        split.append(np.full(len(y), part, dtype="<U5"))
    x = np.concatenate(images)[:, None]
    transpose = spec.get("transpose")
    if transpose if transpose is not None else prefix.lower().startswith("emnist"):
        x = x.transpose(0, 1, 3, 2)  # EMNIST stores images column by column
    y = np.concatenate(labels).astype(np.int64)
    names = _idx_class_names(files["train", "images"].parent / f"{prefix}mapping.txt", int(y.max()) + 1)
    return Source(y, names, _indexer(x), split=np.concatenate(split))


def _idx_class_names(mapping: Path, n: int) -> list[str]:
    """Names from an EMNIST `*mapping.txt` (label, ASCII code per line) if present, else '0'..'n-1'."""
    names = [str(i) for i in range(n)]
    if mapping.is_file():
        for line in mapping.read_text().split("\n"):
            if line.strip():
                label, code = map(int, line.split()[:2])
                if 0 <= label < n:
                    names[label] = chr(code)
    return names


def _indexer(images: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    return lambda index: images[index]


# --------------------------------------------------------------------------------------------
# Source: torchvision (MNIST, FashionMNIST, EMNIST, CelebA)
# --------------------------------------------------------------------------------------------


def _read_torchvision_source(spec: Mapping[str, Any], key: str) -> Source:
    import torchvision.datasets as tvd

    name = spec.get("name")
    if name not in ("MNIST", "FashionMNIST", "EMNIST", "CelebA"):
        raise DataError(f"{key}.name: expected MNIST, FashionMNIST, EMNIST or CelebA, got {name!r}")
    root = Path(spec.get("path") or TORCHVISION_ROOT)
    download = bool(spec.get("download", True))
    cls = getattr(tvd, name)
    if name == "CelebA":
        return _read_celeba(cls, root, download, spec, key)
    extra = {"split": spec.get("emnist_split", "balanced")} if name == "EMNIST" else {}
    images, labels, split = [], [], []
    for part in SPLITS:
        ds = _open_torchvision(cls, key, root, download, train=part == "train", **extra)
        images.append(np.asarray(ds.data, dtype=np.uint8))
        labels.append(np.asarray(ds.targets, dtype=np.int64))
        split.append(np.full(len(labels[-1]), part, dtype="<U5"))
    x = np.concatenate(images)[:, None]
    if name == "EMNIST":
        x = x.transpose(0, 1, 3, 2)  # EMNIST stores images column by column
    names = [str(i) for i in range(10)] if name == "MNIST" else [str(c) for c in ds.classes]
    return Source(np.concatenate(labels), names, _indexer(x), split=np.concatenate(split))


def _open_torchvision(cls, key: str, root: Path, download: bool, **kwargs):
    try:
        return cls(root=str(root), download=download, **kwargs)
    except RuntimeError as err:  # torchvision: "Dataset not found ... use download=True"
        hint = "" if download else f"; set {key}.download: true to fetch it"
        raise DataError(f"{key}: torchvision {cls.__name__} is not in {root} ({err}){hint}") from err


def _read_celeba(cls, root: Path, download: bool, spec: Mapping[str, Any], key: str) -> Source:
    """CelebA's train and test partitions (its 'valid' partition is not used); class = one attribute."""
    attribute = spec.get("attribute", "Male")
    color = spec.get("color") or "rgb"
    size = int(spec.get("size") or 96)
    crop = int(spec.get("center_crop") or 140)
    parts, labels, split = [], [], []
    for part in SPLITS:
        ds = _open_torchvision(cls, key, root, download, split=part, target_type="attr")
        attr_names = [a for a in ds.attr_names if a]
        if attribute not in attr_names:
            raise DataError(
                f"{key}.attribute: unknown CelebA attribute {attribute!r}; " f"valid: {', '.join(attr_names)}"
            )
        parts.append(ds)
        labels.append(np.asarray(ds.attr, dtype=np.int64)[:, attr_names.index(attribute)])
        split.append(np.full(len(labels[-1]), part, dtype="<U5"))
    offsets = np.cumsum([0] + [len(y) for y in labels])

    def load(index: np.ndarray) -> np.ndarray:
        out = np.empty((len(index), 3 if color == "rgb" else 1, size, size), np.uint8)
        for k, i in enumerate(index):
            p = int(np.searchsorted(offsets, i, side="right") - 1)
            img = parts[p][int(i - offsets[p])][0]
            out[k] = pil_to_array(img, color, size, crop, f"{key} (CelebA sample {i})")
        return out

    return Source(
        np.concatenate(labels),
        [f"not {attribute}", attribute],
        load,
        split=np.concatenate(split),
        resized=True,
    )


# --------------------------------------------------------------------------------------------
# Source: scikit-learn's 8x8 digits
# --------------------------------------------------------------------------------------------


def _read_sklearn_digits(spec: Mapping[str, Any], key: str) -> Source:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # pixel counts 0..16 -> [0, 1]
    return Source(digits.target.astype(np.int64), [str(int(c)) for c in digits.target_names], _indexer(x))


# --------------------------------------------------------------------------------------------
# Source: a folder with one sub-folder of images per class
# --------------------------------------------------------------------------------------------


def _read_image_folder(spec: Mapping[str, Any], key: str) -> Source:
    folder = Path(spec["path"])
    if not folder.is_dir():
        raise FileNotFoundError(f"{key}.path: folder not found: {folder}")
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{key}.path: {folder} holds no class sub-folders (one folder of images per class)")
    files, labels = [], []
    for label, d in enumerate(class_dirs):
        found = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not found:
            raise DataError(
                f"{key}.path: class folder {d} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        files += found
        labels += [label] * len(found)
    color = spec.get("color") or "gray"
    size = spec.get("size")
    crop = spec.get("center_crop")

    def load(index: np.ndarray) -> np.ndarray:
        out = []
        for i in index:
            try:
                with Image.open(files[i]) as img:
                    out.append(pil_to_array(img, color, size, crop, str(files[i])))
            except (OSError, Image.DecompressionBombError) as err:
                raise DataError(f"cannot read image {files[i]}: {err}") from err
        return _stack(out, f"{key} ({folder})")

    return Source(np.asarray(labels, np.int64), [d.name for d in class_dirs], load, resized=True)


# --------------------------------------------------------------------------------------------
# Source: spoken digits (WAV files) as spectrogram images
# --------------------------------------------------------------------------------------------


def spectrogram_params(spec: Mapping[str, Any]) -> audio.SpectrogramParams:
    """The spectrogram settings of an `audio_digits` config entry (schema defaults when absent)."""
    d = audio.SpectrogramParams()
    return audio.SpectrogramParams(
        sample_rate=int(spec.get("sample_rate", d.sample_rate)),
        band=tuple(float(b) for b in spec.get("band", d.band)),
        db_range=tuple(float(b) for b in spec.get("db_range", d.db_range)),
        n_fft=int(spec.get("n_fft", d.n_fft)),
        hop_length=int(spec.get("hop_length", d.hop_length)),
        smoothing_sigma=float(spec.get("smoothing_sigma", d.smoothing_sigma)),
        size=int(spec.get("size") or d.size),
    )


def _read_audio_digits(spec: Mapping[str, Any], key: str) -> Source:
    try:
        params = spectrogram_params(spec)
    except ValueError as err:
        raise DataError(f"{key}.{err}") from None
    try:
        files = audio.find_wavs(spec["path"])
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{key}.path: {err}") from None
    parsed = [audio.parse_wav_name(f) for f in files]
    digits = np.array([p[0] for p in parsed])
    speakers = np.array([p[1] for p in parsed])
    present = np.unique(digits)
    color = spec.get("color")

    def load(index: np.ndarray) -> np.ndarray:
        x = (
            np.stack([audio.wav_to_image(files[i], params)[None] for i in index])
            if len(index)
            else np.zeros((0, 1, params.size, params.size), np.float32)
        )
        return set_channels(x, color)

    return Source(
        np.searchsorted(present, digits).astype(np.int64),
        [str(d) for d in present],
        load,
        groups=speakers,
        resized=True,
    )


SOURCES: dict[str, Callable[[Mapping[str, Any], str], Source]] = {
    "idx": _read_idx_source,
    "torchvision": _read_torchvision_source,
    "sklearn_digits": _read_sklearn_digits,
    "image_folder": _read_image_folder,
    "audio_digits": _read_audio_digits,
}


# --------------------------------------------------------------------------------------------
# The dataset file
# --------------------------------------------------------------------------------------------

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
        )
    except (DataError, ValueError, TypeError) as err:
        raise DataError(f"{path}: malformed dataset file: {err}") from err
    ds.validate(where=str(path))
    return ds


# --------------------------------------------------------------------------------------------
# The example grid
# --------------------------------------------------------------------------------------------


def example_indices(ds: Dataset, per_class: int, random_state: int = 0) -> list[np.ndarray]:
    """For each class, up to `per_class` sample positions (test split preferred), drawn with a seed."""
    rng = np.random.default_rng(random_state)
    picks = []
    for c in range(ds.n_classes):
        members = np.flatnonzero((ds.labels == c) & (ds.split == "test"))
        if len(members) < per_class:
            members = np.flatnonzero(ds.labels == c)
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False)
        picks.append(np.sort(chosen))
    return picks


def plot_examples(ds: Dataset, per_class: int = 8, random_state: int = 0, cmap: str = "gray"):
    """Grid of example images: one row per class (labelled with its name and count), upright.

    Gray images use `cmap` on the fixed range [0, 1]; RGB images are shown in colour.
    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    from .plotting import use_style

    use_style()
    picks = example_indices(ds, per_class, random_state)
    n_rows = ds.n_classes
    c, h, w = ds.input_shape
    cell = 0.55 if max(h, w) <= 32 else 0.8  # inches per image
    gap = 0.06  # between images, as a fraction of a cell
    grid_w, grid_h = per_class * cell * w / max(h, w), n_rows * cell * h / max(h, w)
    title_h = 0.35
    fig, axes = plt.subplots(
        n_rows,
        per_class,
        squeeze=False,
        figsize=(grid_w, grid_h + title_h),
        gridspec_kw={"wspace": gap, "hspace": gap},
    )
    # The grid fills the figure below the title; row labels sit left of it (kept by bbox "tight").
    fig.subplots_adjust(left=0, right=1, bottom=0, top=grid_h / (grid_h + title_h))
    counts = np.bincount(ds.labels, minlength=ds.n_classes)
    for r, chosen in enumerate(picks):
        for col in range(per_class):
            ax = axes[r, col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(chosen):
                img = ds.images[chosen[col]]
                if c == 3:
                    ax.imshow(img.transpose(1, 2, 0), interpolation="nearest")
                else:
                    ax.imshow(img[0], cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        axes[r, 0].set_ylabel(
            f"{ds.class_names[r]}\n(n={counts[r]:,})", rotation=0, ha="right", va="center", fontsize=8
        )
    n_train = int((ds.split == "train").sum())
    fig.suptitle(
        f"{ds.name}: {len(ds):,} images {c}\u00d7{h}\u00d7{w} "
        f"({n_train:,} train / {len(ds) - n_train:,} test)",
        fontsize=9,
        y=1 - 0.08 / (grid_h + title_h),
        va="top",
    )
    return fig
