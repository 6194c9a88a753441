"""Every featureviz figure of one classifier (rule plot_featureviz), each from its table."""

from latent_atlas.featureviz_figures import (load_result, plot_adversarial_examples, plot_adversarial_success,
                                             plot_coactivation, plot_dead_neurons, plot_gallery, plot_tv_l1_grid,
                                             plot_tv_sweep, plot_unregularised)
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def result(name):
    return load_result(snakemake.input[f"{name}_table"], snakemake.input[f"{name}_images"])


def main():
    out = snakemake.output
    table, arrays, meta = result("unregularised")
    names = meta["class_names"]
    save_figure(plot_unregularised(table, arrays["images"], names), out.unregularised)

    table, arrays, _ = result("adversarial")
    save_figure(plot_adversarial_examples(table, arrays["images"], names, show=snakemake.params.show),
                out.adversarial)
    save_figure(plot_adversarial_success(read_parquet(snakemake.input.adversarial_success), names),
                out.adversarial_success)

    table, arrays, meta = result("tv_sweep")
    save_figure(plot_tv_sweep(table, arrays["images"], arrays["class_means"], arrays["class_counts"],
                              names, meta["confidence"]), out.tv_sweep)

    table, arrays, _ = result("tv_l1_grid")
    for panel in ("output", "hidden"):
        key = f"tv_l1_grid_{panel}"
        if key not in out.keys():
            continue
        rows = table[table["panel"] == panel]
        if rows.empty:
            raise ValueError(f"{snakemake.input.tv_l1_grid_table}: no {panel!r} grid; rerun rule "
                             "featureviz_tv_l1_grid (featureviz.tv_l1_grid.hidden_layer changed?)")
        save_figure(plot_tv_l1_grid(rows, arrays["images"], names), out[key])

    for key in out.keys():
        if key.startswith("gallery_layer"):
            table, arrays, _ = result(key)
            save_figure(plot_gallery(table, arrays["images"]), out[key])

    save_figure(plot_dead_neurons(read_parquet(snakemake.input.dead_summary)), out.dead_neurons)
    save_figure(plot_coactivation(read_parquet(snakemake.input.coactivation_matrix),
                                  read_parquet(snakemake.input.coactivation_clusters)), out.coactivation)


run_script(snakemake, main)
