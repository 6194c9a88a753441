"""The idx source (and torchvision's MNIST family) reads images a chunk at a time (`IdxFile`):
the same bytes as the whole file, for plain and .gz files and any chunking; the whole-file
reader's errors; and a chunk of a large .gz costs memory of a chunk, not of the file."""

from __future__ import annotations

import gzip
import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from test_data import make_idx_folder, write_idx

from latent_atlas.data import sources
from latent_atlas.data.build import plan_dataset, write_store
from latent_atlas.data.sources import IdxFile, read_idx
from latent_atlas.data.store import DataError


def idx_bytes(array: np.ndarray) -> bytes:
    """The uncompressed bytes of an idx images file of uint8 `array` (n, rows, cols)."""
    return (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()


def chunked(plan, rows: int) -> np.ndarray:
    """The plan's images read `rows` samples at a time, as build.py's image_chunks reads them."""
    return np.concatenate(list(plan.image_chunks(rows=rows)))


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (200, 7, 5), dtype=np.uint8)


@pytest.mark.parametrize("gz", [False, True])
def test_rows_read_in_any_chunking_equal_the_file(tmp_path, images, gz):
    path = write_idx(tmp_path / ("x-images-idx3-ubyte" + (".gz" if gz else "")), images)
    idx = IdxFile(path, "images")
    assert idx.shape == images.shape
    np.testing.assert_array_equal(read_idx(path, "images"), images)
    for size in (1, 7, 64, 200):  # consecutive chunks, as image_chunks asks for them
        got = np.concatenate([idx.read(np.arange(s, min(s + size, 200))) for s in range(0, 200, size)])
        np.testing.assert_array_equal(got, images)
    rng = np.random.default_rng(0)
    subset = np.sort(rng.choice(200, 50, replace=False))  # runs with gaps (a subsample)
    np.testing.assert_array_equal(idx.read(subset), images[subset])
    backwards = rng.permutation(200)[:60]  # earlier rows: a .gz restarts from its start
    np.testing.assert_array_equal(idx.read(backwards), images[backwards])
    np.testing.assert_array_equal(idx.read([5, 5, 4]), images[[5, 5, 4]])
    assert idx.read([]).shape == (0, 7, 5)
    with pytest.raises(IndexError, match=r"rows 0\.\.200 asked for, the file holds 200"):
        idx.read([0, 200])


def test_a_gz_of_several_members_reads_whole(tmp_path, images):
    raw = idx_bytes(images)
    path = tmp_path / "x-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw[:1000], mtime=0) + gzip.compress(raw[1000:], mtime=0))
    np.testing.assert_array_equal(IdxFile(path, "images").read(np.arange(150, 200)), images[150:])


@pytest.mark.parametrize("gz", [False, True])
def test_sources_stream_the_same_images_for_any_chunk_size(tmp_path, gz):
    src = make_idx_folder(tmp_path / "idx", gz=gz, n_train=70, n_test=25)
    whole = np.concatenate([src["x_train"], src["x_test"]])[:, None]
    plan = plan_dataset("toy", {"source": "idx", "path": str(tmp_path / "idx")}, seed=0)
    np.testing.assert_array_equal(plan.index, np.arange(95))
    for rows in (1, 3, 30, 1024):  # chunks within a file, across train and test, all at once
        np.testing.assert_array_equal(chunked(plan, rows), whole)
    sub = plan_dataset("toy", {"source": "idx", "path": str(tmp_path / "idx"),
                               "subsample": {"train": 20, "test": 7}}, seed=0)
    np.testing.assert_array_equal(chunked(sub, 6), whole[sub.index])


def test_emnist_images_stream_transposed(tmp_path):
    src = make_idx_folder(tmp_path, gz=True, prefix="emnist-letters-", test_stem="test", n_train=40, n_test=9)
    plan = plan_dataset("em", {"source": "idx", "path": str(tmp_path)}, seed=0)
    got = chunked(plan, 8)
    assert got.shape == (49, 1, 5, 6) and got.flags.c_contiguous
    np.testing.assert_array_equal(got[:, 0], np.concatenate([src["x_train"], src["x_test"]]).transpose(0, 2, 1))


def test_plain_and_gz_folders_write_the_same_store(tmp_path):
    make_idx_folder(tmp_path / "plain", gz=False, n_train=50, n_test=20)
    make_idx_folder(tmp_path / "gz", gz=True, n_train=50, n_test=20)
    for kind in ("plain", "gz"):
        write_store("t", {"source": "idx", "path": str(tmp_path / kind)}, 0, tmp_path / f"store_{kind}")
    for name in ("images.npy", "samples.parquet"):
        assert (tmp_path / "store_plain" / name).read_bytes() == (tmp_path / "store_gz" / name).read_bytes()


@pytest.mark.parametrize("gz", [False, True])
def test_header_errors_are_raised_on_opening(tmp_path, images, gz):
    ext = ".gz" if gz else ""
    longer = write_idx(tmp_path / f"a-images-idx3-ubyte{ext}", images, count=201)
    with pytest.raises(DataError, match=rf"{longer}: header says 201x7x5 = 7035 bytes of data, file holds 7000$"):
        IdxFile(longer, "images")
    shorter = write_idx(tmp_path / f"b-images-idx3-ubyte{ext}", images, count=199)
    with pytest.raises(DataError, match=r"header says 199x7x5 = 6965 bytes of data, file holds 7000$"):
        IdxFile(shorter, "images")
    magic = write_idx(tmp_path / f"c-labels-idx1-ubyte{ext}", images[:, 0, 0], magic=0x803)
    with pytest.raises(DataError, match=rf"{magic}: wrong magic number 0x00000803 for an idx labels file"):
        IdxFile(magic, "labels")
    tiny = tmp_path / f"d-images-idx3-ubyte{ext}"
    tiny.write_bytes(gzip.compress(b"\0\0\x08\x03", mtime=0) if gz else b"\0\0\x08\x03")
    with pytest.raises(DataError, match=r"too short for an idx images file \(4 bytes\)"):
        IdxFile(tiny, "images")
    with pytest.raises(FileNotFoundError, match=r"idx file not found: .*nowhere"):
        IdxFile(tmp_path / f"nowhere{ext}", "images")


