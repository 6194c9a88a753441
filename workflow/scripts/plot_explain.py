"""Every explain figure of one model (rule plot_explain), each from its tables."""

from latent_atlas.explain import draw_correlation, draw_maps, draw_pca, draw_ridge, draw_samples, draw_umap_features
from latent_atlas.runtime import run_script


def main():
    i, o, p = snakemake.input, snakemake.output, snakemake.params
    draw_maps(i.maps, i.quality, o.maps, title=p.title)
    draw_correlation(i.correlation, i.stats, o.correlation, title=p.title)
    draw_ridge(i.ridge_scores, i.ridge_coefficients, i.ridge_predictions, o.ridge, top=p.ridge_top, title=p.title)
    draw_pca(i.maps, i.loadings, i.scree, o.pca, arrows=p.arrows, title=p.title)
    draw_umap_features(i.maps, i.profiles, i.clusters, o.umap_features, top=p.cluster_top, title=p.title)
    draw_samples(i.samples, i.placement, i.maps, i.contributions, o.samples, top=p.contributors_top,
                 max_maps=p.max_maps, title=p.title)


run_script(snakemake, main)
