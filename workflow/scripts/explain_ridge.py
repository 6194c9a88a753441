"""Ridge regression of each t-SNE and UMAP axis from the features (rule explain_ridge)."""

from latent_atlas.explain import write_ridge
from latent_atlas.runtime import run_script


def main():
    write_ridge(snakemake.input.latents, snakemake.input.maps, snakemake.output, snakemake.params.settings,
                seed=int(snakemake.config["seed"]), metadata=dict(snakemake.wildcards.items()))


run_script(snakemake, main)
