"""Loss (and accuracy) per epoch from train_log.tsv (rule plot_training_curves)."""

import pandas as pd

from latent_atlas.model_figures import plot_training_curves
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    table = pd.read_csv(snakemake.input[0], sep="\t")
    save_figure(plot_training_curves(table, title=snakemake.wildcards.model), snakemake.output)


run_script(snakemake, main)
