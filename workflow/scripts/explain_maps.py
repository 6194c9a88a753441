"""PCA, t-SNE and UMAP of the same samples, and where the explained samples land (rule explain_maps)."""

from latent_atlas.explain import write_maps
from latent_atlas.runtime import run_script


def main():
    write_maps(snakemake.input[0], snakemake.output, snakemake.params.settings,
               seed=int(snakemake.config["seed"]), n_jobs=int(snakemake.config["numeric_threads"]),
               metadata=dict(snakemake.wildcards.items()))


run_script(snakemake, main)
