"""Trustworthiness, continuity and k-NN accuracy of each map (rule explain_quality)."""

from latent_atlas.explain import write_quality
from latent_atlas.runtime import run_script


def main():
    write_quality(snakemake.input.latents, snakemake.input.maps, snakemake.output[0], snakemake.params.settings,
                  seed=int(snakemake.config["seed"]), metadata=dict(snakemake.wildcards.items()))


run_script(snakemake, main)
