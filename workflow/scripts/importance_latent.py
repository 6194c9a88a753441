"""Latent dimension -> output importance per class (rule latent_importance)."""

from latent_atlas.importance import model_latent_importance
from latent_atlas.io import write_parquet
from latent_atlas.runtime import run_script


def main():
    table = model_latent_importance(snakemake.input.data, snakemake.input.model,
                                    snakemake.params.settings, seed=int(snakemake.config["seed"]))
    write_parquet(table, snakemake.output[0], metadata={
        "dataset": snakemake.wildcards.dataset, "model": snakemake.wildcards.model,
    })


run_script(snakemake, main)
