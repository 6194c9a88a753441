"""The dataset store for tables (N, F) and sensor series (N, C, L): stored in their own shape,
seen by every stage as (N, 1, 1, F) and (N, 1, C, L) images of standardised values, with their
names, rate and standardisation in the samples table's metadata; Scaling fitted on train only."""

from __future__ import annotations

import numpy as np
import pytest

from latent_atlas.data.build import Scaling, fit_scaling
from latent_atlas.data.store import (IMAGES_FILE, DataError, ImageAxes, load_dataset, load_kind, save_dataset,
                                     write_dataset)
from latent_atlas.io import read_parquet, read_parquet_metadata


def _series(n=10, c=3, length=8, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, c, length)) * 5 + 100).astype(np.float32)


def test_a_series_store_keeps_its_shape_and_reads_as_channel_by_time_images(tmp_path):
    x = _series()
    axes = ImageAxes(np.arange(3), np.arange(8) / 64, "channel", "time (s)", {"sample_rate": 64.0},
                     row_names=["ankle", "leg", "trunk"])
    write_dataset(tmp_path, np.arange(10), ["train"] * 7 + ["test"] * 3, np.zeros(10), ["all"], "s",
                  [x[:4], x[4:]], axes, "series", {"names": ["ankle", "leg", "trunk"], "sample_rate": 64.0},
                  {"recording": np.array(["r1"] * 10), "start_s": np.arange(10) / 8})
    assert np.load(tmp_path / IMAGES_FILE).shape == (10, 3, 8)
    ds = load_dataset(tmp_path)
    assert ds.kind == "series" and load_kind(tmp_path) == "series"
    assert ds.images.shape == (10, 1, 3, 8) and ds.input_shape == (1, 3, 8)
    np.testing.assert_array_equal(ds.images[[2, 5]], x[[2, 5]][:, None])
    assert ds.axes.row_names == ["ankle", "leg", "trunk"] and ds.axes.col_label == "time (s)"
    assert read_parquet_metadata(tmp_path / "samples.parquet")["sample_rate"] == 64.0
    samples = read_parquet(tmp_path / "samples.parquet")
    assert list(samples.columns) == ["sample_id", "split", "label", "recording", "start_s"]
    assert "windows of 3 channels x 8 steps" in ds.summary()


def test_a_table_store_round_trips_through_save_dataset(tmp_path):
    rows = np.random.default_rng(1).normal(size=(6, 1, 1, 5)).astype(np.float32) * 10
    from latent_atlas.data.store import Dataset

    ds = Dataset(rows, np.zeros(6), ["all"], ["train"] * 4 + ["test"] * 2, np.arange(6), "t",
                 ImageAxes([0.0], np.arange(5), "", "feature", col_names=list("abcde")), "table")
    save_dataset(ds, tmp_path)
    assert np.load(tmp_path / IMAGES_FILE).shape == (6, 5)
    back = load_dataset(tmp_path)
    assert back.kind == "table" and back.axes.col_names == list("abcde")
    np.testing.assert_array_equal(np.asarray(back.images), rows)


def test_store_errors_name_the_problem(tmp_path):
    x = _series()
    x[3, 1, 2] = np.nan
    with pytest.raises(DataError, match="values must be finite"):
        write_dataset(tmp_path / "a", np.arange(10), ["train"] * 10, np.zeros(10), ["all"], "s", [x], kind="series")
    with pytest.raises(DataError, match="expected 3"):
        write_dataset(tmp_path / "b", np.arange(10), ["train"] * 10, np.zeros(10), ["all"], "s",
                      [x.reshape(10, 1, 3, 8)], kind="series")
    good = _series()
    write_dataset(tmp_path / "c", np.arange(10), ["train"] * 10, np.zeros(10), ["all"], "s", [good], kind="series")
    # an images.npy of another kind than the samples table says
    np.save(tmp_path / "c" / IMAGES_FILE, good.reshape(10, 24))
    with pytest.raises(DataError, match="kind 'series'"):
        load_dataset(tmp_path / "c")
    # images keep the [0, 1] contract
    with pytest.raises(DataError, match=r"must lie in \[0, 1\]"):
        write_dataset(tmp_path / "d", np.arange(10), ["train"] * 10, np.zeros(10), ["all"], "s",
                      [good.reshape(10, 1, 3, 8)])


