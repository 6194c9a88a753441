"""TV x L1 grid of one neuron, the output or the hidden panel (rule plot_featureviz_tv_l1_grid)."""

from latent_atlas.featureviz_figures import load_result, plot_tv_l1_grid
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    table, arrays, meta = load_result(snakemake.input.table, snakemake.input.images)
    panel = table[table["panel"] == snakemake.wildcards.panel]
    if panel.empty:
        raise ValueError(f"{snakemake.input.table}: no {snakemake.wildcards.panel!r} grid "
                         "(featureviz.tv_l1_grid.hidden_layer is null?)")
    save_figure(plot_tv_l1_grid(panel, arrays["images"], meta["class_names"]), snakemake.output)


run_script(snakemake, main)
