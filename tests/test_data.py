"""The data layer: every source, the common options, the dataset file and its errors."""

from __future__ import annotations

import copy
import gzip
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from scipy.io import wavfile

from latent_atlas.schema import SCHEMA_PATH, with_defaults
from latent_atlas.data import audio
from latent_atlas.data.build import build_dataset, write_store
from latent_atlas.data.figures import example_indices, plot_examples
from latent_atlas.data.jobs import plot_dataset_examples, prepare_data
from latent_atlas.data.sources import spectrogram_params
from latent_atlas.data.store import (DataError, Dataset, StoredImages, float_chunks, load_dataset, load_image_axes,
                                     save_dataset)
from latent_atlas.io import read_parquet_metadata
from latent_atlas.runtime import Files, Job

from conftest import FSDD, ROOT

FASHION = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------------------------------------
# helpers: idx files, WAVs
# ---------------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, magic: int | None = None, count: int | None = None) -> Path:
    """An idx file of uint8 `array` (gz when the name ends in .gz), optionally with a wrong header."""
    array = np.asarray(array, np.uint8)
    magic = magic if magic is not None else (0x803 if array.ndim == 3 else 0x801)
    dims = list(array.shape)
    if count is not None:
        dims[0] = count
    raw = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + array.tobytes()
    path.write_bytes(gzip.compress(raw, mtime=0) if path.suffix == ".gz" else raw)
    return path


def make_idx_folder(
    folder: Path,
    gz: bool,
    n_train: int = 30,
    n_test: int = 10,
    prefix: str = "",
    test_stem: str = "t10k",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A small MNIST-format folder of random 6x5 images (non-square, to catch transposes)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    out = {}
    for part, stem, n in (("train", "train", n_train), ("test", test_stem, n_test)):
        x = rng.integers(0, 256, (n, 6, 5), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 3
        write_idx(folder / f"{prefix}{stem}-images-idx3-ubyte{ext}", x)
        write_idx(folder / f"{prefix}{stem}-labels-idx1-ubyte{ext}", y)
        out[f"x_{part}"], out[f"y_{part}"] = x, y
    return out


def tone(freq: float, rate: int, seconds: float = 0.4, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t) * np.hanning(len(t))


def write_wav(path: Path, x: np.ndarray, rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, rate, (x * 32767).astype(np.int16))
    return path


def make_audio_folder(folder: Path) -> Path:
    """AudioMNIST-like tree: one sub-folder per speaker; digit d is a tone at 400 + 700 d Hz.

    One speaker is recorded at 16 kHz, to be resampled to the configured 8 kHz.
    """
    rng = np.random.default_rng(0)
    for speaker, rate in (("alice", 8000), ("bob", 8000), ("carol", 16000), ("dave", 8000)):
        for digit in range(3):
            for take in range(4):
                x = tone(400 + 700 * digit, rate, 0.3 + 0.05 * take) + 0.01 * rng.standard_normal(
                    int(rate * (0.3 + 0.05 * take))
                )
                write_wav(folder / speaker / f"{digit}_{speaker}_{take}.wav", x, rate)
    return folder


def speakers_of(ds: Dataset, folder: Path) -> np.ndarray:
    files = audio.find_wavs(folder)
    return np.array([audio.parse_wav_name(files[i])[1] for i in ds.sample_id])


# ---------------------------------------------------------------------------------------------
# idx
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reads_plain_and_gz_upright(tmp_path, gz):
    src = make_idx_folder(tmp_path / "idx", gz=gz)
    ds = build_dataset("toy", {"source": "idx", "path": str(tmp_path / "idx")}, seed=0)
    assert ds.images.dtype == np.float32 and ds.images.shape == (40, 1, 6, 5)
    assert ds.input_shape == (1, 6, 5) and ds.n_classes == 3 and ds.class_names == ["0", "1", "2"]
    assert list(ds.split) == ["train"] * 30 + ["test"] * 10
    np.testing.assert_array_equal(ds.sample_id, np.arange(40))
    # Row-major images come back untouched (no transpose), scaled to [0, 1].
    np.testing.assert_array_equal(np.rint(ds.images[:30, 0] * 255), src["x_train"])
    np.testing.assert_array_equal(np.rint(ds.test().images[:, 0] * 255), src["x_test"])
    np.testing.assert_array_equal(ds.labels, np.concatenate([src["y_train"], src["y_test"]]))


def test_idx_wrong_magic_names_the_file(tmp_path):
    make_idx_folder(tmp_path, gz=True)
    bad = write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(30), magic=0x803)
    with pytest.raises(DataError, match=rf"{bad}.*wrong magic number 0x00000803.*0x00000801"):
        build_dataset("toy", {"source": "idx", "path": str(tmp_path)}, seed=0)


def test_idx_count_mismatch_names_both_files(tmp_path):
    make_idx_folder(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(9))
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte holds 10 images but .*t10k-labels-idx1-ubyte holds 9"
    ):
        build_dataset("toy", {"source": "idx", "path": str(tmp_path)}, seed=0)


def test_idx_truncated_file(tmp_path):
    make_idx_folder(tmp_path, gz=False)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((30, 6, 5)), count=31)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: header says 31x6x5"):
        build_dataset("toy", {"source": "idx", "path": str(tmp_path)}, seed=0)


def test_idx_missing_folder_and_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"datasets.toy.path: folder not found: .*nowhere"):
        build_dataset("toy", {"source": "idx", "path": str(tmp_path / "nowhere")}, seed=0)
    make_idx_folder(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"no test labels file .*t10k-labels-idx1-ubyte"):
        build_dataset("toy", {"source": "idx", "path": str(tmp_path)}, seed=0)


