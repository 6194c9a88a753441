"""Figure set 1: unregularised images of every output neuron, without and with clipping
(rule featureviz_unregularised)."""

from latent_atlas import featureviz as fv
from latent_atlas.models import load_model
from latent_atlas.runtime import run_script


def main():
    model = fv.prepare_model(load_model(snakemake.input.model))
    opt = fv.optimiser_from_config(snakemake.params.optimiser, snakemake.config["seed"])
    table, images = fv.unregularised_outputs(model, fv.class_names_of(model), opt,
                                             **snakemake.params.settings)
    fv.save_result(table, images, snakemake.output.table, snakemake.output.images,
                   metadata=fv.result_metadata(model, snakemake))


run_script(snakemake, main)
