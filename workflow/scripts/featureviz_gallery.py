"""Figure set 5: gallery of one hidden layer's units (rule featureviz_gallery, one job per layer)."""

import numpy as np

from latent_atlas import featureviz as fv
from latent_atlas.data import load_dataset
from latent_atlas.models import load_model
from latent_atlas.runtime import run_script


def main():
    model = fv.prepare_model(load_model(snakemake.input.model))
    opt = fv.optimiser_from_config(snakemake.params.optimiser, snakemake.config["seed"])
    settings = {k: v for k, v in snakemake.params.settings.items() if k not in ("layers", "start_images")}
    n_real = snakemake.params.settings["start_images"]
    real = real_ids = None
    if settings["start"] == "auto" and n_real > 0:  # real test images to fall back on (auto_starts)
        test = load_dataset(snakemake.input.data).test()
        rows = np.sort(np.random.default_rng(snakemake.config["seed"]).permutation(len(test.images))[:n_real])
        real, real_ids = test.images[rows], test.sample_id[rows]
    table, images = fv.gallery(model, fv.class_names_of(model), opt, layer=int(snakemake.wildcards.layer),
                               images=real, image_ids=real_ids, **settings)
    fv.save_result(table, images, snakemake.output.table, snakemake.output.images,
                   metadata=fv.result_metadata(model, snakemake))


run_script(snakemake, main)
