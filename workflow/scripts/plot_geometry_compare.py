"""Side-by-side geometry of the models of one dataset: a figure and one summary table."""

import pandas as pd

from latent_atlas.geometry import plot_compare
from latent_atlas.io import read_parquet, write_parquet
from latent_atlas.plotting import save_figure, use_style
from latent_atlas.runtime import run_script


def main():
    use_style()
    models = {}
    for key, path in snakemake.input.items():
        model, table = key.split(":", 1)
        models.setdefault(model, {})[table] = read_parquet(path)
    summary = pd.concat([t["summary"].assign(model=m) for m, t in models.items()], ignore_index=True)
    write_parquet(summary[["model"] + [c for c in summary.columns if c != "model"]], snakemake.output.table)
    fig = plot_compare(models, title=f"{snakemake.wildcards.dataset}: latent geometry of "
                                     + " vs ".join(models))
    save_figure(fig, snakemake.output.figure)


run_script(snakemake, main)
