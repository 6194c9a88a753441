"""Figure set 2: adversarial examples, real images of class a pushed to output b
(rule featureviz_adversarial)."""

from latent_atlas import featureviz as fv
from latent_atlas.data import load_dataset
from latent_atlas.io import write_parquet
from latent_atlas.models import load_model
from latent_atlas.runtime import run_script


def main():
    model = fv.prepare_model(load_model(snakemake.input.model))
    opt = fv.optimiser_from_config(snakemake.params.optimiser, snakemake.config["seed"])
    settings = dict(snakemake.params.settings)
    split = settings.pop("split")
    settings.pop("show")
    data = load_dataset(snakemake.input.data)
    part = data.subset(data.split == split)
    table, images = fv.adversarial_examples(model, part.images, part.labels, part.sample_id,
                                            data.class_names, opt, **settings)
    meta = fv.result_metadata(model, snakemake, data.class_names)
    fv.save_result(table, images, snakemake.output.table, snakemake.output.images, metadata=meta)
    write_parquet(fv.adversarial_success(table, data.class_names), snakemake.output.success,
                  metadata=meta)


run_script(snakemake, main)
