"""The figures of one model's geometry tables and projection maps (rule plot_geometry)."""

from latent_atlas.geometry import (plot_axis_density, plot_neighbours, plot_pca, plot_planes, plot_projections,
                                   plot_radius)
from latent_atlas.io import read_parquet
from latent_atlas.plotting import save_figure, use_style
from latent_atlas.runtime import run_script

METHODS = {"tsne": "t-SNE (openTSNE)", "umap": "UMAP"}


def main():
    use_style()
    i, o, model = snakemake.input, snakemake.output, snakemake.wildcards.model
    s = snakemake.params.axes
    save_figure(plot_axis_density(read_parquet(i.axis_density), read_parquet(i.axis_summary), s["show_alone"],
                                  s["selected"],
                                  title=f"{model}: density along each axis (bin width {s['bin_width']:g})"), o.axes)
    save_figure(plot_radius(read_parquet(i.radius_histogram), read_parquet(i.radius_summary),
                            title=f"{model}: radius |z|"), o.radius)
    save_figure(plot_pca(read_parquet(i.pca_variance), title=f"{model}: PCA of the latents"), o.pca)
    save_figure(plot_planes(read_parquet(i.planes), read_parquet(i.zoom), title=f"{model}: planes, zoomed"),
                o.planes)
    save_figure(plot_neighbours(read_parquet(i.neighbours), read_parquet(i.intrinsic_dimension),
                                title=f"{model}: neighbours and intrinsic dimension"), o.neighbours)
    for method, name in METHODS.items():
        if method in o.keys():
            tables = [read_parquet(i[key]) for key in i.keys() if key.startswith(f"{method}_")]
            save_figure(plot_projections(tables, title=f"{model}: {name}"), o[method])


run_script(snakemake, main)
