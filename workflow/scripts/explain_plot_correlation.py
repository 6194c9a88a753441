"""Clustered feature correlation matrix and dead / near-constant features (rule plot_explain_correlation)."""

from latent_atlas.explain import draw_correlation
from latent_atlas.runtime import run_script


def main():
    draw_correlation(snakemake.input.correlation, snakemake.input.stats, snakemake.output,
                     title=snakemake.params.title)


run_script(snakemake, main)
