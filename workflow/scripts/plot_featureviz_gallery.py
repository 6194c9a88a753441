"""Gallery of one hidden layer's optimised units (rule plot_featureviz_gallery)."""

from latent_atlas.featureviz_figures import load_result, plot_gallery
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    table, arrays, _ = load_result(snakemake.input.table, snakemake.input.images)
    save_figure(plot_gallery(table, arrays["images"]), snakemake.output)


run_script(snakemake, main)