def test_a_gz_cut_short_cannot_be_read(tmp_path, images):
    path = write_idx(tmp_path / "x-images-idx3-ubyte.gz", images)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=rf"cannot read idx file {path}: Compressed file ended"):
        IdxFile(path, "images")


@pytest.mark.parametrize("gz", [False, True])
def test_a_file_shortened_after_opening_ends_early(tmp_path, images, gz):
    path = write_idx(tmp_path / ("x-images-idx3-ubyte" + (".gz" if gz else "")), images)
    idx = IdxFile(path, "images")
    raw = idx_bytes(images)[:-35 * 20]  # 20 rows fewer than its header says
    path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    np.testing.assert_array_equal(idx.read(np.arange(10)), images[:10])
    with pytest.raises(DataError, match=rf"{path}: file ended early"):
        idx.read(np.arange(170, 200))


def test_reading_a_chunk_of_a_large_gz_holds_a_chunk(tmp_path):
    rng = np.random.default_rng(0)
    n, side = 12000, 64  # 49 MB of pixels
    path = tmp_path / "big-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(idx_bytes(np.zeros((n, side, side), np.uint8))[:16])
        for _ in range(0, n, 1000):
            x = np.zeros((1000, side, side), np.uint8)
            x[:, 20:44, 20:44] = rng.integers(0, 256, (1000, 24, 24), dtype=np.uint8)
            fh.write(x.tobytes())
    data_bytes = n * side * side
    tracemalloc.start()
    try:
        idx = IdxFile(path, "images")
        chunk = idx.read(np.arange(9000, 9512))  # 2 MB, after decompressing 37 MB to reach it
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert chunk.shape == (512, side, side) and chunk[:, 20:44, 20:44].any() and not chunk[:, :20].any()
    assert peak < data_bytes / 8, f"peak {peak / 1e6:.1f} MB reading 2 MB of a {data_bytes / 1e6:.0f} MB file"


# ---------------------------------------------------------------------------------------------
# torchvision's MNIST family: its raw idx files, streamed
# ---------------------------------------------------------------------------------------------


def torchvision_root(root: Path, name: str, prefix: str, test_stem: str, classes: int) -> dict[str, np.ndarray]:
    """Raw files where torchvision keeps them after download: <root>/<name>/raw/, uncompressed."""
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    out = {}
    for part, stem, n in (("train", "train", 60), ("test", test_stem, 20)):
        out[f"x_{part}"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        out[f"y_{part}"] = rng.permutation(np.arange(n, dtype=np.uint8) % classes)  # every class in train
        write_idx(raw / f"{prefix}{stem}-images-idx3-ubyte", out[f"x_{part}"])
        write_idx(raw / f"{prefix}{stem}-labels-idx1-ubyte", out[f"y_{part}"])
    return out


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST", "EMNIST"])
def test_torchvision_mnist_family_streams_its_raw_files(tmp_path, monkeypatch, caplog, name):
    import torchvision.datasets
    import torchvision.datasets.mnist as tv_mnist

    emnist = name == "EMNIST"
    src = torchvision_root(tmp_path, name, "emnist-balanced-" if emnist else "", "test" if emnist else "t10k",
                           47 if emnist else 10)
    extra = {"split": "balanced"} if emnist else {}
    cls = getattr(torchvision.datasets, name)
    tv_images = np.concatenate([cls(root=str(tmp_path), train=t, download=False, **extra).data.numpy()
                                for t in (True, False)])
    tv_classes = cls(root=str(tmp_path), train=False, download=False, **extra).classes
    np.testing.assert_array_equal(tv_images, np.concatenate([src["x_train"], src["x_test"]]))

    upright = tv_images.transpose(0, 2, 1) if emnist else tv_images
    spec = {"source": "torchvision", "name": name, "path": str(tmp_path), "download": False,
            **({"emnist_split": "balanced"} if emnist else {})}

    def moved(*args):
        raise FileNotFoundError("moved")

    with monkeypatch.context() as patch:  # raw files not found as named: torchvision reads them whole
        patch.setattr(sources, "idx_files", moved)
        with caplog.at_level(logging.INFO, logger="latent_atlas"):
            whole = plan_dataset("tv", spec, seed=0)
        assert f"torchvision {name} read whole into memory: its raw idx files are not where" in caplog.text
        np.testing.assert_array_equal(chunked(whole, 16)[:, 0], upright)

    def whole_file_read(path):
        raise AssertionError(f"torchvision read {path} whole")

    monkeypatch.setattr(tv_mnist, "read_image_file", whole_file_read)
    plan = plan_dataset("tv", spec, seed=0)
    np.testing.assert_array_equal(plan.labels, np.concatenate([src["y_train"], src["y_test"]]))
    assert list(plan.split) == ["train"] * 60 + ["test"] * 20
    assert plan.class_names == ([str(i) for i in range(10)] if name == "MNIST" else list(tv_classes))
    np.testing.assert_array_equal(chunked(plan, 16)[:, 0], upright)
