"""UMAP feature view: per-cluster feature profiles and top features (rule plot_explain_umap_features)."""

from latent_atlas.explain import draw_umap_features
from latent_atlas.runtime import run_script


def main():
    i = snakemake.input
    draw_umap_features(i.maps, i.profiles, i.clusters, snakemake.output, top=snakemake.params.top,
                       title=snakemake.params.title)


run_script(snakemake, main)
