"""The table and series sources (latent_atlas.data.tabular): values, labels, splits and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from latent_atlas.data.sources import SOURCES
from latent_atlas.data.store import DataError
from latent_atlas.data.tabular import read_series_source, read_table_source

from conftest import SHARED

DAPHNET = SHARED / "data" / "daphnet" / "S06R02E0.csv"


def table(path: Path, **options):
    return read_table_source({"source": "table", "path": str(path), "table": options}, "datasets.t")


def series(path: Path, **options):
    return read_series_source({"source": "series", "path": str(path), "series": options}, "datasets.s")


# ---------------------------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "a": [1.5, -2.0, 3.25, 0.0],
        "b": [10, 20, 30, 40],
        "flag": [True, False, True, True],
        "kind": ["cat", "dog", "cat", "bird"],
        "part": ["train", "test", "train", "train"],
    })


def test_sources_registers_table_and_series():
    assert SOURCES["table"] is read_table_source and SOURCES["series"] is read_series_source


def test_table_csv_and_parquet_give_the_same_values(tmp_path, frame):
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "t.parquet")
    expected = np.array([[1.5, 10, 1], [-2.0, 20, 0], [3.25, 30, 1], [0.0, 40, 1]], np.float32)
    for name in ("t.csv", "t.tsv", "t.parquet"):
        src = table(tmp_path / name, features=["a", "b", "flag"], label_column="kind", split_column="part")
        assert src.kind == "table" and src.names == ["a", "b", "flag"]
        out = src.load(np.array([3, 0, 2, 1]))
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, expected[[3, 0, 2, 1]])
        assert src.class_names == ["bird", "cat", "dog"]
        np.testing.assert_array_equal(src.labels, [1, 2, 1, 0])
        assert list(src.split) == ["train", "test", "train", "train"]


def test_table_default_features_are_every_column_but_label_and_split(tmp_path, frame):
    frame.drop(columns="kind").to_parquet(tmp_path / "t.parquet")
    src = table(tmp_path / "t.parquet", split_column="part")
    assert src.names == ["a", "b", "flag"]
    assert src.class_names == ["all"] and (src.labels == 0).all()


def test_table_without_split_column_has_no_split(tmp_path, frame):
    frame[["a", "b"]].to_csv(tmp_path / "t.csv", index=False)
    assert table(tmp_path / "t.csv").split is None


def test_table_integer_labels_sort_as_numbers(tmp_path):
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [10, 2, 2]}).to_csv(tmp_path / "t.csv", index=False)
    src = table(tmp_path / "t.csv", label_column="y")
    assert src.class_names == ["2", "10"]
    np.testing.assert_array_equal(src.labels, [1, 0, 0])


def test_table_reads_a_decimal_below_the_first_block_of_integers(tmp_path):
    """pyarrow's CSV stream infers types from the first 1 MB; a later decimal must still be read."""
    n = 800_000  # 2 bytes a row: the decimal lies in the second megabyte
    (tmp_path / "t.csv").write_text("x\n" + "".join(f"{i % 7}\n" for i in range(n - 1)) + "0.5\n")
    out = table(tmp_path / "t.csv").load(np.array([0, 6, n - 1]))
    np.testing.assert_array_equal(out[:, 0], [0, 6, 0.5])


def test_table_text_column_is_an_error(tmp_path, frame):
    frame.assign(colour=["red", "green", "red", "blue"]).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"datasets\.t\.table: column 'colour' of .*t\.csv is not numeric.*'red'"):
        table(tmp_path / "t.csv", features=["a", "colour"])


def test_table_missing_values_are_an_error_unless_imputed(tmp_path):
    pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [1.0, 2.0, np.nan, np.nan]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"datasets\.t\.table: column 'b' of .*t\.csv has 2 missing value\(s\), "
                                        r"the first in row 2.*impute"):
        table(tmp_path / "t.csv")
    out = table(tmp_path / "t.csv", impute="median").load(np.arange(4))
    np.testing.assert_array_equal(np.isnan(out), [[False, False], [False, False], [False, True], [False, True]])


