"""Every t-SNE or UMAP map of one model's latents in one figure, coloured by class."""

from latent_atlas.geometry import plot_projections
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure, use_style
from latent_atlas.runtime import run_script

NAMES = {"tsne": "t-SNE (openTSNE)", "umap": "UMAP"}


def main():
    use_style()
    tables = [read_parquet(p) for p in snakemake.input]
    fig = plot_projections(tables, title=f"{snakemake.wildcards.model}: {NAMES[snakemake.wildcards.method]}")
    save_figure(fig, snakemake.output)


run_script(snakemake, main)
