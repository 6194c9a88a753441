"""Self-contained interactive explorer of a model's importance (rule importance_explorer)."""

from latent_atlas.explorer import write_explorer
from latent_atlas.io import read_parquet
from latent_atlas.runtime import run_script


def main():
    write_explorer(read_parquet(snakemake.input.pixel), read_parquet(snakemake.input.latent),
                   snakemake.output[0],
                   title=f"{snakemake.wildcards.dataset} / {snakemake.wildcards.model}",
                   top_k=snakemake.params.settings["top_k"],
                   n_perm=snakemake.params.settings["n_perm"])


run_script(snakemake, main)
