"""Appendix grid of every class (rule plot_importance_classes)."""

from latent_atlas.importance_figures import plot_classes
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    fig = plot_classes(read_parquet(snakemake.input.pixel), read_parquet(snakemake.input.latent),
                       snakemake.params.top_k)
    save_figure(fig, snakemake.output)


run_script(snakemake, main)
