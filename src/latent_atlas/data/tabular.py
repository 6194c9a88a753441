"""Sources of numbers rather than images: `table` (one row per sample, numeric feature columns)
and `series` (recordings of time steps by channels, cut into windows of `window` steps).

Both return raw values: the build step (`build.py`) fills missing table values and standardises
features or channels with statistics of the train split. CSV and TSV files are read in blocks by
pyarrow's streaming reader (its whole-file reader peaked at 1.3 GB on a 460 MB CSV of 1,000,000 x
50 numbers); the stream takes its column types from the file's first block, so the columns read as
numbers are read as float64 (a column of integers may hold a decimal further down) and label
columns as text. Parquet and .npy files are read in blocks of rows too. A file's numbers go, as
float32, block by block into a temporary file (`RowFile`) that the store's writer reads back in
its own chunks, so memory does not grow with the number of rows or time steps (only the label,
split and time columns are held whole).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from latent_atlas.data.store import DataError, read_rows
from latent_atlas.schema import with_defaults

if TYPE_CHECKING:  # sources.py imports this module to register its readers
    from latent_atlas.data.sources import Source

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None}
SERIES_SUFFIXES = {**TABLE_SUFFIXES, ".npy": None}
ANOMALY_CLASSES = ["normal", "anomaly"]


# --------------------------------------------------------------------------------------------
# Reading columns of a CSV, TSV or Parquet file
# --------------------------------------------------------------------------------------------


def _is_numeric(dtype: pa.DataType) -> bool:
    """Types read as feature or channel values (an empty CSV column is of type null)."""
    return (pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype)
            or pa.types.is_decimal(dtype) or pa.types.is_null(dtype))


def _csv_options(path: Path, **convert):
    import pyarrow.csv as pacsv

    return dict(parse_options=pacsv.ParseOptions(delimiter=TABLE_SUFFIXES[path.suffix.lower()]),
                convert_options=pacsv.ConvertOptions(**convert))


def read_schema(path: Path, where: str) -> pa.Schema:
    """Column names and types of a CSV/TSV file (types inferred from its first block) or a Parquet file."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".parquet":
            return pq.read_schema(path)
        with pacsv.open_csv(path, **_csv_options(path)) as reader:
            return reader.schema
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{where}: cannot read {path}: {err}") from None


def _csv_batches(path: Path, schema: pa.Schema, columns: list[str], text: list[str]) -> Iterator[pa.RecordBatch]:
    """Record batches of `columns` of a CSV file: the numeric ones (by `schema`) as float64 and
    `text` as strings, whatever later blocks hold."""
    import pyarrow.csv as pacsv

    types = {c: pa.string() for c in text}
    for c in columns:
        dtype = schema.field(c).type
        if c not in text and _is_numeric(dtype) and not pa.types.is_boolean(dtype):
            types[c] = pa.float64()
    with pacsv.open_csv(path, **_csv_options(path, include_columns=columns, column_types=types)) as reader:
        yield from reader


def _float32(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return pc.cast(values, pa.float32()).to_numpy(zero_copy_only=False)


class RowFile:
    """float32 rows of `width` values, written block by block to a temporary file and read back
    with positional reads, so a source's numbers are never all in memory (a memory map would count
    every page read towards the job's RSS).

    The file is made in the temporary folder (TMPDIR, else /tmp) and unlinked at once: it
    takes disk space only while the reading process runs, and a killed job leaves nothing behind.
    Forked workers read it through the inherited descriptor.
    """

    def __init__(self, width: int):
        import tempfile

        fd, name = tempfile.mkstemp(prefix="latent-atlas-", suffix=".f32")
        os.unlink(name)
        self.fd, self.pid, self.width, self.rows = fd, os.getpid(), int(width), 0
        self.row_bytes = 4 * self.width

    def append(self, block: np.ndarray) -> None:
        """Write (k, width) values after the rows written so far."""
        view = memoryview(np.ascontiguousarray(block, np.float32).reshape(-1).view(np.uint8))
        pos = self.rows * self.row_bytes
        while len(view):
            got = os.pwrite(self.fd, view, pos)
            view, pos = view[got:], pos + got
        self.rows += len(block)

    def read(self, rows: np.ndarray) -> np.ndarray:
        """float32 (len(rows), width): the rows `rows` (int, any order)."""
        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), self.width), np.float32)
        if len(rows):
            read_rows(self.fd, 0, self.row_bytes, rows, out, "a temporary copy of the source")
        return out

    def span(self, start: int, stop: int) -> np.ndarray:
        """float32 (stop - start, width): rows start..stop-1."""
        return self.read(np.arange(start, stop))

    def __del__(self):
        if self.pid == os.getpid():
            os.close(self.fd)


