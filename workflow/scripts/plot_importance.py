"""Every permutation-importance figure of one model (rule plot_importance), from its two tables."""

from latent_atlas.importance_figures import (most_important_dimension, plot_class, plot_classes, plot_dimension,
                                             plot_directional)
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    o, p, model = snakemake.output, snakemake.params, snakemake.wildcards.model
    pixel, latent = read_parquet(snakemake.input.pixel), read_parquet(snakemake.input.latent)
    save_figure(plot_directional(pixel, title=model), o.directional)
    save_figure(plot_dimension(pixel, most_important_dimension(latent), title=model), o.dimension)
    save_figure(plot_classes(pixel, latent, p.top_k), o.classes)
    for cls in p.classes:
        save_figure(plot_class(pixel, latent, int(cls), p.top_k), o[f"class_{cls}"])


run_script(snakemake, main)
