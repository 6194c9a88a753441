"""One class: sorted latent importance beside its top-k heatmaps (rule plot_importance_class)."""

from latent_atlas.importance_figures import plot_class
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    fig = plot_class(read_parquet(snakemake.input.pixel), read_parquet(snakemake.input.latent),
                     int(snakemake.wildcards.cls), snakemake.params.top_k)
    save_figure(fig, snakemake.output)


run_script(snakemake, main)