def test_table_errors_name_the_key_and_the_file(tmp_path, frame):
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(FileNotFoundError, match=r"datasets\.t\.path: .*nope\.csv"):
        table(tmp_path / "nope.csv")
    (tmp_path / "t.xlsx").write_text("")
    with pytest.raises(DataError, match=r"datasets\.t\.path: .*t\.xlsx is not a \.csv"):
        table(tmp_path / "t.xlsx")
    with pytest.raises(DataError, match=r"datasets\.t\.table\.features: .*t\.csv has no column\(s\) 'c'; "
                                        r"columns: a, b, flag, kind, part"):
        table(tmp_path / "t.csv", features=["a", "c"])
    with pytest.raises(DataError, match=r"datasets\.t\.table\.label_column: .*t\.csv has no column 'label'"):
        table(tmp_path / "t.csv", features=["a"], label_column="label")
    with pytest.raises(DataError, match=r"datasets\.t\.table: unknown keys \['impte'\]"):
        table(tmp_path / "t.csv", impte="mean")


def test_table_bad_split_and_missing_labels(tmp_path, frame):
    frame.assign(part=["train", "valid", "test", "train"]).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"datasets\.t\.table\.split_column: column 'part' of .*t\.csv must hold "
                                        r"train or test, not 'valid'"):
        table(tmp_path / "t.csv", features=["a"], split_column="part")
    frame.assign(kind=["cat", None, "dog", "cat"]).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"column 'kind' of .*t\.parquet has 1 missing value\(s\), the first in row 1"):
        table(tmp_path / "t.parquet", features=["a"], label_column="kind")


# ---------------------------------------------------------------------------------------------
# series
# ---------------------------------------------------------------------------------------------

# One recording of 16 steps at 2 Hz (8 s); windows of 4 steps every 2: starts 0, 2, ..., 12.
ANOMALY = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
ACTIVITY = ["walk", "walk", "stand", "stand", "stand", "sit", "sit", "sit",
            "walk", "walk", "walk", "walk", "sit", "sit", "stand", "stand"]


@pytest.fixture
def recording(tmp_path) -> Path:
    steps = np.arange(16)
    frame = pd.DataFrame({"t": steps / 2.0, "a": steps.astype(float), "b": 100.0 + 10 * steps,
                          "anomaly": ANOMALY, "activity": ACTIVITY})
    frame.to_csv(tmp_path / "rec.csv", index=False)
    return tmp_path / "rec.csv"


def test_series_windows_split_and_start(recording):
    src = series(recording, window=4, stride=2, sample_rate=2.0, test_fraction=0.25, channels=["a", "b"])
    assert src.kind == "series" and src.names == ["a", "b"] and src.sample_rate == 2.0
    windows = src.load(np.arange(7))
    assert windows.shape == (7, 2, 4) and windows.dtype == np.float32
    np.testing.assert_array_equal(windows[0], [[0, 1, 2, 3], [100, 110, 120, 130]])
    np.testing.assert_array_equal(windows[1], [[2, 3, 4, 5], [120, 130, 140, 150]])
    np.testing.assert_array_equal(windows[6], [[12, 13, 14, 15], [220, 230, 240, 250]])
    np.testing.assert_array_equal(src.load(np.array([6, 1])), windows[[6, 1]])
    # test = steps from 0.75 x 8 s = 6 s on (steps 12..15); the window of steps 10..13 straddles
    assert list(src.split) == ["train"] * 5 + ["", "test"]
    np.testing.assert_array_equal(src.start, [0, 1, 2, 3, 4, 5, 6])
    assert list(src.groups) == ["rec"] * 7
    assert src.class_names == ["all"] and (src.labels == 0).all()


def test_series_stride_equal_to_window_by_default(recording):
    src = series(recording, window=4, sample_rate=2.0, channels=["a"])
    np.testing.assert_array_equal(src.load(np.arange(4))[:, 0, 0], [0, 4, 8, 12])
    np.testing.assert_array_equal(src.start, [0, 2, 4, 6])


@pytest.mark.parametrize("rule, expected", [
    ("any", [1, 1, 0, 0, 1, 1, 1]),
    ("majority", [0, 0, 0, 0, 0, 1, 0]),  # steps 8..11 are 0, 0, 1, 1: a tie goes to class 0
    ("centre", [0, 0, 0, 0, 1, 1, 0]),
])
def test_series_anomaly_label_rules(recording, rule, expected):
    src = series(recording, window=4, stride=2, sample_rate=2.0, channels=["a", "b"], anomaly_column="anomaly",
                 label_rule=rule)
    assert src.class_names == ["normal", "anomaly"]
    np.testing.assert_array_equal(src.labels, expected)


