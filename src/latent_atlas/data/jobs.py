"""The data stage's jobs: the dataset store results/data/{dataset}/ (rule prepare_data) and its
example grid (rule plot_dataset_examples)."""

from __future__ import annotations

from typing import Any, Mapping

from latent_atlas.data.figures import plot_examples, plot_series_examples, plot_table_means
from latent_atlas.data.store import load_dataset, store_folder
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import Job, log

EXAMPLES_PER_CLASS = 8
# A series' windows drawn per class (line plots: wider than an image), and the rows of each class a
# table's class means are taken over.
SERIES_EXAMPLES_PER_CLASS = 3
TABLE_ROWS_PER_CLASS = 1000


def prepare_data(job: Job, *, seed: int, spec: Mapping[str, Any]) -> None:
    """Write the store of config entry `datasets.<dataset>` (`spec`; `seed` for the split and
    subsample unless the entry seeds them), a chunk of images at a time, decoding image files in
    `job.threads` processes (same bytes for any number)."""
    from latent_atlas.data.build import write_store  # the source readers: not for the figure job

    folder = store_folder(job.output)
    write_store(job.wildcards.dataset, spec, int(seed), folder, workers=job.threads)
    load_dataset(folder)  # checks labels, split and ids against the file contract


def plot_dataset_examples(job: Job, *, seed: int) -> None:
    """A grid of EXAMPLES_PER_CLASS images of each class (drawn with `seed`), one file per figure
    format (only those images are read); a series' SERIES_EXAMPLES_PER_CLASS windows per class
    as line plots; a table's class means over up to TABLE_ROWS_PER_CLASS rows of each class."""
    dataset = load_dataset(job.input[0])
    if dataset.kind == "series":
        fig = plot_series_examples(dataset, SERIES_EXAMPLES_PER_CLASS, random_state=int(seed))
    elif dataset.kind == "table":
        fig = plot_table_means(dataset, TABLE_ROWS_PER_CLASS, random_state=int(seed))
    else:
        # Spectrograms (a store with axes in Hz and s) read best in a perceptual colour map; images
        # keep gray levels as the models see them.
        cmap = "gray" if dataset.axes is None else "magma"
        fig = plot_examples(dataset, EXAMPLES_PER_CLASS, random_state=int(seed), cmap=cmap)
    save_figure(fig, list(job.output))


def dataset_attributes(job: Job, *, seed: int, spec: Mapping[str, Any]) -> None:
    """Write the attribute table (`data.attributes`) of the store `job.input.samples`: its class,
    the source's own attributes and the entry's `attributes` table, read from the source's tables
    (no image is decoded); the entry and `seed` must select the store's samples."""
    from latent_atlas.data.build import write_attribute_table
    from latent_atlas.io import read_parquet

    names = write_attribute_table(job.wildcards.dataset, spec, int(seed), read_parquet(job.input.samples),
                                  job.output[0])
    log.info("wrote %s: %d attributes: %s", job.output[0], len(names), ", ".join(names))
