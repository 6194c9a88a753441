"""Plain beside directional importance of the most important dimension (paper Fig. A.1)."""

from latent_atlas.importance_figures import most_important_dimension, plot_dimension
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    pixel = read_parquet(snakemake.input.pixel)
    dim = most_important_dimension(read_parquet(snakemake.input.latent))
    save_figure(plot_dimension(pixel, dim, title=snakemake.wildcards.model), snakemake.output)


run_script(snakemake, main)
