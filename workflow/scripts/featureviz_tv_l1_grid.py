"""Figure set 4: TV x L1 grids of one output neuron and one hidden neuron
(rule featureviz_tv_l1_grid)."""

from latent_atlas import featureviz as fv
from latent_atlas.models import load_model
from latent_atlas.runtime import run_script


def main():
    model = fv.prepare_model(load_model(snakemake.input.model))
    opt = fv.optimiser_from_config(snakemake.params.optimiser, snakemake.config["seed"])
    table, images = fv.tv_l1_grids(model, fv.class_names_of(model), opt, **snakemake.params.settings)
    fv.save_result(table, images, snakemake.output.table, snakemake.output.images,
                   metadata=fv.result_metadata(model, snakemake))


run_script(snakemake, main)
