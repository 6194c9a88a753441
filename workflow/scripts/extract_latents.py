"""Write latents.parquet (rule extract_latents): one row per sample, z0..z{d-1}."""

from latent_atlas.latents import write_latents
from latent_atlas.runtime import run_script


def main():
    write_latents(
        snakemake.input.data,
        snakemake.input.model,
        snakemake.output.latents,
        model_name=snakemake.wildcards.model,
        config_hash=snakemake.params.config_hash,
        batch_size=snakemake.params.extract["batch_size"],
    )


run_script(snakemake, main)
