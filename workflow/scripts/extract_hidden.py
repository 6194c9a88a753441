"""Write hidden.parquet (rule extract_hidden): every hidden unit of a classifier."""

from latent_atlas.latents import write_hidden
from latent_atlas.runtime import run_script


def main():
    write_hidden(
        snakemake.input.data,
        snakemake.input.model,
        snakemake.output.hidden,
        model_name=snakemake.wildcards.model,
        config_hash=snakemake.params.config_hash,
        max_samples=snakemake.params.extract["hidden_max_samples"],
        batch_size=snakemake.params.extract["batch_size"],
    )


run_script(snakemake, main)
