"""Pixel importance of one block of pixels (rule importance_block): one Parquet shard."""

from latent_atlas.importance import block_importance
from latent_atlas.io import write_parquet
from latent_atlas.runtime import run_script


def main():
    block = int(snakemake.wildcards.block)
    table = block_importance(snakemake.input.data, snakemake.input.model, block,
                             snakemake.params.settings, seed=int(snakemake.config["seed"]))
    write_parquet(table, snakemake.output[0], metadata={"block": block})


run_script(snakemake, main)
