"""Decode latents drawn from N(0, I), a fitted Gaussian, the bounding box and offsets of real ones."""

import numpy as np

from latent_atlas.data import load_dataset
from latent_atlas.geometry import decode_random_points
from latent_atlas.io import read_parquet, write_npz, write_parquet
from latent_atlas.models import load_model
from latent_atlas.runtime import run_script


def main():
    settings = snakemake.params.settings
    model = load_model(snakemake.input.model)
    classifier = load_model(snakemake.input.classifier[0]) if snakemake.input.classifier else None
    ds = load_dataset(snakemake.input.data)
    train = ds.images[ds.split == "train"]
    images, scores = decode_random_points(
        model, read_parquet(snakemake.input.latents), train, settings["n_per_set"],
        settings["offset_scale"], classifier, random_state=int(snakemake.config["seed"]))
    write_npz(snakemake.output.images, sets=np.array(list(images)), **images)
    write_parquet(scores, snakemake.output.scores,
                  metadata={"classifier": settings["classifier"] if classifier is not None else None})


run_script(snakemake, main)
