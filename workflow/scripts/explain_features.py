"""Feature statistics, clustered correlations and per-cluster profiles (rule explain_features)."""

from latent_atlas.explain import write_features
from latent_atlas.runtime import run_script


def main():
    write_features(snakemake.input.latents, snakemake.input.maps, snakemake.output, snakemake.params.settings,
                   seed=int(snakemake.config["seed"]), metadata=dict(snakemake.wildcards.items()))


run_script(snakemake, main)