class MissingCount:
    """NaNs per column of blocks seen in order: the count and the first row (from 0) of each."""

    def __init__(self, names: list[str]):
        self.names, self.rows = list(names), 0
        self.count = np.zeros(len(names), np.int64)
        self.first = np.full(len(names), -1, np.int64)

    def add(self, block: np.ndarray) -> None:
        """(k, len(names)) values of the next k rows."""
        missing = np.isnan(block)
        count = missing.sum(0)
        new = (count > 0) & (self.first < 0)
        self.first[new] = self.rows + np.argmax(missing[:, new], axis=0)
        self.count += count
        self.rows += len(block)

    def check(self, path: Path, where: str, hint: str) -> None:
        """A DataError naming the first column that holds NaN, with its count and first row."""
        for j in np.flatnonzero(self.count):
            raise DataError(f"{where}: column {self.names[j]!r} of {path} has {int(self.count[j])} missing "
                            f"value(s), the first in row {int(self.first[j])} (from 0){hint}")


# Rows per block read from a Parquet file.
PARQUET_BLOCK_ROWS = 65_536


def read_columns(path: Path, where: str, schema: pa.Schema, numeric: list[str], other: list[str],
                 text: list[str]) -> tuple[RowFile, MissingCount, dict[str, pa.ChunkedArray]]:
    """The `numeric` columns of a file as float32 rows of a `RowFile`, block by block, their
    missing values counted, and the `other` columns as they are.

    A Parquet file is read in blocks of PARQUET_BLOCK_ROWS rows, a CSV file in the streaming
    reader's blocks: peak memory is a block, whatever the file's length.

    Parameters
    ----------
    path : Path of a .csv, .tsv or .parquet file, whose `schema` is `read_schema`'s.
    where : str
        Config key for messages (`datasets.<name>.table`).
    numeric : list of str (at least one)
        Columns whose values are numbers or booleans (else a DataError naming the file and the
        column, with its first value); missing values become NaN.
    other : list of str
        Further columns, returned as pyarrow arrays; those in `text` read as strings from a CSV.

    Returns (rows, missing, others): rows (n_rows, len(numeric)) in the file's order.
    """
    import pyarrow.parquet as pq

    for name in numeric:
        dtype = schema.field(name).type
        if not _is_numeric(dtype):
            first = _first_value(path, schema, name)
            raise DataError(f"{where}: column {name!r} of {path} is not numeric ({dtype}, first value {first!r})")
    rows, missing = RowFile(len(numeric)), MissingCount(numeric)
    chunks = {name: [] for name in other}
    columns = list(dict.fromkeys(numeric + other))
    try:
        if path.suffix.lower() == ".parquet":
            blocks = _parquet_blocks(path, numeric, other)
        else:
            blocks = ((batch.column, batch.num_rows) for batch in _csv_batches(path, schema, columns, text))
        for column, n in blocks:
            block = np.empty((n, len(numeric)), np.float32)
            for j, name in enumerate(numeric):
                block[:, j] = _float32(column(name))
            missing.add(block)
            rows.append(block)
            for name in other:
                chunks[name].append(column(name))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
        raise DataError(f"{where}: cannot read {path}: {err}") from None
    if rows.rows == 0:
        raise DataError(f"{where}: {path} holds no rows")
    others = {name: pa.chunked_array(arrays) for name, arrays in chunks.items()}
    return rows, missing, others


