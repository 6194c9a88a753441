"""PCA, t-SNE and UMAP side by side with their quality numbers (rule plot_explain_maps)."""

from latent_atlas.explain import draw_maps
from latent_atlas.runtime import run_script


def main():
    draw_maps(snakemake.input.maps, snakemake.input.quality, snakemake.output, title=snakemake.params.title)


run_script(snakemake, main)