def test_idx_emnist_folder_prefix_transpose_and_mapping(tmp_path):
    src = make_idx_folder(tmp_path, gz=True, prefix="emnist-letters-", test_stem="test")
    make_idx_folder(tmp_path, gz=True, prefix="emnist-digits-", test_stem="test", seed=1)
    (tmp_path / "emnist-letters-mapping.txt").write_text("0 65 97\n1 66 98\n2 67 99\n")
    with pytest.raises(DataError, match=r"datasets.em.prefix: .*'emnist-digits-', 'emnist-letters-'"):
        build_dataset("em", {"source": "idx", "path": str(tmp_path)}, seed=0)
    ds = build_dataset("em", {"source": "idx", "path": str(tmp_path), "prefix": "emnist-letters-"}, seed=0)
    assert ds.class_names == ["A", "B", "C"]
    assert ds.input_shape == (1, 5, 6)  # EMNIST stores columns first: transposed on reading
    np.testing.assert_array_equal(np.rint(ds.images[0, 0] * 255), src["x_train"][0].T)
    raw = build_dataset(
        "em",
        {"source": "idx", "path": str(tmp_path), "prefix": "emnist-letters-", "transpose": False},
        seed=0,
    )
    assert raw.input_shape == (1, 6, 5)


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_folder():
    names = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["datasets"]["fashion_mnist"][
        "class_names"
    ]
    ds = build_dataset(
        "fm",
        {
            "source": "idx",
            "path": str(FASHION),
            "class_names": names,
            "subsample": {"train": 500, "test": 100},
        },
        seed=0,
    )
    assert len(ds) == 600 and ds.input_shape == (1, 28, 28) and ds.class_names[9] == "Ankle boot"
    assert np.bincount(ds.labels[ds.split == "train"]).tolist() == [50] * 10


# ---------------------------------------------------------------------------------------------
# sklearn digits
# ---------------------------------------------------------------------------------------------


def test_sklearn_digits_upscaled_with_fraction_split():
    from sklearn.datasets import load_digits

    spec = {
        "source": "sklearn_digits",
        "size": 16,
        "split": {"method": "fraction", "test_fraction": 0.25, "seed": 0},
    }
    ds = build_dataset("digits", spec, seed=0)
    assert ds.images.shape == (1797, 1, 16, 16) and ds.class_names == [str(d) for d in range(10)]
    assert 0 <= ds.images.min() and ds.images.max() <= 1 and ds.images.max() > 0.9
    # Stratified: each class puts round(25%) of its samples in test.
    counts = np.bincount(load_digits().target)
    np.testing.assert_array_equal(np.bincount(ds.test().labels), np.round(0.25 * counts).astype(int))
    assert np.all(np.diff(ds.sample_id[ds.split == "train"]) > 0)
    native = build_dataset("digits", {"source": "sklearn_digits"}, seed=0)  # default split: fraction 0.15
    np.testing.assert_allclose(
        native.images[np.argsort(native.sample_id), 0], load_digits().images / 16, atol=1e-6
    )
    assert abs((native.split == "test").mean() - 0.15) < 0.01


def test_source_split_asked_of_a_source_without_one():
    with pytest.raises(
        DataError, match=r"datasets.digits.split.method: source 'sklearn_digits' has no train/test split"
    ):
        build_dataset("digits", {"source": "sklearn_digits", "split": {"method": "source"}}, seed=0)
    with pytest.raises(
        DataError, match=r"datasets.digits.split.method: 'speaker' needs a source with speakers"
    ):
        build_dataset("digits", {"source": "sklearn_digits", "split": {"method": "speaker"}}, seed=0)
    with pytest.raises(DataError, match=r"datasets.digits.split: the test split is empty"):
        build_dataset("digits", {"source": "sklearn_digits", "split": {"test_fraction": 0.001}}, seed=0)


# ---------------------------------------------------------------------------------------------
# image folder
# ---------------------------------------------------------------------------------------------


def make_image_folder(folder: Path) -> Path:
    """Three classes; each image is a coloured bar in the top rows, so orientation and colour show."""
    colors = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    for name, rgb in colors.items():
        (folder / name).mkdir(parents=True)
        for k in range(5):
            img = np.zeros((24, 20, 3), np.uint8)
            img[:6] = rgb
            Image.fromarray(img).save(folder / name / f"img{k}.png")
    return folder


def test_image_folder_rgb_gray_size_crop(tmp_path):
    folder = make_image_folder(tmp_path / "imgs")
    spec = {
        "source": "image_folder",
        "path": str(folder),
        "color": "rgb",
        "split": {"method": "fraction", "test_fraction": 0.2},
    }
    ds = build_dataset("imgs", spec, seed=0)
    assert ds.class_names == ["blue", "green", "red"] and ds.input_shape == (3, 24, 20)
    assert np.bincount(ds.test().labels).tolist() == [1, 1, 1]
    red = ds.images[ds.labels == 2][0]
    np.testing.assert_array_equal(red[:, 0, 0], [1, 0, 0])  # top row red, bottom black: upright
    assert red[:, -1].max() == 0
    gray = build_dataset("imgs", dict(spec, color="gray", size=8, center_crop=20), seed=0)
    assert gray.input_shape == (1, 8, 8)
    np.testing.assert_allclose(gray.images[gray.labels == 1][0, 0, -1], 0)
    with pytest.raises(DataError, match="split.method: source 'image_folder' has no train/test split"):
        build_dataset("imgs", dict(spec, split={"method": "source"}), seed=0)


