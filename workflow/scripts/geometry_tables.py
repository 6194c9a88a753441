"""Density along axes, radius, PCA, planes, neighbours and the summary of one model's latents."""

from latent_atlas.geometry import geometry_tables
from latent_atlas.io import read_parquet, read_parquet_metadata, write_parquet
from latent_atlas.runtime import run_script


def main():
    latents = read_parquet(snakemake.input[0])
    meta = {k: v for k, v in read_parquet_metadata(snakemake.input[0]).items() if k in ("dataset", "model", "arch")}
    tables = geometry_tables(latents, snakemake.params.geometry, random_state=int(snakemake.config["seed"]))
    for name, path in zip(snakemake.params.names, snakemake.output):
        write_parquet(tables[name], path, metadata=meta)


run_script(snakemake, main)
