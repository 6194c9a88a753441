"""t-SNE (one map per job) or UMAP (every map of one model in one job: numba compiles once)."""

from latent_atlas.geometry import projection_table
from latent_atlas.io import read_parquet, write_parquet
from latent_atlas.runtime import log, run_script


def main():
    latents = read_parquet(snakemake.input[0])
    cfg = snakemake.config
    if snakemake.rule == "geometry_tsne":
        method, grid = "tsne", [(snakemake.wildcards.space, int(snakemake.wildcards.n))]
    else:
        method, grid = "umap", snakemake.params.grid
    for (space, n), path in zip(grid, snakemake.output):
        log.info("%s of %s, n=%d", method, space, n)
        table = projection_table(latents, method, snakemake.params.settings, space, int(n),
                                 random_state=int(cfg["seed"]), n_jobs=int(cfg["numeric_threads"]))
        write_parquet(table, path, metadata={"method": method, "space": space, "n_requested": int(n),
                                             "params": dict(snakemake.params.settings)})


run_script(snakemake, main)
