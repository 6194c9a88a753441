"""Grids of images decoded from random latent points, one per way of drawing them."""

import numpy as np

from latent_atlas.geometry import plot_random_points
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure, use_style
from latent_atlas.runtime import run_script


def main():
    use_style()
    with np.load(snakemake.input.images) as f:
        images = {str(name): f[str(name)] for name in f["sets"]}
    fig = plot_random_points(images, read_parquet(snakemake.input.scores),
                             title=f"{snakemake.wildcards.model}: decoded random latent points")
    save_figure(fig, snakemake.output)


run_script(snakemake, main)