def test_series_label_column_majority_by_default_and_centre(recording):
    src = series(recording, window=4, stride=2, sample_rate=2.0, channels=["a"], label_column="activity")
    assert src.class_names == ["sit", "stand", "walk"]
    names = [src.class_names[i] for i in src.labels]
    assert names == ["stand", "stand", "sit", "sit", "walk", "sit", "sit"]  # ties: the first class
    src = series(recording, window=4, stride=2, sample_rate=2.0, channels=["a"], label_column="activity",
                 label_rule="centre")
    assert [src.class_names[i] for i in src.labels] == ["stand", "stand", "sit", "walk", "walk", "sit", "stand"]


def test_series_default_channels_and_rate_from_the_time_column(recording):
    src = series(recording, window=4, time_column="t", anomaly_column="anomaly")
    assert src.names == ["a", "b"] and src.sample_rate == pytest.approx(2.0)


def test_series_test_ranges(recording):
    src = series(recording, window=4, stride=2, sample_rate=2.0, channels=["a"], test_ranges=[[1, 3]])
    # test = seconds in [1, 3) = steps 2..5
    assert list(src.split) == ["", "test", "", "train", "train", "train", "train"]


def test_series_no_test_window_shares_a_step_with_a_train_window(tmp_path):
    rng = np.random.default_rng(0)
    for name, length in (("r1", 101), ("r2", 77)):
        pd.DataFrame({"x": rng.normal(size=length)}).to_parquet(tmp_path / f"{name}.parquet")
    src = series(tmp_path, window=10, stride=3, sample_rate=5.0, test_fraction=0.3)
    for group in ("r1", "r2"):
        steps = {part: set() for part in ("train", "test")}
        here = src.groups == group
        for first, part in zip(np.rint(src.start[here] * 5).astype(int), src.split[here]):
            if part:
                steps[part].update(range(first, first + 10))
        assert steps["train"] and steps["test"] and not steps["train"] & steps["test"]
    assert set(src.split) == {"train", "test", ""}


def test_series_ids_do_not_change_with_the_split(recording):
    a = series(recording, window=4, stride=2, sample_rate=2.0, channels=["a"], test_fraction=0.25)
    b = series(recording, window=4, stride=2, sample_rate=2.0, channels=["a"], test_fraction=0.5)
    ids = np.arange(len(a.labels))
    np.testing.assert_array_equal(a.load(ids), b.load(ids))
    np.testing.assert_array_equal(a.start, b.start)
    assert list(a.split) != list(b.split)


def test_series_folder_of_recordings_never_windows_across_files(tmp_path):
    pd.DataFrame({"x": np.arange(10.0), "y": -np.arange(10.0)}).to_csv(tmp_path / "a.csv", index=False)
    np.save(tmp_path / "b.npy", np.stack([100 + np.arange(9.0), -100 - np.arange(9.0)], axis=1))
    (tmp_path / "notes.txt").write_text("not a recording")
    src = series(tmp_path, window=4, sample_rate=1.0, channels=["x", "y"])
    assert list(src.groups) == ["a", "a", "b", "b"]
    np.testing.assert_array_equal(src.start, [0, 4, 0, 4])
    np.testing.assert_array_equal(src.load(np.array([3, 0])),
                                  [[[104, 105, 106, 107], [-104, -105, -106, -107]],
                                   [[0, 1, 2, 3], [0, -1, -2, -3]]])


def test_series_npy_channel_names(tmp_path):
    np.save(tmp_path / "r.npy", np.zeros((8, 3), np.int16))
    assert series(tmp_path / "r.npy", window=4, sample_rate=1.0).names == ["ch0", "ch1", "ch2"]
    with pytest.raises(DataError, match=r"datasets\.s\.series\.channels: 2 names for the 3 columns of .*r\.npy"):
        series(tmp_path / "r.npy", window=4, sample_rate=1.0, channels=["x", "y"])
    with pytest.raises(DataError, match=r"datasets\.s\.series\.time_column: .*r\.npy is an \.npy array"):
        series(tmp_path / "r.npy", window=4, time_column="t")