def test_scaling_is_fitted_on_the_train_values_only():
    """Train and test differ in location and spread: the scaling takes the train statistics, so
    train becomes mean 0, std 1 per channel and test keeps its offset in train units."""
    rng = np.random.default_rng(2)
    train = rng.normal(10, 2, size=(400, 2, 16))
    train[:, 1] = train[:, 1] * 100 + 1e6  # far from zero: the two-pass std stays exact
    test = rng.normal(20, 8, size=(100, 2, 16))
    chunks = lambda: (train[s:s + 64] for s in range(0, 400, 64))  # noqa: E731
    scaling = fit_scaling(chunks, ["a", "b"], standardize=True)
    z = scaling.apply(train)
    np.testing.assert_allclose(z.mean(axis=(0, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=(0, 2)), 1, atol=1e-4)
    np.testing.assert_allclose(scaling.center, train.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(scaling.scale, train.std(axis=(0, 2)), rtol=1e-9)
    np.testing.assert_allclose(scaling.apply(test)[:, 0].mean(), (test[:, 0].mean() - 10) / train[:, 0].std(),
                               rtol=1e-2)


def test_imputation_fills_with_train_statistics_and_constant_features_keep_scale_one():
    train = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, 2.0], [np.nan, 5.0, 4.0], [8.0, 5.0, 9.0]])
    chunks = lambda: iter([train[:2], train[2:]])  # noqa: E731
    mean = fit_scaling(chunks, ["a", "b", "c"], standardize=True, impute="mean")
    np.testing.assert_allclose(mean.fill, [4.0, 5.0, 5.0])
    np.testing.assert_array_equal(mean.scale[1], 1.0)
    median = fit_scaling(chunks, ["a", "b", "c"], standardize=False, impute="median")
    np.testing.assert_allclose(median.fill, [3.0, 5.0, 4.0])
    np.testing.assert_array_equal(median.apply(np.array([[np.nan, 1.0, np.nan]])), [[3.0, 1.0, 4.0]])
    with pytest.raises(DataError, match="column\\(s\\) c have no value in the train split"):
        fit_scaling(lambda: iter([train[:1]]), ["a", "b", "c"], standardize=True, where="datasets.t")
    assert isinstance(mean, Scaling) and mean.to_metadata()["fitted_on"] == "train"


def test_spoken_digits_as_waveforms_by_speaker(tmp_path):
    """representation waveform: each recording padded or cut to `duration` at `sample_rate`, a
    1-channel series standardised on the train split; label speaker keeps the digit as an attribute."""
    from scipy.io import wavfile

    from latent_atlas.data.build import build_dataset, plan_dataset

    rate = 8000
    rng = np.random.default_rng(0)
    lengths = {}
    for digit in range(2):
        for speaker in ("ann", "bob"):
            for take in range(3):
                n = int(rng.integers(2000, 6000))
                x = (0.3 * np.sin(np.arange(n) * (0.05 + 0.02 * digit))).astype(np.float64)
                wavfile.write(tmp_path / f"{digit}_{speaker}_{take}.wav", rate, (x * 32767).astype(np.int16))
                lengths[digit, speaker, take] = n
    spec = {"source": "audio_digits", "path": str(tmp_path), "duration": 0.5, "representation": "waveform",
            "label": "speaker", "split": {"method": "fraction", "test_fraction": 0.34}}
    ds = build_dataset("w", spec, seed=0)
    assert ds.kind == "series" and ds.images.shape == (12, 1, 1, 4000) and ds.class_names == ["ann", "bob"]
    train = np.asarray(ds.images[ds.split == "train"])
    assert abs(train.mean()) < 1e-6 and abs(train.std() - 1) < 1e-5
    plan = plan_dataset("w", spec, seed=0)
    assert plan.source.attribute_levels == {"digit": ["0", "1"]}
    # padding: a recording shorter than 0.5 s ends in zeros (raw), i.e. in -center/scale once standardised
    files = sorted(tmp_path.glob("*.wav"), key=lambda p: p.name)
    short = min(range(12), key=lambda i: lengths[tuple(int(v) if v.isdigit() else v
                                                        for v in files[i].stem.split("_"))])
    raw = plan.source.load(np.array([short]))
    assert raw.shape == (1, 1, 4000) and np.all(raw[0, 0, 3999:] == 0)
    assert abs(np.abs(raw).max() - 1) < 1e-6  # scaled to a peak of 1 (written at 0.3)
    with pytest.raises(DataError, match="datasets.w.duration: representation waveform needs a duration"):
        build_dataset("w", {**spec, "duration": None}, seed=0)
    # resampled; the spectrogram's band (default 100..3800 Hz, above 4 kHz's Nyquist) does not apply
    assert build_dataset("w", {**spec, "sample_rate": 4000}, seed=0).images.shape == (12, 1, 1, 2000)
    from latent_atlas.config import ConfigError, _check_dataset

    _check_dataset("datasets.w", {**spec, "sample_rate": 4000, "band": [100, 3800], "db_range": [-30, 0]})
    with pytest.raises(ConfigError, match="datasets.w.duration: representation waveform needs a duration"):
        _check_dataset("datasets.w", {**spec, "duration": None})


def test_series_and_table_thumbnails_are_heatmaps_of_standardised_values():
    """The atlas's thumbnails of a series window: time averaged in at most 64 bins, channels
    repeated to at least 16 rows, -3..3 standard deviations mapped to 0..1."""
    from latent_atlas.atlas.sprites import standardised_thumbnails

    x = np.zeros((2, 1, 3, 128), np.float32)
    x[0, 0, 1, :2] = 3.0      # one bin of two steps at +3: white
    x[0, 0, 2, 2:4] = [-1.5, -4.5]  # mean -3: black
    y = standardised_thumbnails(x)
    assert y.shape == (2, 1, 18, 64)
    np.testing.assert_allclose(y[0, 0, 6:12, 0], 1.0)
    np.testing.assert_allclose(y[0, 0, 12:18, 1], 0.0)
    np.testing.assert_allclose(y[1], 0.5)
    table = standardised_thumbnails(np.full((1, 1, 1, 5), 6.0, np.float32))
    assert table.shape == (1, 1, 16, 5) and table.max() == 1.0
