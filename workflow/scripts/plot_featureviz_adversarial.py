"""Adversarial examples (original, result, difference, predictions) and the success-rate matrix
(rule plot_featureviz_adversarial)."""

from latent_atlas.featureviz_figures import load_result, plot_adversarial_examples, plot_adversarial_success
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    table, arrays, meta = load_result(snakemake.input.table, snakemake.input.images)
    names = meta["class_names"]
    save_figure(plot_adversarial_examples(table, arrays["images"], names, show=snakemake.params.show),
                snakemake.output.examples)
    save_figure(plot_adversarial_success(read_parquet(snakemake.input.success), names),
                snakemake.output.success)


run_script(snakemake, main)