def test_image_folder_errors_name_the_file(tmp_path):
    folder = make_image_folder(tmp_path / "imgs")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "red" / "small.png")
    with pytest.raises(DataError, match=r"images differ in size .*set `size`"):
        build_dataset("imgs", {"source": "image_folder", "path": str(folder)}, seed=0)
    bad = folder / "green" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match=rf"cannot read image {bad}"):
        build_dataset("imgs", {"source": "image_folder", "path": str(folder), "size": 8}, seed=0)
    with pytest.raises(FileNotFoundError, match=r"datasets.imgs.path: folder not found"):
        build_dataset("imgs", {"source": "image_folder", "path": str(tmp_path / "none")}, seed=0)


# ---------------------------------------------------------------------------------------------
# audio digits
# ---------------------------------------------------------------------------------------------


def test_spectrogram_rows_are_frequencies_high_at_top():
    params = audio.SpectrogramParams(
        sample_rate=8000,
        band=(100, 3800),
        db_range=(-30, 0),
        n_fft=256,
        hop_length=64,
        smoothing_sigma=0,
        size=32,
    )
    low = audio.spectrogram_image(tone(500, 8000), params)
    high = audio.spectrogram_image(tone(3000, 8000), params)
    assert low.shape == (32, 32) and low.dtype == np.float32 and low.min() == 0 and low.max() == 1
    # Row of maximum energy: 500 Hz near the bottom, 3000 Hz near the top (row 0 = 3800 Hz).
    expected = lambda f: (3800 - f) / (3800 - 100) * 32  # noqa: E731
    assert abs(low.sum(axis=1).argmax() - expected(500)) <= 2
    assert abs(high.sum(axis=1).argmax() - expected(3000)) <= 2
    # dB clipping: levels below -30 dB all map to the image minimum.
    assert (low == 0).mean() > 0.5


def test_audio_digits_synthetic_tree(tmp_path):
    folder = make_audio_folder(tmp_path / "audio")
    spec = {
        "source": "audio_digits",
        "path": str(folder),
        "sample_rate": 8000,
        "size": 16,
        "split": {"method": "speaker", "test_speakers": ["carol"]},
    }
    ds = build_dataset("spoken", spec, seed=0)
    assert ds.images.shape == (48, 1, 16, 16) and ds.class_names == ["0", "1", "2"]
    assert set(speakers_of(ds.test(), folder)) == {"carol"}
    assert "carol" not in set(speakers_of(ds.train(), folder))
    # Each digit's tone lands in its own frequency row, also for carol's 16 kHz files (resampled).
    peak_row = ds.images[:, 0].sum(axis=2).argmax(axis=1)
    for d in range(3):
        rows = peak_row[ds.labels == d]
        assert np.ptp(rows) <= 1, rows
    assert peak_row[ds.labels == 0].mean() > peak_row[ds.labels == 2].mean()
    # Random split by speaker with a seed: speakers disjoint, reproducible.
    drawn = build_dataset("spoken", dict(spec, split={"method": "speaker", "test_fraction": 0.3}), seed=3)
    assert not set(speakers_of(drawn.test(), folder)) & set(speakers_of(drawn.train(), folder))
    again = build_dataset("spoken", dict(spec, split={"method": "speaker", "test_fraction": 0.3}), seed=3)
    np.testing.assert_array_equal(drawn.split, again.split)
    with pytest.raises(DataError, match=r"datasets.spoken.split.test_speakers: unknown speaker\(s\) zoe"):
        build_dataset("spoken", dict(spec, split={"method": "speaker", "test_speakers": ["zoe"]}), seed=0)


def test_audio_digits_bad_files(tmp_path):
    folder = make_audio_folder(tmp_path / "audio")
    bad = folder / "bob" / "1_bob_9.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(audio.AudioError, match=rf"cannot read WAV file {bad}"):
        build_dataset("spoken", {"source": "audio_digits", "path": str(folder)}, seed=0)
    bad.unlink()
    odd = write_wav(folder / "bob" / "one-bob.wav", tone(500, 8000), 8000)
    with pytest.raises(audio.AudioError, match=rf"{odd}: file name does not follow"):
        build_dataset("spoken", {"source": "audio_digits", "path": str(folder)}, seed=0)
    with pytest.raises(FileNotFoundError, match=r"datasets.spoken.path: audio folder not found"):
        build_dataset("spoken", {"source": "audio_digits", "path": str(tmp_path / "none")}, seed=0)


@pytest.mark.skipif(not FSDD.is_dir(), reason="FSDD recordings not present")
def test_audio_digits_fsdd_speaker_split():
    spec = {
        "source": "audio_digits",
        "path": str(FSDD),
        "sample_rate": 8000,
        "band": [100, 3800],
        "split": {"method": "speaker", "test_speakers": ["george"]},
        "subsample": {"train": 250, "test": 50},
    }
    ds = build_dataset("fsdd", spec, seed=0)
    assert ds.images.shape == (300, 1, 32, 32) and ds.class_names == [str(d) for d in range(10)]
    assert np.bincount(ds.train().labels).tolist() == [25] * 10
    assert set(speakers_of(ds.test(), FSDD)) == {"george"}
    assert "george" not in set(speakers_of(ds.train(), FSDD))
    # Per-image min-max normalisation; not blank: voices put energy in the lower half.
    assert np.allclose(ds.images.min(axis=(1, 2, 3)), 0) and np.allclose(ds.images.max(axis=(1, 2, 3)), 1)
    assert ds.images[:, 0, 16:].mean() > ds.images[:, 0, :8].mean()


