"""Build a dataset from its config entry: read the source, then apply the options every source shares.

The options apply in this order: fold labels, keep classes (renumbered), split, subsample per
split, load the kept images only (so a large source is never decoded whole), resize and set the
colour channels. Tables and series (`Source.kind`) are not resized; their missing values are
filled and their features or channels standardised with statistics of the train split only
(`Scaling`), so the test split and every rerun use the same numbers, which the store keeps. `plan_dataset` does everything but the pixels; its `image_chunks` decode them a
chunk at a time (in worker processes where the source supports it), which `write_store` writes
to the dataset store as they come, and `build_dataset` gathers in memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

import pandas as pd

from latent_atlas.io import write_parquet
from latent_atlas.schema import with_defaults
from latent_atlas.data.labels import class_names_option, fold_labels, select_classes
from latent_atlas.data.sources import SOURCES, Source, decoding_map
from latent_atlas.data.splits import assign_split, stratified_subsample
from latent_atlas.data.store import SPLITS, DataError, Dataset, ImageAxes, as_image_shape, to_float, write_dataset
from latent_atlas.data.transforms import resize_images, set_channels

log = logging.getLogger("latent_atlas")

# Independent random streams derived from one seed (so a new option never shifts another's draws).
_SPLIT_STREAM, _SUBSAMPLE_STREAM = 1, 2
# Images decoded per chunk: the peak memory of writing a store (CelebA 3x96x96: 28 MB as uint8).
CHUNK_IMAGES = 1024


@dataclass
class Scaling:
    """How a table's features or a series' channels are filled and standardised: a missing value
    (NaN) becomes `fill`, then x -> (x - center) / scale, per feature (table: axis 1 of (k, F))
    or per channel (series: axis 1 of (k, C, L)).

    Fitted on the train split only (`fit_scaling`): center = mean and scale = standard deviation
    (ddof 0) of the observed train values, or 0 and 1 without standardisation; a feature constant
    on the train split keeps scale 1 (its train values become 0, and a test value its difference
    from the constant); fill = the train mean or median (`impute`), None when nothing is imputed.
    """

    center: np.ndarray
    scale: np.ndarray
    fill: np.ndarray | None = None
    settings: dict = field(default_factory=dict)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(k, F) or (k, C, L) raw values -> float32 filled and standardised values."""
        x = np.asarray(x, dtype=np.float64)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if self.fill is not None:
            x = np.where(np.isnan(x), self.fill.reshape(shape), x)
        return ((x - self.center.reshape(shape)) / self.scale.reshape(shape)).astype(np.float32)

    def to_metadata(self) -> dict:
        """The samples table's `standardization` entry (JSON; floats written exactly)."""
        return {"center": self.center.tolist(), "scale": self.scale.tolist(),
                "fill": None if self.fill is None else self.fill.tolist(), "fitted_on": "train", **self.settings}


def fit_scaling(chunks, names: list[str], standardize: bool, impute: str = "none", where: str = "") -> Scaling:
    """The `Scaling` of the train samples that `chunks()` yields ((k, F) or (k, C, L) raw values of
    the columns `names`, NaN where missing; called once per pass, two to four times). Two passes
    (the mean, then squared deviations from it) keep the standard deviation exact for values far
    from zero. `where` names the dataset in errors."""
    n_columns = len(names)

    def reduce(fn):
        total = np.zeros(n_columns)
        for x in chunks():
            x = np.asarray(x, dtype=np.float64)
            total += fn(np.moveaxis(x, 1, -1).reshape(-1, n_columns))
        return total

    count = reduce(lambda v: (~np.isnan(v)).sum(0))
    empty = np.flatnonzero(count == 0)
    if len(empty):
        raise DataError(f"{where}: column(s) {', '.join(names[i] for i in empty)} have no value in the "
                        "train split (nothing to fit their standardisation or imputation on)")
    mean = reduce(lambda v: np.nansum(v, 0)) / count
    fill = None
    if impute == "mean":
        fill = mean
    elif impute == "median":
        fill = np.nanmedian(np.concatenate([np.moveaxis(np.asarray(x, np.float64), 1, -1).reshape(-1, n_columns)
                                            for x in chunks()]), axis=0)
    if not standardize:
        return Scaling(np.zeros(n_columns), np.ones(n_columns), fill, {"standardize": False, "impute": impute})
    std = np.sqrt(reduce(lambda v: np.nansum((v - mean) ** 2, 0)) / count)
    return Scaling(mean, np.where(std > 0, std, 1.0), fill, {"standardize": True, "impute": impute})


