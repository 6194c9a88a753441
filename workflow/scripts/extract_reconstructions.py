"""Write reconstructions.npz (rule extract_reconstructions): a fixed test subset and its reconstructions."""

from latent_atlas.latents import write_reconstructions
from latent_atlas.runtime import run_script


def main():
    write_reconstructions(
        snakemake.input.data,
        snakemake.input.model,
        snakemake.output.reconstructions,
        per_class=snakemake.params.extract["reconstructions_per_class"],
        batch_size=snakemake.params.extract["batch_size"],
    )


run_script(snakemake, main)
