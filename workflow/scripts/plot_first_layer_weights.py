"""First-layer weights of a dense model as image tiles (rule plot_first_layer_weights)."""

from latent_atlas.model_figures import plot_weight_tiles
from latent_atlas.models import first_layer_weights, load_model
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    model = load_model(snakemake.input[0])
    weights = first_layer_weights(model).numpy()
    fig = plot_weight_tiles(weights, title=f"{snakemake.wildcards.model}: first-layer weights "
                                           f"({min(len(weights), 64)} of {len(weights)} units)")
    save_figure(fig, snakemake.output)


run_script(snakemake, main)
