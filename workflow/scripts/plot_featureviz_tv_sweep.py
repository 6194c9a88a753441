"""TV-weight sweep of output neurons beside the confident class means (rule plot_featureviz_tv_sweep)."""

from latent_atlas.featureviz_figures import load_result, plot_tv_sweep
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    table, arrays, meta = load_result(snakemake.input.table, snakemake.input.images)
    fig = plot_tv_sweep(table, arrays["images"], arrays["class_means"], arrays["class_counts"],
                        meta["class_names"], meta["confidence"])
    save_figure(fig, snakemake.output)


run_script(snakemake, main)
