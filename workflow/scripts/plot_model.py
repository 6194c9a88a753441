"""A model's figures (rules plot_model_autoencoder, plot_model_classifier): loss (and accuracy) per
epoch from train_log.tsv; originals, reconstructions and absolute errors (autoencoders) or the
row-normalised confusion matrix of the test split (classifiers)."""

import pandas as pd

from latent_atlas.io import read_npz, read_parquet, read_parquet_metadata
from latent_atlas.model_figures import plot_confusion_matrix, plot_reconstructions, plot_training_curves
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import run_script


def main():
    i, o, model = snakemake.input, snakemake.output, snakemake.wildcards.model
    table = pd.read_csv(i.train_log, sep="\t")
    save_figure(plot_training_curves(table, title=model), o.training_curves)
    if "reconstructions" in o.keys():
        r = read_npz(i.reconstructions)
        save_figure(plot_reconstructions(r["original"], r["reconstruction"], r["label"], list(r["class_names"]),
                                         title=model), o.reconstructions)
    if "confusion_matrix" in o.keys():
        df = read_parquet(i.predictions, columns=["split", "label", "pred"])
        test = df[df["split"] == "test"]
        class_names = read_parquet_metadata(i.predictions)["class_names"]
        save_figure(plot_confusion_matrix(test["label"].to_numpy(), test["pred"].to_numpy(), class_names,
                                          title=f"{model}, test split"), o.confusion_matrix)


run_script(snakemake, main)
