"""Nearest-neighbour distances and intrinsic dimension against a filled Gaussian."""

from latent_atlas.geometry import plot_neighbours
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure, use_style
from latent_atlas.runtime import run_script


def main():
    use_style()
    fig = plot_neighbours(read_parquet(snakemake.input.points), read_parquet(snakemake.input.dimension),
                          title=f"{snakemake.wildcards.model}: neighbours and intrinsic dimension")
    save_figure(fig, snakemake.output)


run_script(snakemake, main)
