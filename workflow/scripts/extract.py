"""Everything computed from one trained model (rules extract_autoencoder, extract_classifier[_hidden]):
latents.parquet, and reconstructions.npz (autoencoders) or predictions.parquet and, if configured,
hidden.parquet (classifiers). The dataset and the model are loaded once."""

from latent_atlas.latents import write_hidden, write_latents, write_predictions, write_reconstructions
from latent_atlas.runtime import run_script


def main():
    i, o, model = snakemake.input, snakemake.output, snakemake.wildcards.model
    extract, config_hash = snakemake.params.extract, snakemake.params.config_hash
    batch_size = extract["batch_size"]
    write_latents(i.data, i.model, o.latents, model_name=model, config_hash=config_hash, batch_size=batch_size)
    if "reconstructions" in o.keys():
        write_reconstructions(i.data, i.model, o.reconstructions, per_class=extract["reconstructions_per_class"],
                              batch_size=batch_size)
    if "predictions" in o.keys():
        write_predictions(i.data, i.model, o.predictions, model_name=model, config_hash=config_hash,
                          batch_size=batch_size)
    if "hidden" in o.keys():
        write_hidden(i.data, i.model, o.hidden, model_name=model, config_hash=config_hash,
                     max_samples=extract["hidden_max_samples"], batch_size=batch_size)


run_script(snakemake, main)
