"""Draw a grid of example images per class of results/data/{dataset}.npz (one file per figure format)."""

from latent_atlas.data import load_dataset, plot_examples
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script

EXAMPLES_PER_CLASS = 8


def main():
    spec = snakemake.config["datasets"][snakemake.wildcards.dataset]
    # Spectrograms read best in a perceptual colour map; images keep gray levels as the models see them.
    cmap = "magma" if spec["source"] == "audio_digits" else "gray"
    dataset = load_dataset(snakemake.input[0])
    fig = plot_examples(dataset, EXAMPLES_PER_CLASS, random_state=int(snakemake.config["seed"]), cmap=cmap)
    save_figure(fig, list(snakemake.output))


run_script(snakemake, main)
