"""2-D latents of the test split coloured by class (rule plot_latent_scatter)."""

from latent_atlas.latents import class_names_of, read_latents
from latent_atlas.model_figures import plot_latent_scatter
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    df, z = read_latents(snakemake.input[0])
    test = (df["split"] == "test").to_numpy()
    fig = plot_latent_scatter(z[test], df["label"].to_numpy()[test], class_names_of(df),
                              title=f"{snakemake.wildcards.model}: latents of the test split")
    save_figure(fig, snakemake.output)


run_script(snakemake, main)