def test_series_errors_name_the_file_and_the_column(tmp_path, recording):
    with pytest.raises(DataError, match=r"datasets\.s\.series\.window: .*rec\.csv has 16 time steps, fewer than "
                                        r"one window \(20\)"):
        series(recording, window=20, sample_rate=2.0)
    with pytest.raises(DataError, match=r"datasets\.s\.series: column 'activity' of .*rec\.csv is not numeric.*'walk'"):
        series(recording, window=4, sample_rate=2.0, channels=["a", "activity"])
    with pytest.raises(DataError, match=r"datasets\.s\.series\.sample_rate: required without a time_column"):
        series(recording, window=4)
    with pytest.raises(DataError, match=r"datasets\.s\.series\.label_rule: 'any' is for anomaly_column"):
        series(recording, window=4, sample_rate=2.0, label_column="activity", label_rule="any")
    bad = pd.read_csv(recording).assign(anomaly=[0, 1, 2] + [0] * 13, b=[1.0] * 5 + [np.nan] * 11)
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"datasets\.s\.series: column 'b' of .*bad\.csv has 11 missing value\(s\), "
                                        r"the first in row 5"):
        series(tmp_path / "bad.csv", window=4, sample_rate=2.0, channels=["a", "b"])
    with pytest.raises(DataError, match=r"datasets\.s\.series\.anomaly_column: column 'anomaly' of .*bad\.csv must "
                                        r"hold 0 or 1, also holds 2"):
        series(tmp_path / "bad.csv", window=4, sample_rate=2.0, channels=["a"], anomaly_column="anomaly")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"datasets\.s\.path: .*empty holds no \.csv"):
        series(empty, window=4, sample_rate=2.0)


def test_series_irregular_times_are_an_error(tmp_path):
    t = np.arange(20) / 4.0
    t[10:] += 0.25  # one missing step
    pd.DataFrame({"t": t, "x": np.zeros(20)}).to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(DataError, match=r"datasets\.s\.series\.sample_rate: the times of .*gap\.csv are not regular: "
                                        r"rows 9 to 10"):
        series(tmp_path / "gap.csv", window=4, time_column="t")


def test_series_times_rounded_to_milliseconds(tmp_path):
    """64 Hz written in whole milliseconds steps by 15 or 16 ms; the rate is still 64 Hz."""
    ms = np.round(np.arange(200) * 1000 / 64)
    times = pd.Timestamp("2024-01-01 10:00:00") + pd.to_timedelta(ms, unit="ms")
    pd.DataFrame({"time": times.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3], "x": np.zeros(200)}).to_csv(
        tmp_path / "r.csv", index=False)
    assert series(tmp_path / "r.csv", window=8, time_column="time").sample_rate == pytest.approx(64, rel=1e-3)


@pytest.mark.skipif(not DAPHNET.is_file(), reason="Daphnet excerpt not in shared/data")
def test_series_reads_daphnet():
    src = series(DAPHNET, window=128, stride=64, time_column="timestamp", anomaly_column="is_anomaly")
    assert src.names == ["ankle_horiz_fwd", "ankle_vert", "ankle_horiz_lateral", "leg_horiz_fwd", "leg_vert",
                         "leg_horiz_lateral", "trunk_horiz_fwd", "trunk_vert", "trunk_horiz_lateral"]
    assert src.sample_rate == pytest.approx(64, rel=0.005)
    assert (src.labels == 0).all() and src.class_names == ["normal", "anomaly"]
    assert len(src.labels) == (7040 - 128) // 64 + 1
    first = pd.read_csv(DAPHNET, nrows=128)
    np.testing.assert_array_equal(src.load(np.array([0]))[0], first[src.names].to_numpy(np.float32).T)


# ---------------------------------------------------------------------------------------------
# streaming: the numbers go through a temporary file, block by block
# ---------------------------------------------------------------------------------------------


def test_row_file_reads_rows_in_any_order_and_spans():
    from latent_atlas.data.tabular import RowFile

    values = np.random.default_rng(0).normal(size=(1000, 3)).astype(np.float32)
    rows = RowFile(3)
    for start in range(0, 1000, 170):  # uneven blocks
        rows.append(values[start:start + 170])
    assert rows.rows == 1000
    index = np.array([999, 0, 1, 2, 500, 499, 3])
    np.testing.assert_array_equal(rows.read(index), values[index])
    np.testing.assert_array_equal(rows.span(168, 345), values[168:345])
    assert rows.read(np.array([], np.int64)).shape == (0, 3)