def _parquet_blocks(path: Path, numeric: list[str], other: list[str]) -> Iterator[tuple[Any, int]]:
    """(column(name) -> array, n_rows) per block of a Parquet file: a row group of at most
    4 x PARQUET_BLOCK_ROWS rows read a column at a time (pyarrow's batch reader holds ~200 MB more
    for a 100,000-row group of 51 columns), a larger one in batches of PARQUET_BLOCK_ROWS rows.
    Without pre-buffering: with it, pyarrow keeps every block read (1 GB for a 500 MB file)."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path, pre_buffer=False)
    columns = list(dict.fromkeys(numeric + other))
    for group in range(parquet.num_row_groups):
        n = parquet.metadata.row_group(group).num_rows
        if n <= 4 * PARQUET_BLOCK_ROWS:
            read = {}

            def column(name, group=group, read=read):
                if name not in read:
                    read[name] = parquet.read_row_group(group, columns=[name], use_threads=False).column(0)
                return read.pop(name) if name not in other else read[name]

            yield column, n
            continue
        for batch in parquet.iter_batches(batch_size=PARQUET_BLOCK_ROWS, row_groups=[group], columns=columns,
                                          use_threads=False):
            yield batch.column, batch.num_rows


def _first_value(path: Path, schema: pa.Schema, name: str):
    """The first value (not missing) of a column, or None."""
    import pyarrow.parquet as pq

    chunks = ([pq.ParquetFile(path).read(columns=[name]).column(0)] if path.suffix.lower() == ".parquet"
              else (batch.column(name) for batch in _csv_batches(path, schema, [name], [name])))
    for chunk in chunks:
        present = chunk.drop_null()
        if len(present):
            return present[0].as_py()
    return None


def _no_nulls(values: pa.ChunkedArray, name: str, path: Path, where: str) -> None:
    if values.null_count:
        first = int(np.argmax(values.is_null().to_numpy(zero_copy_only=False)))
        raise DataError(f"{where}: column {name!r} of {path} has {values.null_count} missing value(s), "
                        f"the first in row {first} (from 0)")


def encode_classes(values: list[np.ndarray]) -> tuple[list[np.ndarray], list[str]]:
    """int64 class codes 0..K-1 of label values (integers, booleans or strings; one array per file)
    and the K class names: the distinct values in sorted order, as strings (numeric order where
    every value is an integer, also when a CSV's label column is read as text)."""
    if all(v.dtype.kind in "biu" for v in values):
        present = np.unique(np.concatenate(values))
        return [np.searchsorted(present, v).astype(np.int64) for v in values], [str(p) for p in present]
    strings = [v.astype(str) for v in values]
    present = np.unique(np.concatenate(strings))
    try:
        order = np.argsort([int(p) for p in present], kind="stable")
    except ValueError:  # not all integers: as sorted strings
        order = np.arange(len(present))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return [rank[np.searchsorted(present, s)] for s in strings], [str(p) for p in present[order]]


def _label_values(values: pa.ChunkedArray, name: str, path: Path, where: str) -> np.ndarray:
    """A label column (integers, booleans or strings, nothing missing) as a numpy array."""
    _no_nulls(values, name, path, where)
    dtype = values.type
    if pa.types.is_dictionary(dtype):
        values, dtype = values.cast(dtype.value_type), dtype.value_type
    if not (pa.types.is_integer(dtype) or pa.types.is_boolean(dtype) or pa.types.is_string(dtype)
            or pa.types.is_large_string(dtype)):
        raise DataError(f"{where}: label column {name!r} of {path} must hold integers or strings, not {dtype}")
    return values.to_numpy(zero_copy_only=False)


def _check_path(spec: Mapping[str, Any], key: str, what: str) -> Path:
    if not spec.get("path"):
        raise DataError(f"{key}.path: source {spec.get('source')} needs a path ({what})")
    path = Path(spec["path"])
    if not path.exists():
        raise FileNotFoundError(f"{key}.path: not found: {path}")
    return path


def _options(spec: Mapping[str, Any], key: str, name: str) -> dict:
    try:
        return with_defaults(spec.get(name), f"#/$defs/dataset/properties/{name}", f"{key}.{name}")
    except ValueError as err:
        raise DataError(str(err)) from None


# --------------------------------------------------------------------------------------------
# Source: table
# --------------------------------------------------------------------------------------------


def read_table_source(spec: Mapping[str, Any], key: str) -> Source:
    """One CSV, TSV or Parquet file whose rows are the samples (sample id = row number).

    Features: `table.features` or every column but the label and split columns; numbers or
    booleans (True = 1), held as one float32 (n, F) array. Missing values are an error unless
    `table.impute` is mean or median (then NaN here, filled by the build step). Classes: the sorted
    distinct values of `table.label_column` (or one class, "all"); split: `table.split_column`
    (train / test), else none of its own. load(index) -> float32 (k, F) raw values, in index order.
    """
    from latent_atlas.data.sources import Source

    path = _check_path(spec, key, "a .csv, .tsv or .parquet file")
    where = f"{key}.table"
    options = _options(spec, key, "table")
    if path.suffix.lower() not in TABLE_SUFFIXES or not path.is_file():
        raise DataError(f"{key}.path: {path} is not a .csv, .tsv or .parquet file")
    schema = read_schema(path, where)
    label, split_column = options.get("label_column"), options.get("split_column")
    for option, column in (("label_column", label), ("split_column", split_column)):
        if column is not None and column not in schema.names:
            raise DataError(f"{where}.{option}: {path} has no column {column!r}; columns: {', '.join(schema.names)}")
    features = options.get("features") or [c for c in schema.names if c not in (label, split_column)]
    unknown = [f for f in features if f not in schema.names]
    if unknown:
        raise DataError(f"{where}.features: {path} has no column(s) {', '.join(map(repr, unknown))}; "
                        f"columns: {', '.join(schema.names)}")
    if not features:
        raise DataError(f"{where}.features: {path} has no column besides the label and split columns")
    other = [c for c in (label, split_column) if c is not None]
    values, missing, columns = read_columns(path, where, schema, features, other, text=other)
    if options["impute"] == "none":
        missing.check(path, where, hint=f"; set {where}.impute to mean or median to fill them")
    n = values.rows
    if label is None:
        labels, class_names = np.zeros(n, np.int64), ["all"]
    else:
        (labels,), class_names = encode_classes([_label_values(columns[label], label, path, where)])
    split = None
    if split_column is not None:
        _no_nulls(columns[split_column], split_column, path, where)
        split = columns[split_column].to_numpy(zero_copy_only=False).astype(str)
        bad = sorted(set(map(str, np.unique(split))) - {"train", "test"})
        if bad:
            raise DataError(f"{where}.split_column: column {split_column!r} of {path} must hold train or test, "
                            f"not {', '.join(map(repr, bad[:5]))}")
        split = split.astype("<U5")

    def load(index: np.ndarray, map_fn=map) -> np.ndarray:
        return values.read(index)

    return Source(labels, class_names, load, split=split, kind="table", names=list(features))


# --------------------------------------------------------------------------------------------
# Source: series
# --------------------------------------------------------------------------------------------


def series_files(path: Path, key: str) -> list[Path]:
    """`path` itself, or the .csv/.tsv/.parquet/.npy files of the folder `path`, sorted by name."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SERIES_SUFFIXES)
        if not files:
            raise DataError(f"{key}.path: {path} holds no .csv, .tsv, .parquet or .npy file")
        return files
    if path.suffix.lower() not in SERIES_SUFFIXES:
        raise DataError(f"{key}.path: {path} is not a .csv, .tsv, .parquet or .npy file, nor a folder of them")
    return [path]


def seconds_since_start(values: pa.ChunkedArray, name: str, path: Path, where: str) -> np.ndarray:
    """float64 (T,) seconds from the first row of a time column: numbers (seconds), timestamps
    or strings of dates and times."""
    import pandas as pd

    _no_nulls(values, name, path, where)
    dtype = values.type
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype):
        seconds = values.to_numpy(zero_copy_only=False).astype(np.float64)  # a copy of its own
        seconds -= seconds[0]
        return seconds
    if pa.types.is_timestamp(dtype):
        ns = pc.cast(values, pa.timestamp("ns", dtype.tz)).cast(pa.int64()).to_numpy(zero_copy_only=False)
    elif pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        try:
            ns = np.asarray(pd.to_datetime(values.to_numpy(zero_copy_only=False)), dtype="datetime64[ns]")
        except (ValueError, TypeError) as err:
            raise DataError(f"{where}.time_column: column {name!r} of {path} holds neither seconds nor "
                            f"dates and times ({err})") from None
        ns = ns.view(np.int64)
    else:
        raise DataError(f"{where}.time_column: column {name!r} of {path} must hold seconds or dates and times, "
                        f"not {dtype}")
    return (ns - ns[0]) / 1e9


# Steps checked at a time by the time-column checks (bounds their temporary arrays).
TIME_BLOCK = 1 << 20


def time_resolution(seconds: np.ndarray) -> float:
    """The coarsest 10**-k seconds (k = 0..9) of which every time is a whole multiple (to 1% of it),
    e.g. 0.001 for times written in whole milliseconds; 0 when there is none."""
    for k in range(10):
        if all(np.all(np.abs(scaled - np.round(scaled)) <= 0.01)
               for scaled in (seconds[s:s + TIME_BLOCK] * 10.0**k for s in range(0, len(seconds), TIME_BLOCK))):
            return 10.0**-k
    return 0.0


def infer_sample_rate(seconds: np.ndarray, path: Path, where: str) -> float:
    """Hz of regular times (float64 (T,) seconds from the first): 1 / the mean step.

    Every step must lie within 1% of the median step (of the first TIME_BLOCK steps), plus the
    times' resolution where they are rounded to a unit ten or more times finer than a step. The
    rate is the mean step's, not the median's: Daphnet's times in whole milliseconds at 64 Hz step
    by 15 or 16 ms, with mean 15.625 ms (64 Hz) and median 16 ms (62.5 Hz). Steps are checked a
    block at a time.
    """
    if len(seconds) < 2:
        raise DataError(f"{where}.sample_rate: {path} has fewer than two time steps to infer it from")
    median = float(np.median(np.diff(seconds[:TIME_BLOCK + 1])))
    if not median > 0:
        raise DataError(f"{where}.sample_rate: the times of {path} do not increase; set sample_rate")
    resolution = time_resolution(seconds)
    slack = 0.01 * median + (resolution if resolution <= median / 10 else 0.0)
    for start in range(0, len(seconds) - 1, TIME_BLOCK):
        steps = np.diff(seconds[start:start + TIME_BLOCK + 1])
        irregular = np.abs(steps - median) > slack
        if irregular.any():
            row = start + int(np.argmax(irregular))
            count = sum(int((np.abs(np.diff(seconds[s:s + TIME_BLOCK + 1]) - median) > slack).sum())
                        for s in range(0, len(seconds) - 1, TIME_BLOCK))
            raise DataError(f"{where}.sample_rate: the times of {path} are not regular: rows {row} to {row + 1} "
                            f"(from 0) are {seconds[row + 1] - seconds[row]:.6g} s apart, the median step is "
                            f"{median:.6g} s ({count} step(s) off by more than 1%); set sample_rate or fix the times")
    return (len(seconds) - 1) / seconds[-1]


def _npy_blocks(path: Path, where: str, rows: int = PARQUET_BLOCK_ROWS) -> Iterator[np.ndarray]:
    """float32 (k, C) blocks of the (time steps, channels) array in an .npy file, in order (read
    with plain reads; a Fortran-order file through a memory map)."""
    with open(path, "rb") as fh:
        major, _ = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        if len(shape) != 2 or dtype.kind not in "biuf":
            raise DataError(f"{where}: {path} must hold a 2-D (time steps, channels) array of numbers, "
                            f"not {dtype} {shape}")
        if fortran:
            array = np.load(path, mmap_mode="r")
            for start in range(0, shape[0], rows):
                yield np.asarray(array[start:start + rows], np.float32)
            return
        for start in range(0, shape[0], rows):
            count = min(rows, shape[0] - start)
            block = np.fromfile(fh, dtype, count=count * shape[1])
            if block.size != count * shape[1]:
                raise DataError(f"{where}: {path} ended early (its header says {shape})")
            yield block.reshape(count, shape[1]).astype(np.float32, copy=False)


def _read_recording(path: Path, options: Mapping[str, Any], where: str,
                    infer_rate: bool) -> tuple[RowFile, list[str], float | None, np.ndarray | None]:
    """One recording: its (T, C) channel values as a RowFile (NaN is an error), their names, the rate inferred from its time column
    (or None) and its per-step label column (anomaly_column or label_column; or None)."""
    time, step_label = options.get("time_column"), options.get("anomaly_column") or options.get("label_column")
    channels = options.get("channels")
    if path.suffix.lower() == ".npy":
        for option in ("time_column", "label_column", "anomaly_column"):
            if options.get(option) is not None:
                raise DataError(f"{where}.{option}: {path} is an .npy array, which has no named columns")
        rows = missing = names = None
        try:
            for block in _npy_blocks(path, where):
                if names is None:
                    names = list(channels) if channels else [f"ch{i}" for i in range(block.shape[1])]
                    if len(names) != block.shape[1]:
                        raise DataError(f"{where}.channels: {len(names)} names for the {block.shape[1]} "
                                        f"columns of {path}")
                    rows, missing = RowFile(len(names)), MissingCount(names)
                missing.add(block)
                rows.append(block)
        except (OSError, ValueError) as err:
            raise DataError(f"{where}: cannot read {path}: {err}") from None
        if names is None:
            raise DataError(f"{where}: {path} holds no time steps")
        missing.check(path, where, hint="")
        return rows, names, None, None
    schema = read_schema(path, where)
    named = {"time_column": time, "label_column": options.get("label_column"),
             "anomaly_column": options.get("anomaly_column")}
    for option, column in named.items():
        if column is not None and column not in schema.names:
            raise DataError(f"{where}.{option}: {path} has no column {column!r}; columns: {', '.join(schema.names)}")
    if channels:
        unknown = [c for c in channels if c not in schema.names]
        if unknown:
            raise DataError(f"{where}.channels: {path} has no column(s) {', '.join(map(repr, unknown))}; "
                            f"columns: {', '.join(schema.names)}")
        names = list(channels)
    else:
        names = [f.name for f in schema if f.name not in named.values() and _is_numeric(f.type)]
        if not names:
            raise DataError(f"{where}.channels: {path} has no numeric column besides the time, label and "
                            f"anomaly columns; columns: {', '.join(schema.names)}")
    text = [options["label_column"]] if options.get("label_column") else []
    other = [c for c in (time if infer_rate else None, step_label) if c is not None]
    values, missing, columns = read_columns(path, where, schema, names, other, text=text)
    missing.check(path, where, hint="")
    rate = infer_sample_rate(seconds_since_start(columns[time], time, path, where), path, where) if infer_rate else None
    labels = None
    if options.get("anomaly_column"):
        name = options["anomaly_column"]
        _no_nulls(columns[name], name, path, where)
        if not _is_numeric(columns[name].type):
            raise DataError(f"{where}.anomaly_column: column {name!r} of {path} must hold 0 or 1, "
                            f"not {columns[name].type}")
        present = pc.unique(pc.cast(columns[name], pa.float64())).to_numpy(zero_copy_only=False)
        bad = np.setdiff1d(present, [0.0, 1.0])
        if bad.size:
            raise DataError(f"{where}.anomaly_column: column {name!r} of {path} must hold 0 or 1, "
                            f"also holds {', '.join(f'{v:g}' for v in bad[:5])}")
        labels = pc.cast(columns[name], pa.int8()).to_numpy(zero_copy_only=False)
    elif options.get("label_column"):
        labels = _label_values(columns[step_label], step_label, path, where)
    return values, names, rate, labels


def window_labels(codes: np.ndarray, starts: np.ndarray, window: int, n_classes: int, rule: str) -> np.ndarray:
    """int64 (n,) class of each window from the (T,) class codes of its steps.

    rule: any = 1 if any step is 1 (codes 0/1); majority = the most frequent code (ties: the
    smallest); centre = the code of step window // 2.
    """
    if rule == "centre":
        return codes[starts + window // 2].astype(np.int64)
    if rule == "any":
        return (_window_counts(codes == 1, starts, window) > 0).astype(np.int64)
    best = np.zeros(len(starts), np.int64)
    best_count = np.full(len(starts), -1, np.int64)
    for k in range(n_classes):  # ascending, a later class wins only with strictly more steps
        counts = _window_counts(codes == k, starts, window)
        better = counts > best_count
        best[better], best_count[better] = k, counts[better]
    return best


def _window_counts(flags: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """int64 (n,) number of True steps of `flags` (T,) in each window (running sums in int32
    where they fit: a 10-million-step recording's take 40 MB)."""
    total = np.zeros(len(flags) + 1, np.int32 if len(flags) < 2**31 - 1 else np.int64)
    np.cumsum(flags, out=total[1:])
    return total[starts + window].astype(np.int64) - total[starts]


def held_out_steps(length: int, rate: float, test_fraction: float, test_ranges: list | None) -> np.ndarray:
    """bool (T,) steps of a recording of `length` steps that are test: inside any [start, end)
    of `test_ranges` (seconds from the recording's start), or else from (1 - test_fraction) x its
    duration (length / rate seconds) on. Step i is at i / rate seconds (computed a block of steps
    at a time)."""
    test = np.zeros(length, bool)
    for first in range(0, length, TIME_BLOCK):
        seconds = np.arange(first, min(first + TIME_BLOCK, length)) / rate
        block = test[first:first + len(seconds)]
        if test_ranges is None:
            block[:] = seconds >= (1 - test_fraction) * (length / rate)
        for start, end in test_ranges or []:
            block |= (seconds >= start) & (seconds < end)
    return test


def window_split(test: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """'<U5' (n,) split of each window: 'train' or 'test' where all its steps are, '' where it
    straddles a boundary."""
    in_test = _window_counts(test, starts, window)
    return np.where(in_test == 0, "train", np.where(in_test == window, "test", "")).astype("<U5")


def read_series_source(spec: Mapping[str, Any], key: str) -> Source:
    """Recordings (a file, or the files of a folder in name order) cut into windows, one sample each.

    Windows of `series.window` steps start every `stride` steps (default: window) within each
    recording, never across two; sample id = the window's position among every window of every
    recording, in order. Class per window from the per-step `anomaly_column` (classes normal,
    anomaly) or `label_column` by `label_rule`, else one class "all". Split by time within each
    recording (`held_out_steps`): a window whose steps are all train is train, all test is test, and
    one straddling the boundary gets split "" (the build step drops it), so no test window shares
    a step with a train window and the ids do not depend on the split.

    Returns a Source of kind "series": names = channel names, sample_rate (Hz; `series.sample_rate`
    or inferred from `time_column`), start = float64 (n,) seconds from the recording's start to
    the window's first step, groups = the recording's file stem per window, load(index) ->
    float32 (k, C, window) raw values (read on demand from each recording's `RowFile`).
    """
    from latent_atlas.data.sources import Source

    path = _check_path(spec, key, "a recording file or a folder of them")
    where = f"{key}.series"
    options = _options(spec, key, "series")
    if options.get("window") is None:
        raise DataError(f"{where}.window: required (time steps per window)")
    window = int(options["window"])
    stride = int(options.get("stride") or window)
    if options.get("label_column") and options.get("anomaly_column"):
        raise DataError(f"{where}: set label_column or anomaly_column, not both")
    rule = options.get("label_rule") or ("majority" if options.get("label_column") else "any")
    if rule == "any" and options.get("label_column"):
        raise DataError(f"{where}.label_rule: 'any' is for anomaly_column (0/1); use majority or centre "
                        "with label_column")
    test_ranges = options.get("test_ranges")
    for start, end in test_ranges or []:
        if not start < end:
            raise DataError(f"{where}.test_ranges: [{start}, {end}] must start before it ends")
    rate = options.get("sample_rate")
    if rate is None and options.get("time_column") is None:
        raise DataError(f"{where}.sample_rate: required without a time_column to infer it from")

    files = series_files(path, key)
    recordings, step_labels, names = [], [], None
    for file in files:
        values, file_names, file_rate, labels = _read_recording(file, options, where, infer_rate=rate is None)
        if names is None:
            names, first, first_rate = file_names, file, file_rate
        elif file_names != names:
            raise DataError(f"{where}.channels: {file} has channels {', '.join(file_names)}, "
                            f"{first} has {', '.join(names)}")
        elif file_rate is not None and abs(file_rate - first_rate) > 0.01 * first_rate:
            raise DataError(f"{where}.sample_rate: the times of {file} say {file_rate:.6g} Hz, "
                            f"those of {first} {first_rate:.6g} Hz; set sample_rate")
        if values.rows < window:
            raise DataError(f"{where}.window: {file} has {values.rows} time steps, fewer than one window "
                            f"({window})")
        recordings.append(values)
        step_labels.append(labels)
    rate = float(rate if rate is not None else first_rate)

    if options.get("anomaly_column"):
        codes, class_names = step_labels, list(ANOMALY_CLASSES)
    elif options.get("label_column"):
        codes, class_names = encode_classes(step_labels)
    else:
        codes, class_names = [None] * len(recordings), ["all"]
    starts, labels, split, groups, start_seconds = [], [], [], [], []
    for file, values, steps in zip(files, recordings, codes):
        length = values.rows
        first_steps = np.arange(0, length - window + 1, stride)
        starts.append(first_steps)
        labels.append(np.zeros(len(first_steps), np.int64) if steps is None
                      else window_labels(steps, first_steps, window, len(class_names), rule))
        split.append(window_split(held_out_steps(length, rate, options["test_fraction"], test_ranges),
                                  first_steps, window))
        groups.append(np.full(len(first_steps), file.stem))
        start_seconds.append(first_steps / rate)
    del step_labels, codes  # per-step labels: each window has its own now
    offsets = np.cumsum([0] + [len(s) for s in starts])

    def load(index: np.ndarray, map_fn=map) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), len(names), window), np.float32)
        recording = np.searchsorted(offsets, index, side="right") - 1
        for r in np.unique(recording):
            here = np.flatnonzero(recording == r)
            first = starts[r][index[here] - offsets[r]]
            lo, hi = int(first.min()), int(first.max()) + window
            if hi - lo <= 2 * len(here) * window:  # one read of the steps the windows span
                steps = recordings[r].span(lo, hi)
                out[here] = np.lib.stride_tricks.sliding_window_view(steps, window, axis=0)[first - lo]
            else:  # windows far apart: a read each
                for i, s in zip(here, first):
                    out[i] = recordings[r].span(int(s), int(s) + window).T
        return out

    return Source(np.concatenate(labels), class_names, load, split=np.concatenate(split),
                  groups=np.concatenate(groups), kind="series", names=list(names), sample_rate=rate,
                  start=np.concatenate(start_seconds))
