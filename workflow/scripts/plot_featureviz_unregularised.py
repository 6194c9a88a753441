"""Unregularised images of output (and hidden) neurons, without and with clipping
(rule plot_featureviz_unregularised)."""

from latent_atlas.featureviz_figures import load_result, plot_unregularised
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    table, arrays, meta = load_result(snakemake.input.table, snakemake.input.images)
    fig = plot_unregularised(table, arrays["images"], meta["class_names"])
    save_figure(fig, snakemake.output)


run_script(snakemake, main)
