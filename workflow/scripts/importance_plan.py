"""Image shape and number of pixel blocks of a model's dataset (checkpoint importance_plan)."""

from latent_atlas.importance_plan import plan
from latent_atlas.io import write_json
from latent_atlas.runtime import run_script


def main():
    write_json(plan(snakemake.input[0], snakemake.params.block_size), snakemake.output[0])


run_script(snakemake, main)