# ---------------------------------------------------------------------------------------------
# common options: classes, subsample, split
# ---------------------------------------------------------------------------------------------


def test_classes_by_name_and_label_renumbered_in_order():
    ds = build_dataset("d", {"source": "sklearn_digits", "classes": ["7", 1]}, seed=0)
    assert ds.class_names == ["7", "1"] and set(ds.labels) == {0, 1}
    from sklearn.datasets import load_digits

    target = load_digits().target
    np.testing.assert_array_equal(np.where(ds.labels == 0, 7, 1), target[ds.sample_id])


def test_unknown_class_name_lists_valid_names(tmp_path):
    make_idx_folder(tmp_path, gz=False)
    spec = {
        "source": "idx",
        "path": str(tmp_path),
        "class_names": ["cat", "dog", "cow"],
        "classes": ["cat", "horse"],
    }
    with pytest.raises(
        DataError, match=r"datasets.pets.classes: unknown class 'horse'; valid names: cat, dog, cow"
    ):
        build_dataset("pets", spec, seed=0)
    with pytest.raises(DataError, match=r"datasets.pets.classes: label 5 is out of range"):
        build_dataset("pets", dict(spec, classes=[5]), seed=0)
    with pytest.raises(DataError, match=r"datasets.pets.class_names: the source has 3 labels"):
        build_dataset("pets", dict(spec, class_names=["cat"], classes=None), seed=0)


def test_subsample_is_stratified_seeded_and_per_split(tmp_path):
    make_idx_folder(tmp_path, gz=False, n_train=300, n_test=90)
    spec = {"source": "idx", "path": str(tmp_path), "subsample": {"train": 30, "test": 9}}
    a = build_dataset("s", spec, seed=0)
    assert (a.split == "train").sum() == 30 and (a.split == "test").sum() == 9
    assert np.bincount(a.train().labels).tolist() == [10, 10, 10]
    assert np.bincount(a.test().labels).tolist() == [3, 3, 3]
    assert set(a.test().sample_id) <= set(range(300, 390))  # test ids continue after train
    b = build_dataset("s", spec, seed=0)
    c = build_dataset("s", spec, seed=1)
    d = build_dataset("s", dict(spec, subsample={"train": 30, "test": 9, "seed": 7}), seed=0)
    np.testing.assert_array_equal(a.sample_id, b.sample_id)
    assert not np.array_equal(a.sample_id, c.sample_id) and not np.array_equal(a.sample_id, d.sample_id)


def test_fraction_split_pools_a_source_split(tmp_path):
    make_idx_folder(tmp_path, gz=False, n_train=60, n_test=30)
    ds = build_dataset(
        "s",
        {
            "source": "idx",
            "path": str(tmp_path),
            "split": {"method": "fraction", "test_fraction": 0.2, "seed": 5},
        },
        seed=0,
    )
    assert (ds.split == "test").sum() == 18 and np.bincount(ds.test().labels).tolist() == [6, 6, 6]
    assert ds.test().sample_id.min() < 60  # samples of the source's train part can land in test
    assert list(ds.split) == sorted(ds.split, key=["train", "test"].index)  # train first, then test


# ---------------------------------------------------------------------------------------------
# torchvision (the class monkeypatched: no download)
# ---------------------------------------------------------------------------------------------


class FakeEMNIST:
    """Stands in for torchvision.datasets.EMNIST: .data (N, 28, 28) uint8 tensor-like, .targets, .classes."""

    calls: list[dict] = []
    classes_split_dict = {
        "balanced": sorted(set(string.digits + string.ascii_letters) - set("cijklmopsuvwxyz"))
    }

    def __init__(self, root, split, train=True, download=True):
        type(self).calls.append({"root": root, "split": split, "train": train, "download": download})
        self.classes = self.classes_split_dict[split]
        labels = np.array([10, 36, 14, 39, 18, 24, 30, 3, 36, 10], np.int64)
        if not train:
            labels = labels[:5]
        self.targets = labels
        self.data = np.zeros((len(labels), 28, 28), np.uint8)
        self.data[:, 0, 5] = 255  # stored column-major: pixel (row 5, col 0) once transposed


def test_torchvision_emnist_vowels_folded(monkeypatch, tmp_path):
    import torchvision.datasets

    FakeEMNIST.calls = []
    monkeypatch.setattr(torchvision.datasets, "EMNIST", FakeEMNIST)
    spec = {
        "source": "torchvision",
        "name": "EMNIST",
        "emnist_split": "balanced",
        "path": str(tmp_path / "tv"),
        "fold_labels": {"36": 10, 39: 14},
        "classes": ["A", "E", "I", "O", "U"],
    }
    ds = build_dataset("vowels", spec, seed=0)
    assert FakeEMNIST.calls == [
        {"root": str(tmp_path / "tv"), "split": "balanced", "train": t, "download": True}
        for t in (True, False)
    ]
    assert ds.class_names == ["A", "E", "I", "O", "U"]
    # train: A a E e I O U (digit 3 dropped) a A; test: A a E e I
    assert ds.train().labels.tolist() == [0, 0, 1, 1, 2, 3, 4, 0, 0]
    assert ds.test().labels.tolist() == [0, 0, 1, 1, 2]
    assert ds.images[0, 0, 5, 0] == 1 and ds.images[0, 0, 0, 5] == 0  # transposed upright
    no_fold = build_dataset("v", dict(spec, fold_labels=None, classes=None), seed=0)
    assert "a" in no_fold.class_names and "e" in no_fold.class_names and len(no_fold.class_names) == 8