@pytest.mark.parametrize("block_rows, group_rows", [(7, 40), (64, 15), (3, 15)])
def test_missing_values_counted_across_blocks(tmp_path, monkeypatch, block_rows, group_rows):
    """The count and first row of a column's NaNs are those of the whole file when the NaNs lie in
    several blocks: row groups read in batches (7-row blocks of a 40-row group; 3-row blocks of
    15-row groups) or a column at a time (15-row groups)."""
    import latent_atlas.data.tabular as tabular

    monkeypatch.setattr(tabular, "PARQUET_BLOCK_ROWS", block_rows)
    a = np.arange(40, dtype=float)
    b = np.arange(40, dtype=float)
    b[[9, 23, 38]] = np.nan
    pd.DataFrame({"a": a, "b": b}).to_parquet(tmp_path / "t.parquet", row_group_size=group_rows)
    with pytest.raises(DataError, match=r"column 'b' of .*t\.parquet has 3 missing value\(s\), the first in row 9"):
        table(tmp_path / "t.parquet")
    source = table(tmp_path / "t.parquet", impute="mean")
    got = source.load(np.arange(40))
    np.testing.assert_array_equal(got[:, 0], a)
    np.testing.assert_array_equal(np.isnan(got[:, 1]), np.isnan(b))


def test_series_windows_read_far_apart_and_close_together(tmp_path, monkeypatch):
    """Windows read in one span (close ids) and one read each (ids far apart) both equal the
    recording's slices; a recording read in blocks of 64 steps."""
    import latent_atlas.data.tabular as tabular

    monkeypatch.setattr(tabular, "PARQUET_BLOCK_ROWS", 64)
    x = np.random.default_rng(1).normal(size=(3000, 2)).astype(np.float32)
    np.save(tmp_path / "r.npy", x)
    source = series(tmp_path / "r.npy", window=50, stride=20, sample_rate=10)
    n = len(source.labels)
    for index in (np.arange(10, 20), np.array([n - 1, 0, n // 2]), np.array([3, 3, 140])):
        expected = np.stack([x[20 * i:20 * i + 50].T for i in index])
        np.testing.assert_array_equal(source.load(index), expected)


def test_series_npy_missing_values_and_fortran_order(tmp_path):
    x = np.random.default_rng(2).normal(size=(300, 3))
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    source = series(tmp_path / "f.npy", window=100, sample_rate=1)
    np.testing.assert_array_equal(source.load(np.array([1])), x[None, 100:200].transpose(0, 2, 1).astype(np.float32))
    x[[150, 210], 2] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(DataError, match=r"datasets\.s\.series: column 'ch2' of .*nan\.npy has 2 missing value\(s\), the first in row 150"):
        series(tmp_path / "nan.npy", window=100, sample_rate=1)


def test_time_checks_and_split_in_blocks_equal_whole_arrays(monkeypatch):
    """The rate, the irregular-step error and the held-out steps do not depend on the block size."""
    import latent_atlas.data.tabular as tabular

    seconds = np.round(np.arange(1000) / 64.0, 3)  # Daphnet-like: whole milliseconds at 64 Hz
    whole = tabular.infer_sample_rate(seconds, Path("r.csv"), "w")
    expected = {fraction: np.arange(1000) / 64.0 >= (1 - fraction) * (1000 / 64.0) for fraction in (0.2, 0.37)}
    ranges = np.zeros(1000, bool)
    ranges[(np.arange(1000) / 64.0 >= 2.0) & (np.arange(1000) / 64.0 < 3.5)] = True
    for block in (7, 64, 1 << 20):
        monkeypatch.setattr(tabular, "TIME_BLOCK", block)
        assert tabular.infer_sample_rate(seconds, Path("r.csv"), "w") == whole == pytest.approx(64.0, rel=1e-4)
        for fraction, test in expected.items():
            np.testing.assert_array_equal(tabular.held_out_steps(1000, 64.0, fraction, None), test)
        np.testing.assert_array_equal(tabular.held_out_steps(1000, 64.0, 0.2, [[2.0, 3.5]]), ranges)
        bad = seconds.copy()
        bad[500:] += 0.5
        bad[800:] += 0.5
        with pytest.raises(DataError, match=r"rows 499 to 500 \(from 0\) are 0\.51[56] s apart.*\(2 step\(s\) off"):
            tabular.infer_sample_rate(bad, Path("r.csv"), "w")
