"""Merge the pixel-block shards of one model into one table (rules importance_gather[_logits])."""

from latent_atlas.importance import gather_blocks, shard_outputs
from latent_atlas.io import write_parquet
from latent_atlas.runtime import run_script


def main():
    name = snakemake.params.output_name
    output = shard_outputs(snakemake.input)[0] if name == "primary" else name
    table = gather_blocks(snakemake.input, output)
    write_parquet(table, snakemake.output[0], metadata={
        "dataset": snakemake.wildcards.dataset, "model": snakemake.wildcards.model,
        "output": output, "n_shards": len(snakemake.input),
    })


run_script(snakemake, main)
