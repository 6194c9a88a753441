"""The data stage's jobs: results/data/{dataset}.npz (rule prepare_data) and its example grid
(rule plot_dataset_examples)."""

from __future__ import annotations

from latent_atlas.data.figures import plot_examples
from latent_atlas.data.store import load_dataset, save_dataset
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import Job, log

EXAMPLES_PER_CLASS = 8


def prepare_data(job: Job) -> None:
    """Build the dataset of config entry `datasets.<dataset>` (params.spec) and write it."""
    from latent_atlas.data.build import build_dataset  # the source readers: not for the figure job

    dataset = build_dataset(job.wildcards.dataset, job.params.spec, seed=int(job.config["seed"]))
    save_dataset(dataset, job.output[0])
    log.info("wrote %s", job.output[0])


def plot_dataset_examples(job: Job) -> None:
    """A grid of EXAMPLES_PER_CLASS images of each class, one file per figure format."""
    spec = job.config["datasets"][job.wildcards.dataset]
    # Spectrograms read best in a perceptual colour map; images keep gray levels as the models see them.
    cmap = "magma" if spec["source"] == "audio_digits" else "gray"
    dataset = load_dataset(job.input[0])
    fig = plot_examples(dataset, EXAMPLES_PER_CLASS, random_state=int(job.config["seed"]), cmap=cmap)
    save_figure(fig, list(job.output))
