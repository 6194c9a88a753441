"""Originals, reconstructions and absolute errors (rule plot_reconstructions)."""

from latent_atlas.io import read_npz
from latent_atlas.model_figures import plot_reconstructions
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    r = read_npz(snakemake.input[0])
    fig = plot_reconstructions(r["original"], r["reconstruction"], r["label"], list(r["class_names"]),
                               title=snakemake.wildcards.model)
    save_figure(fig, snakemake.output)


run_script(snakemake, main)
