"""Write predictions.parquet (rule extract_predictions): predicted class and probabilities."""

from latent_atlas.latents import write_predictions
from latent_atlas.runtime import run_script


def main():
    write_predictions(
        snakemake.input.data,
        snakemake.input.model,
        snakemake.output.predictions,
        model_name=snakemake.wildcards.model,
        config_hash=snakemake.params.config_hash,
        batch_size=snakemake.params.extract["batch_size"],
    )


run_script(snakemake, main)
