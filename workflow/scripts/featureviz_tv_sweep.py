"""Figure set 3: TV-weight sweep of output neurons, and the mean of the training images each
class claims with high confidence (rule featureviz_tv_sweep)."""

from latent_atlas import featureviz as fv
from latent_atlas.data import load_dataset
from latent_atlas.models import load_model
from latent_atlas.runtime import run_script


def main():
    model = fv.prepare_model(load_model(snakemake.input.model))
    opt = fv.optimiser_from_config(snakemake.params.optimiser, snakemake.config["seed"])
    settings = dict(snakemake.params.settings)
    confidence = settings.pop("confidence")
    data = load_dataset(snakemake.input.data)
    train = data.train()
    table, images = fv.tv_sweep(model, data.class_names, opt, **settings)
    probs = fv.class_probabilities(model, train.images)
    means, counts = fv.confident_class_means(probs, train.images, confidence)
    fv.save_result(table, images, snakemake.output.table, snakemake.output.images,
                   metadata={**fv.result_metadata(model, snakemake, data.class_names),
                             "confidence": confidence},
                   class_means=means, class_counts=counts)


run_script(snakemake, main)
