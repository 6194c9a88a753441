"""Ridge maps: top coefficients and predicted vs actual map coordinates (rule plot_explain_ridge)."""

from latent_atlas.explain import draw_ridge
from latent_atlas.runtime import run_script


def main():
    i = snakemake.input
    draw_ridge(i.scores, i.coefficients, i.predictions, snakemake.output, top=snakemake.params.top,
               title=snakemake.params.title)


run_script(snakemake, main)
