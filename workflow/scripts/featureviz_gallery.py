"""Figure set 5: gallery of one hidden layer's units (rule featureviz_gallery, one job per layer)."""

from latent_atlas import featureviz as fv
from latent_atlas.models import load_model
from latent_atlas.runtime import run_script


def main():
    model = fv.prepare_model(load_model(snakemake.input.model))
    opt = fv.optimiser_from_config(snakemake.params.optimiser, snakemake.config["seed"])
    settings = {k: v for k, v in snakemake.params.settings.items() if k != "layers"}
    table, images = fv.gallery(model, fv.class_names_of(model), opt,
                               layer=int(snakemake.wildcards.layer), **settings)
    fv.save_result(table, images, snakemake.output.table, snakemake.output.images,
                   metadata=fv.result_metadata(model, snakemake))


run_script(snakemake, main)