def test_torchvision_default_root_and_missing_data(monkeypatch):
    import torchvision.datasets

    seen = {}

    class Missing:
        def __init__(self, root, train=True, download=False):
            seen["root"] = root
            raise RuntimeError("Dataset not found. You can use download=True to download it")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Missing)
    with pytest.raises(
        DataError,
        match=r"datasets.fm: torchvision Missing is not in resources/torchvision .*"
        r"set datasets.fm.download: true",
    ):
        build_dataset("fm", {"source": "torchvision", "name": "FashionMNIST", "download": False}, seed=0)
    assert seen["root"] == "resources/torchvision"


def test_torchvision_celeba_crop_resize_rgb(monkeypatch, tmp_path):
    import torch
    import torchvision.datasets

    img = np.zeros((218, 178, 3), np.uint8)
    img[39:109, 19:159] = (0, 0, 255)  # top half of the centre 140 crop is blue
    (tmp_path / "celeba" / "img_align_celeba").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(img).save(tmp_path / "celeba" / "img_align_celeba" / f"{i:06d}.png")

    class FakeCelebA:  # what the source reads of torchvision's CelebA: file names and attributes
        base_folder = "celeba"

        def __init__(self, root, split, target_type, download):
            n, first = {"train": (4, 0), "test": (2, 4)}[split]
            self.root = root
            self.filename = [f"{first + i:06d}.png" for i in range(n)]
            self.attr_names = ["Smiling", "Male", ""]
            self.attr = torch.tensor([[i % 2, (i + 1) % 2, 0] for i in range(n)])

    monkeypatch.setattr(torchvision.datasets, "CelebA", FakeCelebA)
    ds = build_dataset("faces", {"source": "torchvision", "name": "CelebA", "attribute": "Smiling",
                                 "path": str(tmp_path)}, seed=0)
    assert ds.input_shape == (3, 96, 96) and ds.class_names == ["not Smiling", "Smiling"]
    assert ds.labels.tolist() == [0, 1, 0, 1, 0, 1] and list(ds.split) == ["train"] * 4 + ["test"] * 2
    np.testing.assert_allclose(ds.images[0, :, 20, 48], [0, 0, 1])
    np.testing.assert_allclose(ds.images[0, :, 75, 48], [0, 0, 0])
    with pytest.raises(
        DataError, match=r"datasets.faces.attribute: unknown CelebA attribute 'Hat'; valid: Smiling, Male"
    ):
        build_dataset("faces", {"source": "torchvision", "name": "CelebA", "attribute": "Hat"}, seed=0)


# ---------------------------------------------------------------------------------------------
# the dataset file
# ---------------------------------------------------------------------------------------------


