"""Build a dataset from its config entry: read the source, then apply the options every source shares.

The options apply in this order: fold labels, keep classes (renumbered), split, subsample per
split, load the kept images only (so a large source is never decoded whole), resize and set the
colour channels.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from latent_atlas.schema import with_defaults
from latent_atlas.data.labels import class_names_option, fold_labels, select_classes
from latent_atlas.data.sources import SOURCES
from latent_atlas.data.splits import assign_split, stratified_subsample
from latent_atlas.data.store import SPLITS, DataError, Dataset, to_float
from latent_atlas.data.transforms import resize_images, set_channels

log = logging.getLogger("latent_atlas")

# Independent random streams derived from one seed (so a new option never shifts another's draws).
_SPLIT_STREAM, _SUBSAMPLE_STREAM = 1, 2


def build_dataset(name: str, spec: Mapping[str, Any], seed: int) -> Dataset:
    """Read the source of config entry `datasets.<name>` and apply its options.

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
    Dataset
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

    images = src.load(index)
    if not src.resized:
        images = set_channels(images, spec.get("color"))
        if spec.get("size"):
            images = resize_images(images, int(spec["size"]))
    ds = Dataset(to_float(images), labels, class_names, split, index, name, src.axes)
    ds.validate()
    log.info("built %s", ds.summary())
    return ds


def _stream(explicit: int | None, seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(explicit if explicit is not None else [int(seed), stream])
