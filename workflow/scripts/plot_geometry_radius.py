"""Radius histograms against the chi distribution and a Gaussian with the latents' mean/cov."""

from latent_atlas.geometry import plot_radius
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure, use_style
from latent_atlas.runtime import run_script


def main():
    use_style()
    fig = plot_radius(read_parquet(snakemake.input.histogram), read_parquet(snakemake.input.summary),
                      title=f"{snakemake.wildcards.model}: radius |z|")
    save_figure(fig, snakemake.output)


run_script(snakemake, main)