@dataclass
class DatasetPlan:
    """A dataset before its pixels are read: which source samples it keeps, in order, with their
    labels and split, and how to decode their images.

    index : int64 (n,) source indices (= sample ids); labels : int64 (n,); split : str (n,);
    samples ordered train first, then test, each by source index.
    """

    name: str
    source: Source
    spec: Mapping[str, Any]
    index: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    class_names: list[str]

    scaling: Scaling | None = None  # tables and series: set by `fit` (train statistics)

    @property
    def kind(self) -> str:
        return self.source.kind

    def fit(self, rows: int = CHUNK_IMAGES) -> None:
        """Fit the `Scaling` of a table or a series on the plan's train samples (no-op for images)."""
        if self.kind == "image" or self.scaling is not None:
            return
        key = f"datasets.{self.name}"
        # the table and series sources' own options; other sources of series (audio_digits'
        # waveforms) are always standardised, with nothing to impute
        standardize, impute = True, "none"
        if self.spec["source"] == self.kind:
            try:
                options = with_defaults(self.spec.get(self.kind), f"#/$defs/dataset/properties/{self.kind}",
                                        f"{key}.{self.kind}")
            except ValueError as err:
                raise DataError(str(err)) from None
            standardize, impute = bool(options["standardize"]), str(options.get("impute", "none"))
        train = self.index[self.split == "train"]
        self.scaling = fit_scaling(
            lambda: (self.source.load(train[s:s + rows]) for s in range(0, len(train), rows)),
            list(self.source.names), standardize, impute, key)
        log.info("%s: %s fitted on %d train samples", self.name,
                 "standardisation" if self.scaling.settings["standardize"] else "imputation", len(train))

    def axes(self) -> ImageAxes | None:
        """The samples' axes: a spectrogram's (from the source), a table's features, a series'
        channels and its window's seconds."""
        names = self.source.names
        if self.kind == "table":
            return ImageAxes([0.0], np.arange(len(names)), "", "feature", {}, col_names=names)
        if self.kind == "series":
            length = int(self.source.load(self.index[:1]).shape[-1])
            rate = float(self.source.sample_rate)
            return ImageAxes(np.arange(len(names)), np.arange(length) / rate, "channel", "time (s)",
                             {"sample_rate": rate, "window": length}, row_names=names)
        return self.source.axes

    def store_metadata(self) -> tuple[dict, dict[str, np.ndarray]]:
        """What a table's or a series' store keeps beside the samples: metadata (names, rate,
        standardisation) and per-sample columns (a series' recording and window start)."""
        if self.kind == "image":
            return {}, {}
        meta = {"names": list(self.source.names), "standardization": self.scaling.to_metadata()}
        columns = {}
        if self.kind == "series":
            meta["sample_rate"] = float(self.source.sample_rate)
        if self.source.start is not None:  # windows cut from recordings (source series)
            columns = {"recording": np.asarray(self.source.groups)[self.index].astype(str),
                       "start_s": np.asarray(self.source.start, np.float64)[self.index]}
        return meta, columns

    def source_attributes(self) -> dict[str, np.ndarray] | None:
        """The source's own per-sample attributes (name -> (n,) values) of the kept samples."""
        if not self.source.attributes:
            return None
        return {name: np.asarray(values)[self.index] for name, values in self.source.attributes.items()}

    def __len__(self) -> int:
        return len(self.index)

    def image_chunks(self, workers: int = 1, rows: int = CHUNK_IMAGES, map_fn=None) -> Iterator[np.ndarray]:
        """The images in order, (k, C, H, W) uint8 or float32 per chunk of `rows`, resized and with
        the configured channels. `workers` > 1 decodes a source's files in that many processes
        (or `map_fn`, a `sources.decoding_map` the caller opened); the images do not depend on it."""
        if map_fn is None:
            with decoding_map(workers) as map_fn:
                yield from self.image_chunks(rows=rows, map_fn=map_fn)
            return
        self.fit()
        for start in range(0, len(self.index), rows):
            images = self.source.load(self.index[start:start + rows], map_fn)
            if self.scaling is not None:
                yield self.scaling.apply(images)
                continue
            if not self.source.resized:
                images = set_channels(images, self.spec.get("color"))
                if self.spec.get("size"):
                    images = resize_images(images, int(self.spec["size"]))
            yield images


def build_dataset(name: str, spec: Mapping[str, Any], seed: int, workers: int = 1) -> Dataset:
    """The dataset of config entry `datasets.<name>` in memory (`plan_dataset`, every image
    decoded): for small datasets and tests; the workflow writes the store with `write_store`."""
    plan = plan_dataset(name, spec, seed)
    images = np.concatenate(list(plan.image_chunks(workers)))
    ds = Dataset(to_float(images).reshape(as_image_shape(images.shape)), plan.labels, plan.class_names,
                 plan.split, plan.index, name, plan.axes(), plan.kind)
    ds.validate()
    log.info("built %s", ds.summary())
    return ds


