"""Dataset sources: one reader per `source` kind of the config (idx, torchvision, celeba,
sklearn_digits, image_folder, audio_digits, synthetic_factors; table and series in tabular.py).

A reader takes a dataset's config entry (schema defaults filled) and returns a `Source`: the
source's labels, class names, its own train/test split where it has one, and a function that
loads the images of given samples, so a large source is never decoded whole. Sources of image
files (image_folder, celeba, torchvision's CelebA) decode each file on its own with a top-level
function, so `decoding_map` can spread the files of a chunk over worker processes; the results
come back in order and do not depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
from PIL import Image

from latent_atlas.data import audio, factors
from latent_atlas.data.store import SPLITS, DataError, ImageAxes
from latent_atlas.data.tabular import read_series_source, read_table_source
from latent_atlas.data.transforms import pil_to_array, set_channels, stack_images
from latent_atlas.schema import with_defaults

TORCHVISION_ROOT = "resources/torchvision"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
# The sources' own sizes where `size` is not set (a default per source, so not one in the schema).
AUDIO_SIZE = 32  # spectrogram images of the permutation-importance study
CELEBA_SIZE, CELEBA_CROP = 96, 140


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
    axes: ImageAxes | None = None  # physical axes of the images (spectrograms)
    # Per-sample attributes beyond the label (CelebA's 40; a generator's factors): name -> integer
    # values (n,), in the source's order; `attribute_levels`: name -> what each value 0..m-1 stands
    # for (a factor's physical values or names), where the source knows it.
    attributes: dict[str, np.ndarray] | None = None
    attribute_levels: dict[str, list] | None = None
    # What a sample is: "image" (load gives (k, C, H, W)), "table" (load gives (k, F) float32,
    # raw feature values, NaN where missing) or "series" (load gives (k, C, L) float32 windows of
    # raw values). `names`: the feature names (table) or channel names (series); `sample_rate`: Hz
    # of a series; `start`: (n,) float64 seconds from the recording's start to each window's first
    # value, for windows cut from recordings (source series; `groups` then names the recording).
    kind: str = "image"
    names: list[str] | None = None
    sample_rate: float | None = None
    start: np.ndarray | None = None


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


def _indexer(images: np.ndarray) -> Callable[..., np.ndarray]:
    return lambda index, map_fn=map: images[index]


@contextlib.contextmanager
def decoding_map(workers: int) -> Iterator[Callable]:
    """A `map` that runs in `workers` processes (ordered results), or the builtin map for 1."""
    if workers <= 1:
        yield map
        return
    with ProcessPoolExecutor(max_workers=int(workers)) as pool:
        # Fork every worker now, not at the first chunk: a caller that enters this before it reads
        # its source's tables (write_store) keeps them out of the workers, which would otherwise
        # inherit them (and copy their pages as reference counts change). Not forkserver/spawn:
        # they re-import the main module, which under a Snakemake script cannot run again.
        pool.submit(int).result()
        yield lambda fn, *items: pool.map(fn, *items, chunksize=16)


def decode_image(path: str, color: str, size: int | None, center_crop: int | None) -> np.ndarray:
    """One image file as (C, H, W) uint8 (`pil_to_array`); a file PIL cannot read is a DataError
    naming it. Top-level, so worker processes can run it."""
    try:
        with Image.open(path) as img:
            return pil_to_array(img, color, size, center_crop, str(path))
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def _file_loader(files: list, color: str, size: int | None, crop: int | None,
                 where: str) -> Callable[..., np.ndarray]:
    """load(index, map_fn) of a source whose sample i is the image file files[i]."""

    def load(index: np.ndarray, map_fn=map) -> np.ndarray:
        paths = [str(files[i]) for i in index]
        n = len(paths)
        out = list(map_fn(decode_image, paths, [color] * n, [size] * n, [crop] * n))
        if not out:
            c = 3 if color == "rgb" else 1
            return np.zeros((0, c, size or 0, size or 0), np.uint8)
        return stack_images(out, where)

    return load


# --------------------------------------------------------------------------------------------
# Source: torchvision (MNIST, FashionMNIST, EMNIST, CelebA)
# --------------------------------------------------------------------------------------------


def _read_torchvision_source(spec: Mapping[str, Any], key: str) -> Source:
    import torchvision.datasets as tvd

    name = spec.get("name")
    if name not in ("MNIST", "FashionMNIST", "EMNIST", "CelebA"):
        raise DataError(f"{key}.name: expected MNIST, FashionMNIST, EMNIST or CelebA, got {name!r}")
    root = Path(spec.get("path") or TORCHVISION_ROOT)
    download = bool(spec["download"])
    cls = getattr(tvd, name)
    if name == "CelebA":
        return _read_celeba(cls, root, download, spec, key)
    extra = {"split": spec["emnist_split"]} if name == "EMNIST" else {}
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
    """CelebA through torchvision (download and MD5 checks); then read like the `celeba` folder."""
    files, attr, names, split = [], [], None, []
    for part in SPLITS:
        ds = _open_torchvision(cls, key, root, download, split=part, target_type="attr")
        folder = Path(ds.root) / ds.base_folder / "img_align_celeba"
        files += [folder / f for f in ds.filename]
        attr.append(np.asarray(ds.attr, dtype=np.int64))
        names = [a for a in ds.attr_names if a]
        split.append(np.full(len(ds.filename), part, dtype="<U5"))
    return _celeba_source(files, np.concatenate(attr), names, np.concatenate(split), spec, key)


def _celeba_source(files: list[Path], attr: np.ndarray, attr_names: list[str], split: np.ndarray,
                   spec: Mapping[str, Any], key: str) -> Source:
    """CelebA's train and test partitions (its 'valid' partition is not used); class = one
    attribute (attr: (n, 40) in {0, 1})."""
    attribute = spec["attribute"]
    if attribute not in attr_names:
        raise DataError(f"{key}.attribute: unknown CelebA attribute {attribute!r}; valid: {', '.join(attr_names)}")
    color = spec.get("color") or "rgb"
    size = int(spec.get("size") or CELEBA_SIZE)
    crop = int(spec.get("center_crop") or CELEBA_CROP)
    return Source(
        attr[:, attr_names.index(attribute)],
        [f"not {attribute}", attribute],
        _file_loader(files, color, size, crop, f"{key} (CelebA)"),
        split=split,
        resized=True,
        attributes={name: attr[:, i] for i, name in enumerate(attr_names)},
    )


# --------------------------------------------------------------------------------------------
# Source: CelebA from a folder in its own layout (no download)
# --------------------------------------------------------------------------------------------

CELEBA_IMAGES, CELEBA_ATTR, CELEBA_PARTITION = "img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"
_CELEBA_PARTS = {"0": "train", "2": "test"}  # 1 = valid, not used (as through torchvision)


def read_celeba_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """list_attr_celeba.txt: a count line, the attribute names, then `file v1 .. v40` (-1 / 1).

    Returns the file names, the attribute names and the values as int64 (n, n_attr) in {0, 1}.
    """
    if not path.is_file():
        raise FileNotFoundError(f"CelebA attribute file not found: {path}")
    # Line by line into one int8 array: CelebA's file has 202,599 lines of 41 fields, and holding
    # them as lists of strings took ~700 MB, which prepare_data's worker processes then inherited.
    with open(path) as fh:
        declared, header = fh.readline().strip(), fh.readline()
        names = header.split()
        if not names:
            raise DataError(f"{path}: too short for a CelebA attribute file (a count line, then the attribute names)")
        n_lines = int(declared) if declared.isdigit() else 0
        # Sized by the count line, within bounds (a wrong count must not allocate gigabytes);
        # grown by doubling if the file lists more.
        values = np.empty((min(max(n_lines, 1024), 1 << 20), len(names)), dtype=np.int8)
        files: list[str] = []
        for number, line in enumerate(fh, start=3):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != len(names) + 1:
                raise DataError(f"{path}, line {number}: {len(parts) - 1} values for {len(names)} attributes")
            if len(files) == len(values):
                values = np.concatenate([values, np.empty_like(values)])
            try:
                row = np.array(parts[1:], dtype=np.int64)
            except (ValueError, OverflowError) as err:
                raise DataError(f"{path}, line {number}: attribute values must be -1 or 1 ({err})") from None
            if ((row != 1) & (row != -1)).any():
                raise DataError(f"{path}, line {number}: attribute values must be -1 or 1")
            values[len(files)] = row
            files.append(parts[0])
    values = values[:len(files)]
    if declared.isdigit() and int(declared) != len(files):
        raise DataError(f"{path}: the first line says {declared} images, the file lists {len(files)}")
    return files, names, (values.astype(np.int64) + 1) // 2


def read_celeba_partition(path: Path) -> dict[str, str]:
    """list_eval_partition.txt: `file partition` per line (0 train, 1 valid, 2 test)."""
    if not path.is_file():
        raise FileNotFoundError(f"CelebA partition file not found: {path}")
    out = {}
    for i, line in enumerate(path.read_text().splitlines()):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path}, line {i + 1}: expected `<file> <0|1|2>`, got {line!r}")
        out[parts[0]] = parts[1]
    return out


def _read_celeba_folder(spec: Mapping[str, Any], key: str) -> Source:
    """A folder in CelebA's own layout: img_align_celeba/, list_attr_celeba.txt,
    list_eval_partition.txt (what torchvision downloads into <root>/celeba). Sample ids, labels
    and images equal those of the torchvision source on the same files."""
    folder = Path(spec["path"])
    if not folder.is_dir():
        raise FileNotFoundError(f"{key}.path: folder not found: {folder}")
    image_dir = folder / CELEBA_IMAGES
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{key}.path: {folder} has no {CELEBA_IMAGES}/ folder of images")
    files, attr_names, attr = read_celeba_attributes(folder / CELEBA_ATTR)
    partition = read_celeba_partition(folder / CELEBA_PARTITION)
    unknown = [f for f in files if f not in partition]
    if unknown:
        raise DataError(f"{folder / CELEBA_PARTITION} has no partition for {len(unknown)} image(s) of "
                        f"{CELEBA_ATTR}, e.g. {', '.join(unknown[:3])}")
    present = set(os.listdir(image_dir))
    missing = [f for f in partition if partition[f] in _CELEBA_PARTS and f not in present]
    if missing:
        raise DataError(f"{folder / CELEBA_PARTITION} names {len(missing)} image(s) missing from {image_dir}, "
                        f"e.g. {', '.join(missing[:3])}")
    rows = {f: i for i, f in enumerate(files)}
    order = [rows[f] for part in SPLITS for f in files if _CELEBA_PARTS.get(partition[f]) == part]
    split = np.array([_CELEBA_PARTS[partition[files[i]]] for i in order], dtype="<U5")
    return _celeba_source([image_dir / files[i] for i in order], attr[order], attr_names, split, spec, key)


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
    load = _file_loader(files, spec.get("color") or "gray", spec.get("size"), spec.get("center_crop"),
                        f"{key} ({folder})")
    return Source(np.asarray(labels, np.int64), [d.name for d in class_dirs], load, resized=True)


# --------------------------------------------------------------------------------------------
# Source: spoken digits (WAV files) as spectrogram images
# --------------------------------------------------------------------------------------------


def spectrogram_params(spec: Mapping[str, Any]) -> audio.SpectrogramParams:
    """The spectrogram settings of an `audio_digits` config entry (schema defaults filled)."""
    return audio.SpectrogramParams(
        sample_rate=int(spec["sample_rate"]),
        band=tuple(float(b) for b in spec["band"]),
        db_range=tuple(float(b) for b in spec["db_range"]),
        n_fft=int(spec["n_fft"]),
        hop_length=int(spec["hop_length"]),
        smoothing_sigma=float(spec["smoothing_sigma"]),
        size=int(spec.get("size") or AUDIO_SIZE),
        duration=None if spec.get("duration") is None else float(spec["duration"]),
    )


def _read_audio_digits(spec: Mapping[str, Any], key: str) -> Source:
    """Spoken digits as spectrogram images, or (`representation: waveform`) as 1-channel series
    of `duration` seconds at `sample_rate`; class = the digit, or (`label: speaker`) the speaker."""
    waveform = spec.get("representation") == "waveform"
    try:  # a waveform takes the rate and duration; the spectrogram's settings do not apply to it
        params = None if waveform else spectrogram_params(spec)
    except ValueError as err:
        raise DataError(f"{key}.{err}") from None
    try:
        files = audio.find_wavs(spec["path"])
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{key}.path: {err}") from None
    parsed = [audio.parse_wav_name(f) for f in files]
    digits = np.array([p[0] for p in parsed])
    speakers = np.array([p[1] for p in parsed])
    by_speaker = spec.get("label") == "speaker"
    classes = speakers if by_speaker else digits
    present = np.unique(classes)
    labels = np.searchsorted(present, classes).astype(np.int64)
    names = [str(d) for d in present]
    # the other of digit and speaker rides along as an attribute (colour the atlas by it)
    other = ("digit", np.searchsorted(np.unique(digits), digits), [str(d) for d in np.unique(digits)]) \
        if by_speaker else ("speaker", np.searchsorted(np.unique(speakers), speakers), list(np.unique(speakers)))
    attributes, levels = {other[0]: other[1].astype(np.int64)}, {other[0]: other[2]}
    if waveform:
        if spec.get("duration") is None:
            raise DataError(f"{key}.duration: representation waveform needs a duration (seconds every "
                            "recording is padded or cut to, so that every sample has one length)")
        rate, duration = int(spec["sample_rate"]), float(spec["duration"])

        def load_waveforms(index: np.ndarray, map_fn=map) -> np.ndarray:
            out = list(map_fn(audio.wav_to_waveform, [str(files[i]) for i in index], [rate] * len(index),
                              [duration] * len(index)))
            return np.stack(out) if out else np.zeros((0, 1, int(round(duration * rate))), np.float32)

        return Source(labels, names, load_waveforms, groups=speakers, resized=True, kind="series",
                      names=["audio"], sample_rate=float(rate), attributes=attributes, attribute_levels=levels)
    color = spec.get("color")

    def load(index: np.ndarray, map_fn=map) -> np.ndarray:
        x = (
            np.stack([audio.wav_to_image(files[i], params)[None] for i in index])
            if len(index)
            else np.zeros((0, 1, params.size, params.size), np.float32)
        )
        return set_channels(x, color)

    return Source(labels, names, load, groups=speakers, resized=True, axes=ImageAxes(**audio.image_axes(params)),
                  attributes=attributes, attribute_levels=levels)


# --------------------------------------------------------------------------------------------
# Source: synthetic shapes with known factors of variation (dSprites-like)
# --------------------------------------------------------------------------------------------

# Images per rendering task: a chunk of 1,024 makes 128 tasks, which `decoding_map` hands out 16
# at a time, so up to 8 workers share a chunk (and passes of 8 images render fastest, factors.py).
FACTOR_TASK_IMAGES = 8


def _read_synthetic_factors(spec: Mapping[str, Any], key: str) -> Source:
    """Every image of the factor grid (`factors.py`), drawn at `size` when loaded: class = shape,
    attributes = the five factor indices, sample id = position in the grid. No split of its own."""
    try:
        options = with_defaults(spec.get("factors"), "#/$defs/dataset/properties/factors", f"{key}.factors")
    except ValueError as err:
        raise DataError(str(err)) from None
    try:
        grid = factors.factor_grid(**options, size=spec.get("size") or factors.DEFAULT_SIZE)
    except ValueError as err:
        raise DataError(f"{key}.{err}") from None
    index = grid.indices(np.arange(len(grid)))
    color = spec.get("color")

    def load(ids: np.ndarray, map_fn=map) -> np.ndarray:
        tasks = [ids[i:i + FACTOR_TASK_IMAGES] for i in range(0, len(ids), FACTOR_TASK_IMAGES)]
        images = list(map_fn(factors.render, [grid] * len(tasks), tasks))
        return set_channels(np.concatenate(images) if images else factors.render(grid, ids), color)

    return Source(index["shape"].copy(), list(grid.shapes), load, resized=True, attributes=index,
                  attribute_levels=grid.levels())


SOURCES: dict[str, Callable[[Mapping[str, Any], str], Source]] = {
    "idx": _read_idx_source,
    "torchvision": _read_torchvision_source,
    "celeba": _read_celeba_folder,
    "sklearn_digits": _read_sklearn_digits,
    "image_folder": _read_image_folder,
    "audio_digits": _read_audio_digits,
    "synthetic_factors": _read_synthetic_factors,
    "table": read_table_source,
    "series": read_series_source,
}
