"""Density along every latent axis, and the most off-centre axes alone."""

from latent_atlas.geometry import plot_axis_density
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure, use_style
from latent_atlas.runtime import run_script


def main():
    use_style()
    s = snakemake.params.settings
    fig = plot_axis_density(read_parquet(snakemake.input.density), read_parquet(snakemake.input.summary),
                            s["show_alone"], s["selected"],
                            title=f"{snakemake.wildcards.model}: density along each axis (bin width {s['bin_width']:g})")
    save_figure(fig, snakemake.output)


run_script(snakemake, main)
