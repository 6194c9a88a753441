"""Directional pixel importance of every encoded dimension (rule plot_importance_directional)."""

from latent_atlas.importance_figures import plot_directional
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    pixel = read_parquet(snakemake.input[0])
    save_figure(plot_directional(pixel, title=snakemake.wildcards.model), snakemake.output)


run_script(snakemake, main)