def write_store(name: str, spec: Mapping[str, Any], seed: int, folder, workers: int = 1) -> None:
    """Write the dataset store of config entry `datasets.<name>` to `folder`, decoding and writing
    a chunk of images at a time (peak memory: a chunk per worker, not the dataset). The decoding
    processes start before the source's tables are read, so they do not hold copies of them. The
    table and series sources read their files in this process, a block at a time: no workers."""
    if spec.get("source") in ("table", "series"):
        workers = 1
    with decoding_map(workers) as map_fn:
        plan = plan_dataset(name, spec, seed)
        plan.fit()
        meta, columns = plan.store_metadata()
        write_dataset(folder, plan.index, plan.split, plan.labels, plan.class_names, name,
                      plan.image_chunks(map_fn=map_fn), plan.axes(), plan.kind, meta, columns)
    counts = {s: int((plan.split == s).sum()) for s in SPLITS}
    log.info("wrote %s: %d samples (%d train, %d test), %d classes: %s", folder, len(plan),
             counts["train"], counts["test"], len(plan.class_names), ", ".join(plan.class_names))


def write_attribute_table(name: str, spec: Mapping[str, Any], seed: int, samples: pd.DataFrame, path) -> list[str]:
    """Write the attribute table (`data.attributes`) of the store whose samples table is `samples`
    to `path`: the class, the source's own attributes and the user's table
    (`datasets.<name>.attributes`), read from the source's tables without decoding any image.
    Returns the attribute names. The plan must give the store's samples (same entry, same seed)."""
    from latent_atlas.data.attributes import attribute_frame, match_table, read_attribute_table

    key = f"datasets.{name}"
    plan = plan_dataset(name, spec, seed)
    if not np.array_equal(plan.index, samples["sample_id"].to_numpy()):
        raise DataError(f"{key}: the dataset store's samples differ from what the entry selects now; "
                        f"rerun prepare_data for {name!r}")
    table, table_path = None, None
    own = spec.get("attributes")
    if own:
        table_key = f"{key}.attributes"
        table_path = own["file"]
        table = match_table(read_attribute_table(table_path, table_key, own["id_column"], own.get("columns")),
                            plan.index, len(plan.source.labels), table_key, table_path)
    frame, described = attribute_frame(plan.index, plan.labels, plan.class_names, plan.source_attributes(),
                                       plan.source.attribute_levels, table, table_path, key)
    write_parquet(frame, path, metadata={"dataset": name, "attributes": described})
    return [d["name"] for d in described]


def plan_dataset(name: str, spec: Mapping[str, Any], seed: int) -> DatasetPlan:
    """Read the source of config entry `datasets.<name>` and apply its options, but for the pixels.

    Parameters
    ----------
    name : str
        The dataset's key under `datasets:` (used in messages as `datasets.<name>.<key>`).
    spec : mapping
        That entry, as validated against `$defs/dataset` of the config schema; missing optional
        keys take the schema's defaults (filled here too, for entries that did not pass validate()).
    seed : int
        The config's base seed; the split and the subsample draw from their own streams of it
        unless `split.seed` / `subsample.seed` are given.

    Returns
    -------
    DatasetPlan
        Samples ordered train first, then test, each by `sample_id`.
    """
    key = f"datasets.{name}"
    kind = spec.get("source")
    if kind not in SOURCES:
        raise DataError(f"{key}.source: unknown source {kind!r}; expected one of {', '.join(SOURCES)}")
    try:
        spec = with_defaults(spec, "#/$defs/dataset", key)
        # validate() fills `split` only where the entry has one; its defaults hold without it too.
        split_spec = with_defaults(spec.get("split"), "#/$defs/split", f"{key}.split")
    except ValueError as err:
        raise DataError(str(err)) from None
    if kind == "series" and split_spec.get("method") not in (None, "source"):
        raise DataError(f"{key}.split.method: a series is split by time (series.test_fraction or "
                        f"series.test_ranges), so that no test window overlaps a training window; "
                        f"{split_spec.get('method')!r} would split windows at random")
    src = SOURCES[kind](spec, key)
    class_names = class_names_option(src.class_names, spec.get("class_names"), f"{key}.class_names")
    labels = fold_labels(src.labels, spec.get("fold_labels") or {}, len(class_names), f"{key}.fold_labels")
    keep, labels, class_names = select_classes(labels, class_names, spec.get("classes"), f"{key}.classes")
    index = np.flatnonzero(keep)

    split = assign_split(
        labels,
        own_split=None if src.split is None else src.split[index],
        groups=None if src.groups is None else src.groups[index],
        method=split_spec.get("method"),
        test_fraction=float(split_spec["test_fraction"]),
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
    return DatasetPlan(name, src, spec, index.astype(np.int64), labels.astype(np.int64),
                       np.asarray(split).astype("<U5"), list(class_names))


def _stream(explicit: int | None, seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(explicit if explicit is not None else [int(seed), stream])
