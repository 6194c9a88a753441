"""PCA scree and cumulative explained variance of the latents."""

from latent_atlas.geometry import plot_pca
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure, use_style
from latent_atlas.runtime import run_script


def main():
    use_style()
    fig = plot_pca(read_parquet(snakemake.input[0]), title=f"{snakemake.wildcards.model}: PCA of the latents")
    save_figure(fig, snakemake.output)


run_script(snakemake, main)
