"""Dead neurons per layer and co-activating clusters (rule plot_featureviz_census)."""

from latent_atlas.featureviz_figures import plot_coactivation, plot_dead_neurons
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    save_figure(plot_dead_neurons(read_parquet(snakemake.input.dead_summary)), snakemake.output.dead)
    save_figure(plot_coactivation(read_parquet(snakemake.input.coactivation_matrix),
                                  read_parquet(snakemake.input.coactivation_clusters)),
                snakemake.output.coactivation)


run_script(snakemake, main)
