"""Row-normalised confusion matrix of the test split (rule plot_confusion_matrix)."""

from latent_atlas.io import read_parquet, read_parquet_metadata
from latent_atlas.model_figures import plot_confusion_matrix
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    df = read_parquet(snakemake.input[0], columns=["split", "label", "pred"])
    test = df[df["split"] == "test"]
    class_names = read_parquet_metadata(snakemake.input[0])["class_names"]
    fig = plot_confusion_matrix(test["label"].to_numpy(), test["pred"].to_numpy(), class_names,
                                title=f"{snakemake.wildcards.model}, test split")
    save_figure(fig, snakemake.output)


run_script(snakemake, main)
