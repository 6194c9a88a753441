"""PCA biplot with loading arrows, and scree with cumulative variance (rule plot_explain_pca)."""

from latent_atlas.explain import draw_pca
from latent_atlas.runtime import run_script


def main():
    i = snakemake.input
    draw_pca(i.maps, i.loadings, i.scree, snakemake.output, arrows=snakemake.params.arrows,
             title=snakemake.params.title)


run_script(snakemake, main)
