"""The explained samples end to end, compared in one figure (rule plot_explain_samples)."""

from latent_atlas.explain import draw_samples
from latent_atlas.runtime import run_script


def main():
    i = snakemake.input
    draw_samples(i.samples, i.placement, i.maps, i.contributions, snakemake.output, top=snakemake.params.top,
                 max_maps=snakemake.params.max_maps, title=snakemake.params.title)


run_script(snakemake, main)
