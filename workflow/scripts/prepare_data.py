"""Build one configured dataset (config `datasets.<dataset>`) and write results/data/{dataset}.npz."""

from latent_atlas.data import build_dataset, save_dataset
from latent_atlas.runtime import log, run_script


def main():
    dataset = build_dataset(
        snakemake.wildcards.dataset, snakemake.params.spec, seed=int(snakemake.config["seed"])
    )
    save_dataset(dataset, snakemake.output[0])
    log.info("wrote %s", snakemake.output[0])


run_script(snakemake, main)
