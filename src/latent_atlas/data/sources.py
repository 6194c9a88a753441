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
import logging
import os
import zipfile
import zlib
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

log = logging.getLogger("latent_atlas")

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
# What reading a damaged idx file raises: a .gz that is not gzip (BadGzipFile, an OSError), one
# cut short (EOFError), corrupt compressed data (zlib.error).
_IDX_READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile)
_IDX_BLOCK = 1 << 20  # bytes per read call (a .gz read passes through a bytes object of this size)


class IdxFile:
    """An idx file of unsigned bytes (plain or .gz), whose rows are read when asked for.

    Opening reads and checks the header only: the magic number, and that the file holds the bytes
    its dimensions say (a plain file by its length; a .gz by its gzip trailer, whose ISIZE is the
    data's length modulo 2**32, and where that disagrees by decompressing it to count). `read(rows)`
    reads the rows asked for. A plain file is read with positional reads, one per run of
    consecutive rows (a forked process opens its own descriptor). A .gz file has no random access:
    it is decompressed forward from where the last read ended, so rows asked for in increasing
    order (as `DatasetPlan.image_chunks` asks for them) cost one pass over the file, and a row
    before the current position restarts the decompression at the file's start
    (`gzip.GzipFile.seek`). Memory: the rows read.

    Parameters
    ----------
    path : path-like
    kind : {'images', 'labels'}
        images: magic 0x00000803, rows of (rows, cols) uint8; labels: magic 0x00000801, (n,) uint8.

    Attributes
    ----------
    shape : tuple
        (n, rows, cols) for images, (n,) for labels, as the header says.
    """

    def __init__(self, path: str | os.PathLike, kind: str):
        self.path = Path(path)
        self.gz = self.path.suffix == ".gz"
        self._fh, self._pid = None, None  # this process's open file (`_handle`)
        ndim = _IDX_NDIM[kind]
        self.offset = 4 + 4 * ndim
        with self._errors(), (gzip.open if self.gz else open)(self.path, "rb") as fh:
            head = fh.read(self.offset)
        if len(head) < self.offset:
            raise DataError(f"{self.path}: too short for an idx {kind} file ({len(head)} bytes)")
        magic = int.from_bytes(head[:4], "big")
        if magic != IDX_MAGIC[kind]:
            raise DataError(
                f"{self.path}: wrong magic number 0x{magic:08X} for an idx {kind} file "
                f"(expected 0x{IDX_MAGIC[kind]:08X}: unsigned bytes, {ndim} dimension(s))"
            )
        self.shape = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
        self.row_bytes = int(np.prod(self.shape[1:]))
        expected = self.shape[0] * self.row_bytes
        with self._errors():
            held = self._data_bytes(expected)
        if held != expected:
            raise DataError(
                f"{self.path}: header says {'x'.join(map(str, self.shape))} = {expected} bytes of data, "
                f"file holds {held}"
            )

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """A missing file as FileNotFoundError, a damaged one as DataError, each naming the file."""
        try:
            yield
        except FileNotFoundError:
            raise FileNotFoundError(f"idx file not found: {self.path}") from None
        except _IDX_READ_ERRORS as err:
            raise DataError(f"cannot read idx file {self.path}: {err}") from err

    def _data_bytes(self, expected: int) -> int:
        """Bytes after the header: a plain file's length less the header; a .gz's `expected` when
        its trailer's ISIZE agrees, else counted by decompressing (a damaged file, or one of several
        gzip members, whose trailer counts the last member only)."""
        if not self.gz:
            return self.path.stat().st_size - self.offset
        with open(self.path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            isize = int.from_bytes(fh.read(4), "little")
        if isize == (self.offset + expected) % 2**32:
            return expected
        with gzip.open(self.path, "rb") as fh:
            return fh.seek(0, os.SEEK_END) - self.offset

    def _handle(self):
        """This process's open file: a GzipFile (.gz) or a descriptor; a forked process opens its own."""
        if self._fh is None or self._pid != os.getpid():
            self._fh = gzip.open(self.path, "rb") if self.gz else os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fh

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The rows `rows` (int, any order, each in 0..n-1): (len(rows), *shape[1:]) uint8."""
        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), *self.shape[1:]), np.uint8)
        if not len(rows):
            return out
        if rows.min() < 0 or rows.max() >= self.shape[0]:
            raise IndexError(f"{self.path}: rows {rows.min()}..{rows.max()} asked for, "
                             f"the file holds {self.shape[0]}")
        flat = memoryview(out.reshape(-1))
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        with self._errors():
            for s, e in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
                pos = self.offset + int(rows[s]) * self.row_bytes
                self._read_into(flat[s * self.row_bytes : e * self.row_bytes], pos)
        return out

    def _read_into(self, view: memoryview, pos: int) -> None:
        """Fill `view` with the file's bytes from byte `pos` on."""
        handle = self._handle()
        if self.gz:
            handle.seek(pos)  # forward: decompress and discard; backward: restart at the start
        while len(view):
            block = view[:_IDX_BLOCK]
            got = handle.readinto(block) if self.gz else os.preadv(handle, [block], pos)
            if got <= 0:
                raise DataError(f"{self.path}: file ended early (it holds fewer bytes than its header says)")
            view, pos = view[got:], pos + got

    def __del__(self):
        if self._fh is not None and self._pid == os.getpid():
            if self.gz:
                self._fh.close()
            else:
                os.close(self._fh)


def read_idx(path: str | os.PathLike, kind: str) -> np.ndarray:
    """Read a whole idx file (plain or .gz) of unsigned bytes, with the checks of `IdxFile`.

    Parameters
    ----------
    path : path-like
    kind : {'images', 'labels'}
        images: magic 0x00000803, returns (n, rows, cols) uint8; labels: magic 0x00000801, (n,) uint8.
    """
    idx = IdxFile(path, kind)
    return idx.read(np.arange(idx.shape[0]))


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
    transpose = spec.get("transpose")
    labels, split, load = _idx_set(
        files, transpose if transpose is not None else prefix.lower().startswith("emnist"), key
    )
    names = _idx_class_names(files["train", "images"].parent / f"{prefix}mapping.txt", int(labels.max()) + 1)
    return Source(labels, names, load, split=split)


def _idx_set(files: Mapping[tuple[str, str], Path], transpose: bool,
             key: str) -> tuple[np.ndarray, np.ndarray, Callable[..., np.ndarray]]:
    """An idx set (`idx_files`) opened for reading images when asked for (`IdxFile`).

    Returns labels : int64 (n,); split : str (n,), the train file's samples first, then the test
    file's, each in file order; load(index, map_fn) -> (len(index), 1, H, W) uint8 of those
    samples, transposed (EMNIST stores images column by column) if `transpose`.
    """
    images, labels, split = [], [], []
    for part in SPLITS:
        x = IdxFile(files[part, "images"], "images")
        y = read_idx(files[part, "labels"], "labels")
        if x.shape[0] != len(y):
            raise DataError(
                f"{key}: {files[part, 'images']} holds {x.shape[0]} images but "
                f"{files[part, 'labels']} holds {len(y)} labels"
            )
        images.append(x)
        labels.append(y)
        split.append(np.full(len(y), part, dtype="<U5"))
    if images[0].shape[1:] != images[1].shape[1:]:
        raise DataError(
            f"{key}: {files['train', 'images']} holds {'x'.join(map(str, images[0].shape[1:]))} images but "
            f"{files['test', 'images']} holds {'x'.join(map(str, images[1].shape[1:]))}"
        )
    starts = np.cumsum([0] + [x.shape[0] for x in images])

    def load(index: np.ndarray, map_fn=map) -> np.ndarray:
        index = np.asarray(index, np.int64)
        # An index outside the set goes to the first or last file, whose read refuses it.
        part = np.clip(np.searchsorted(starts, index, side="right") - 1, 0, len(images) - 1)
        out = np.empty((len(index), *images[0].shape[1:]), np.uint8)
        for p, x in enumerate(images):
            mine = part == p
            if mine.any():
                out[mine] = x.read(index[mine] - starts[p])
        return (np.ascontiguousarray(out.transpose(0, 2, 1)) if transpose else out)[:, None]

    return np.concatenate(labels).astype(np.int64), np.concatenate(split), load


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
    # Constructing the dataset downloads and checks its raw idx files; they are then read like an
    # idx folder, a chunk at a time, instead of whole by torchvision (`_unread`).
    parts = {part: _open_torchvision(_unread(cls), key, root, download, train=part == "train", **extra)
             for part in SPLITS}
    names = [str(i) for i in range(10)] if name == "MNIST" else [str(c) for c in parts["test"].classes]
    transpose = name == "EMNIST"  # EMNIST stores images column by column
    # torchvision.datasets.mnist keeps {train,t10k}-{images-idx3,labels-idx1}-ubyte (MNIST,
    # FashionMNIST) and emnist-<split>-{train,test}-...-ubyte (EMNIST) in <root>/<class name>/raw.
    raw = root / cls.__name__ / "raw"
    if all(ds.data is None for ds in parts.values()):
        try:
            files = idx_files(raw, f"emnist-{extra['split']}-" if extra else "", key)
        except FileNotFoundError as err:
            reason = f"its raw idx files are not where expected ({err})"
        else:
            labels, split, load = _idx_set(files, transpose, key)
            return Source(labels, names, load, split=split)
    else:
        reason = "torchvision loaded the data itself (its legacy processed files)"
    log.info("%s: torchvision %s read whole into memory: %s", key, name, reason)
    images, labels, split = [], [], []
    for part, ds in parts.items():
        data, targets = (ds.data, ds.targets) if ds.data is not None else cls._load_data(ds)
        images.append(np.asarray(data, dtype=np.uint8))
        labels.append(np.asarray(targets, dtype=np.int64))
        split.append(np.full(len(labels[-1]), part, dtype="<U5"))
    x = np.concatenate(images)[:, None]
    if transpose:
        x = x.transpose(0, 1, 3, 2)
    return Source(np.concatenate(labels), names, _indexer(x), split=np.concatenate(split))


def _unread(cls):
    """torchvision's `cls` (MNIST, FashionMNIST or EMNIST) whose constructor downloads and checks
    the raw files as usual but leaves `data` and `targets` None instead of reading every file whole
    (plus a copy of it): a subclass of the same name, so it uses the same <root>/<name>/raw folder.
    Where torchvision loads data otherwise (its legacy processed/*.pt files), `data` is set."""
    return type(cls.__name__, (cls,), {"_load_data": lambda self: (None, None)})


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
