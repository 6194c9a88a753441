"""Inputs, first-layer activations and features of the explained samples (rule explain_samples)."""

from latent_atlas.explain import write_samples
from latent_atlas.runtime import run_script


def main():
    i = snakemake.input
    write_samples(i.data, i.model, i.latents, i.placement, snakemake.output[0])


run_script(snakemake, main)
