"""Latents on PCA and raw-axis planes, at each zoom window."""

from latent_atlas.geometry import plot_planes
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure, use_style
from latent_atlas.runtime import run_script


def main():
    use_style()
    fig = plot_planes(read_parquet(snakemake.input.planes), read_parquet(snakemake.input.zoom),
                      title=f"{snakemake.wildcards.model}: planes, zoomed")
    save_figure(fig, snakemake.output)


run_script(snakemake, main)