def test_store_is_deterministic_and_round_trips(tmp_path):
    make_idx_folder(tmp_path / "idx", gz=True)
    spec = {"source": "idx", "path": str(tmp_path / "idx"), "subsample": {"train": 20, "test": 5}}
    a = build_dataset("t", spec, seed=0)
    write_store("t", spec, 0, tmp_path / "a")
    write_store("t", spec, 0, tmp_path / "b", workers=2)
    for name in ("images.npy", "samples.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert np.load(tmp_path / "a" / "images.npy").dtype == np.uint8  # 8-bit source stored as bytes
    samples = pd.read_parquet(tmp_path / "a" / "samples.parquet")
    assert list(samples.columns) == ["sample_id", "split", "label"]
    assert samples["sample_id"].dtype == np.int64 and samples["label"].dtype == np.int64
    back = load_dataset(tmp_path / "a")
    assert isinstance(back.images, StoredImages) and back.images.dtype == np.float32 and back.name == "t"
    assert back.class_names == ["0", "1", "2"]
    np.testing.assert_array_equal(np.asarray(back.images), a.images)
    np.testing.assert_array_equal(back.split, a.split)
    np.testing.assert_array_equal(back.sample_id, a.sample_id)
    # an in-memory dataset written with save_dataset gives the same bytes
    save_dataset(a, tmp_path / "c")
    assert (tmp_path / "c" / "images.npy").read_bytes() == (tmp_path / "a" / "images.npy").read_bytes()
    digits = build_dataset(
        "d", {"source": "sklearn_digits", "size": 12, "subsample": {"train": 50, "test": 10}}, seed=0
    )
    save_dataset(digits, tmp_path / "d")
    assert np.load(tmp_path / "d" / "images.npy").dtype == np.float32  # interpolated values are not 8-bit
    np.testing.assert_array_equal(np.asarray(load_dataset(tmp_path / "d" / "samples.parquet").images),
                                  digits.images)


def test_stored_images_read_only_the_rows_asked_for(tmp_path):
    ds = build_dataset("d", {"source": "sklearn_digits", "subsample": {"train": 60, "test": 20}}, seed=0)
    save_dataset(ds, tmp_path / "d")
    back = load_dataset(tmp_path / "d")
    test, rows = back.test(), np.array([7, 2, 3, 4, 0])
    assert isinstance(test.images, StoredImages) and test.images.shape == (20, 1, 8, 8)
    np.testing.assert_array_equal(test.images[rows], ds.test().images[rows])
    np.testing.assert_array_equal(test.images[5], ds.test().images[5])
    np.testing.assert_array_equal(test.images[2:9, 0, 1:3], ds.test().images[2:9, 0, 1:3])
    mask = ds.labels == 3
    np.testing.assert_array_equal(back.images[mask], ds.images[mask])
    np.testing.assert_array_equal(np.concatenate(list(float_chunks(back.images, 7 * 64 * 4))), ds.images)


def test_load_dataset_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset file not found: .*missing/images.npy"):
        load_dataset(tmp_path / "missing")
    ds = build_dataset("d", {"source": "sklearn_digits", "subsample": {"train": 10, "test": 5}}, seed=0)
    save_dataset(ds, tmp_path / "junk")
    (tmp_path / "junk" / "images.npy").write_bytes(b"not an array")
    with pytest.raises(DataError, match=r"junk/images.npy: not a readable .npy images file"):
        load_dataset(tmp_path / "junk")
    save_dataset(ds, tmp_path / "short")
    np.save(tmp_path / "short" / "images.npy", np.zeros((3, 1, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"short: images.npy holds 3 images, samples.parquet 15 samples"):
        load_dataset(tmp_path / "short")
    with open(tmp_path / "short" / "images.npy", "r+b") as fh:
        fh.truncate(200)
    with pytest.raises(DataError, match=r"short/images.npy: header says \(3, 1, 8, 8\) uint8"):
        load_dataset(tmp_path / "short")


def test_dataset_subsets():
    ds = build_dataset(
        "d", {"source": "sklearn_digits", "split": {"method": "fraction", "test_fraction": 0.5}}, seed=0
    )
    assert len(ds.train()) + len(ds.test()) == len(ds) and set(ds.test().split) == {"test"}
    part = ds.subset(ds.labels < 3)
    assert part.n_classes == 10 and set(part.labels) == {0, 1, 2}


# ---------------------------------------------------------------------------------------------
# the example grid and the config schema
# ---------------------------------------------------------------------------------------------


def test_example_grid_rows_are_classes(tmp_path):
    from latent_atlas.plotting import save_figure

    ds = build_dataset("d", {"source": "sklearn_digits", "classes": [3, 8, 0]}, seed=0)
    fig = plot_examples(ds, per_class=5, random_state=0)
    axes = np.array(fig.axes).reshape(3, 5)
    assert [ax.get_ylabel().split("\n")[0] for ax in axes[:, 0]] == ["3", "8", "0"]
    shown = axes[1, 0].images[0].get_array()
    picks = example_indices(ds, 5, 0)
    np.testing.assert_array_equal(shown, ds.images[picks[1][0], 0])
    assert all(ds.labels[p].tolist() == [r] * 5 for r, p in enumerate(picks))
    save_figure(fig, tmp_path / "grid.png")
    save_figure(plot_examples(ds, per_class=5, random_state=0), tmp_path / "again.png")
    assert (tmp_path / "grid.png").read_bytes() == (tmp_path / "again.png").read_bytes()
    # Gray images on the gray colour map, black text: every pixel is a gray level, dark to light.
    png = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB")).astype(int)
    assert np.array_equal(png[..., 0], png[..., 1]) and np.array_equal(png[..., 1], png[..., 2])
    assert png.min() < 30 and png.max() > 225


def test_jobs_write_the_dataset_and_its_grid(tmp_path):
    """prepare_data writes what build_dataset + save_dataset give (a float source); the grid of an audio source is in colour."""
    spec = {"source": "sklearn_digits", "classes": [0, 1], "subsample": {"train": 20, "test": 10}}
    store = tmp_path / "data" / "d"
    prepare_data(
        Job(
            output=Files(images=str(store / "images.npy"), samples=str(store / "samples.parquet")),
            wildcards=Files(dataset="d"),
        ),
        seed=3,
        spec=spec,
    )
    save_dataset(build_dataset("d", spec, seed=3), tmp_path / "direct")
    for name in ("images.npy", "samples.parquet"):
        assert (store / name).read_bytes() == (tmp_path / "direct" / name).read_bytes()
    assert len(load_dataset(store)) == 30

    # an audio source's store: spectrograms of the same shape and classes, with axes in Hz and s
    audio_spec = {"source": "audio_digits", "path": str(make_audio_folder(tmp_path / "audio")), "sample_rate": 8000,
                  "size": 8, "classes": [0, 1]}
    audio_store = tmp_path / "data" / "spoken"
    prepare_data(Job(output=Files([str(audio_store / "images.npy"), str(audio_store / "samples.parquet")]),
                     wildcards=Files(dataset="spoken")), seed=3, spec=audio_spec)

    def grid(folder: Path, dataset: str) -> np.ndarray:
        out = tmp_path / f"{dataset}.png"
        plot_dataset_examples(
            Job(
                input=Files([str(folder / "images.npy"), str(folder / "samples.parquet")]),
                output=Files([str(out)]),
                wildcards=Files(dataset=dataset),
            ),
            seed=3,
        )
        return np.asarray(Image.open(out).convert("RGB")).astype(int)

    gray, magma = grid(store, "d"), grid(audio_store, "spoken")
    # The spectrograms' grid carries their axes (so its size differs from the plain grid's): it is
    # the store drawn on magma.
    from latent_atlas.data.jobs import EXAMPLES_PER_CLASS
    from latent_atlas.plotting import save_figure

    save_figure(plot_examples(load_dataset(audio_store), EXAMPLES_PER_CLASS, random_state=3, cmap="magma"),
                tmp_path / "magma.png")
    assert np.array_equal(magma, np.asarray(Image.open(tmp_path / "magma.png").convert("RGB")).astype(int))
    assert np.array_equal(gray[..., 0], gray[..., 2])
    assert np.abs(magma[..., 0] - magma[..., 2]).max() > 50  # magma's purples and oranges


def test_schema_dataset_entries(tmp_path):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(SCHEMA_PATH)
    cfg = {
        "models": {},
        "datasets": {
            "spoken": {"source": "audio_digits", "path": "x", "split": {"method": "speaker"}},
            "vowels": {
                "source": "torchvision",
                "name": "EMNIST",
                "fold_labels": {36: 10, 39: 14},
                "classes": ["A", "E", "I", "O", "U"],
            },
        },
    }
    bare = copy.deepcopy(cfg["datasets"])
    validate(cfg, schema)
    spoken = cfg["datasets"]["spoken"]
    # The code fills a bare entry from the schema exactly as validate() does (no defaults of its own).
    for name, entry in bare.items():
        assert with_defaults(entry, "#/$defs/dataset", f"datasets.{name}") == cfg["datasets"][name]
    assert cfg["datasets"]["vowels"]["emnist_split"] == "balanced"
    # The study's spectrograms: 8 kHz, 100..3800 Hz, -30..0 dB, 256/64 STFT, 32x32 images.
    assert spectrogram_params(spoken) == audio.SpectrogramParams(
        sample_rate=8000,
        band=(100, 3800),
        db_range=(-30, 0),
        n_fft=256,
        hop_length=64,
        smoothing_sigma=0.5,
        size=32,
    )
    assert spoken["split"]["test_fraction"] == 0.15
    for bad, where in (
        ({"source": "idx", "path": "x", "colour": "rgb"}, "colour"),
        ({"source": "idx", "path": "x", "split": {"method": "random"}}, "random"),
        ({"source": "idx", "path": "x", "subsample": {"train": 0}}, "minimum"),
    ):
        with pytest.raises(WorkflowError, match=where):
            validate({"models": {}, "datasets": {"d": bad}}, schema)


@pytest.mark.slow
def test_e2e_dataset_file_and_grid(e2e_run, tmp_path):
    """The test config's run wrote its dataset in the contract's form, and its example grid."""
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    spec = config["datasets"]["digits"]
    path = e2e_run / "results" / "data" / "digits"
    assert np.load(path / "images.npy", mmap_mode="r").dtype == np.float32
    assert pd.read_parquet(path / "samples.parquet")["label"].dtype == np.int64
    ds = load_dataset(path)
    assert ds.input_shape == (1, spec["size"], spec["size"]) and ds.n_classes == 10 and len(ds) == 1797
    assert abs((ds.split == "test").mean() - spec["split"]["test_fraction"]) < 0.01
    # Same config, same bytes: rebuilding in-process gives the file the workflow wrote.
    rebuilt = build_dataset("digits", spec, seed=config["seed"])
    np.testing.assert_array_equal(rebuilt.images, ds.images)
    np.testing.assert_array_equal(rebuilt.sample_id, ds.sample_id)
    # And the job function, run in-process on the workflow's dataset file, draws the workflow's grid.
    grid = e2e_run / "results" / "figures" / "data" / "digits_examples.png"
    plot_dataset_examples(
        Job(
            input=Files([str(path)]),
            output=Files([str(tmp_path / "grid.png")]),
            wildcards=Files(dataset="digits"),
        ),
        seed=config["seed"],
    )
    assert grid.read_bytes() == (tmp_path / "grid.png").read_bytes()


# ---------------------------------------------------------------------------------------------
# source: celeba (a folder in CelebA's own layout)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def celeba_folder(tmp_path_factory):
    from latent_atlas.data.synthetic import write_celeba_folder

    return write_celeba_folder(tmp_path_factory.mktemp("celeba"), 24, seed=1)


def test_celeba_folder_reads_attributes_partition_and_images(celeba_folder, tmp_path):
    spec = {"source": "celeba", "path": str(celeba_folder), "attribute": "Smiling", "size": 32}
    ds = build_dataset("faces", spec, seed=0)
    assert ds.input_shape == (3, 32, 32) and ds.class_names == ["not Smiling", "Smiling"]
    attr = np.loadtxt(celeba_folder / "list_attr_celeba.txt", skiprows=2, usecols=range(1, 41), dtype=int)
    smiling = (attr[:, 31] + 1) // 2  # CelebA's column order: Smiling is the 32nd attribute
    np.testing.assert_array_equal(ds.labels, smiling[ds.sample_id])
    part = np.loadtxt(celeba_folder / "list_eval_partition.txt", usecols=1, dtype=int)
    np.testing.assert_array_equal(ds.split == "test", part[ds.sample_id] == 2)
    # one decoded image equals decoding its file by hand (centre 140 crop, bilinear resize)
    with Image.open(celeba_folder / "img_align_celeba" / f"{ds.sample_id[3] + 1:06d}.jpg") as img:
        by_hand = np.asarray(img.convert("RGB").crop((19, 39, 159, 179)).resize((32, 32), Image.Resampling.BILINEAR,
                                                                             reducing_gap=None))
    np.testing.assert_array_equal(np.rint(ds.images[3] * 255).astype(np.uint8), by_hand.transpose(2, 0, 1))
    # 1 and 3 decoding processes write the same bytes
    write_store("faces", spec, 0, tmp_path / "one")
    write_store("faces", spec, 0, tmp_path / "three", workers=3)
    for name in ("images.npy", "samples.parquet"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "three" / name).read_bytes()


def test_celeba_folder_errors_name_the_file(celeba_folder, tmp_path):
    import shutil

    bad = tmp_path / "celeba"
    shutil.copytree(celeba_folder, bad)
    spec = {"source": "celeba", "path": str(bad), "size": 16}
    first = bad / "img_align_celeba" / "000001.jpg"
    first.write_bytes(first.read_bytes()[:300])  # a truncated JPEG
    with pytest.raises(DataError, match=r"cannot read image .*000001.jpg"):
        build_dataset("faces", spec, seed=0)
    with pytest.raises(DataError, match=r"cannot read image .*000001.jpg"):  # from a worker process too
        write_store("faces", spec, 0, tmp_path / "out", workers=2)
    first.unlink()
    with pytest.raises(DataError, match=r"list_eval_partition.txt names 1 image\(s\) missing from .*img_align_celeba, "
                                        r"e.g. 000001.jpg"):
        build_dataset("faces", spec, seed=0)
    (bad / "list_attr_celeba.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"CelebA attribute file not found: .*list_attr_celeba.txt"):
        build_dataset("faces", spec, seed=0)
    with pytest.raises(DataError, match=r"datasets.faces.attribute: unknown CelebA attribute 'Hat'"):
        build_dataset("faces", {**spec, "path": str(celeba_folder), "attribute": "Hat"}, seed=0)
    (bad / "list_attr_celeba.txt").write_text("2\nSmiling Male\n000002.jpg 1 -1\n000003.jpg 1\n")
    with pytest.raises(DataError, match=r"list_attr_celeba.txt, line 4: 1 values for 2 attributes"):
        build_dataset("faces", spec, seed=0)
    (bad / "list_eval_partition.txt").unlink()
    (bad / "list_attr_celeba.txt").write_text("1\nSmiling Male\n000002.jpg 1 -1\n")
    with pytest.raises(FileNotFoundError, match=r"CelebA partition file not found: .*list_eval_partition.txt"):
        build_dataset("faces", spec, seed=0)
    assert not (tmp_path / "out" / "images.npy").exists()  # a failed write leaves no store behind


def test_spectrogram_axes_put_a_tone_at_its_frequency_and_time(tmp_path):
    """With a fixed duration, the dataset's axes name each row's Hz and each column's s: a
    1,500 Hz tone from 0.25 to 0.5 s lights the rows near 1,500 Hz and the columns in that span;
    low frequencies are at the bottom. The axes survive the dataset file; plain images have none."""
    rate = 8000
    x = np.zeros(rate)  # 1 s, the tone from 0.25 s to 0.5 s
    x[rate // 4 : rate // 2] = tone(1500, rate, 0.25)
    for digit in range(2):
        write_wav(tmp_path / "wav" / f"{digit}_amy_0.wav", x, rate)
        write_wav(tmp_path / "wav" / f"{digit}_ben_0.wav", x, rate)
    spec = {"source": "audio_digits", "path": str(tmp_path / "wav"), "duration": 1.0, "smoothing_sigma": 0,
            "split": {"method": "speaker", "test_speakers": ["ben"]}}
    ds = build_dataset("spoken", spec, seed=0)
    axes = ds.axes
    assert (axes.row_label, axes.col_label) == ("frequency (Hz)", "time (s)")
    assert np.all(np.diff(axes.rows) < 0) and axes.rows[-1] < 300 and axes.rows[0] > 3500  # low at the bottom
    assert axes.settings["hop_length"] == 64 and axes.settings["frames"] == 122
    img = ds.images[0, 0]
    row = int(np.argmax(img.mean(axis=1)))
    assert abs(axes.rows[row] - 1500) < 120
    loud = axes.cols[img[row] > 0.5]
    assert 0.2 < loud.min() and loud.max() < 0.56
    save_dataset(ds, tmp_path / "spoken")
    back = load_dataset(tmp_path / "spoken").axes
    assert load_image_axes(tmp_path / "spoken" / "samples.parquet").cols.tolist() == axes.cols.tolist()
    assert np.array_equal(back.rows, axes.rows) and back.settings == axes.settings
    stretched = build_dataset("spoken", {**spec, "duration": None}, seed=0).axes
    assert stretched.col_label == "time (share of the recording)" and stretched.cols.max() < 1
    save_dataset(build_dataset("d", {"source": "sklearn_digits"}, seed=0), tmp_path / "digits")
    assert load_dataset(tmp_path / "digits").axes is None
    assert "axes" not in read_parquet_metadata(tmp_path / "digits" / "samples.parquet")


def test_spectrogram_figures_label_frequency_and_time():
    """The examples grid and the helper put round Hz / s ticks where those values lie."""
    from latent_atlas.data.store import ImageAxes
    from latent_atlas.plotting import label_image_axes

    import matplotlib.pyplot as plt

    axes = ImageAxes(np.linspace(3750, 250, 8), np.linspace(0.05, 0.95, 8), "frequency (Hz)", "time (s)")
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((8, 8)))
    label_image_axes(ax, axes)
    ticks = dict(zip([t.get_text() for t in ax.get_yticklabels()], ax.get_yticks()))
    assert ticks["2000"] == pytest.approx(3.5) and ticks["1000"] == pytest.approx(5.5)
    assert ax.get_ylabel() == "frequency (Hz)" and ax.get_xlabel() == "time (s)"
    plt.close(fig)
    ds = Dataset(np.zeros((2, 1, 8, 8), np.float32), [0, 1], ["0", "1"], ["train", "test"], [0, 1], "s", axes)
    fig = plot_examples(ds, per_class=1)
    labels = {a.get_xlabel() for a in fig.axes} | {a.get_ylabel() for a in fig.axes}
    assert {"frequency (Hz)", "time (s)"} <= labels
