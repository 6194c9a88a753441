"""The data stage's jobs: the dataset store results/data/{dataset}/ (rule prepare_data) and its
example grid (rule plot_dataset_examples)."""

from __future__ import annotations

from latent_atlas.data.figures import plot_examples
from latent_atlas.data.store import load_dataset, store_folder
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import Job, log

EXAMPLES_PER_CLASS = 8


def prepare_data(job: Job) -> None:
    """Write the store of config entry `datasets.<dataset>` (params.spec), a chunk of images at a
    time, decoding image files in `job.threads` processes."""
    from latent_atlas.data.build import write_store  # the source readers: not for the figure job

    folder = store_folder(job.output)
    write_store(job.wildcards.dataset, job.params.spec, int(job.config["seed"]), folder, workers=job.threads)
    load_dataset(folder)  # checks labels, split and ids against the file contract


def plot_dataset_examples(job: Job) -> None:
    """A grid of EXAMPLES_PER_CLASS images of each class, one file per figure format (only those
    images are read)."""
    spec = job.config["datasets"][job.wildcards.dataset]
    # Spectrograms read best in a perceptual colour map; images keep gray levels as the models see them.
    cmap = "magma" if spec["source"] == "audio_digits" else "gray"
    dataset = load_dataset(job.input[0])
    fig = plot_examples(dataset, EXAMPLES_PER_CLASS, random_state=int(job.config["seed"]), cmap=cmap)
    save_figure(fig, list(job.output))
