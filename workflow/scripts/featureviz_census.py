"""Figure set 6: dead neurons per layer (never active on the training split; can optimisation
activate them?) and co-activating neuron clusters (rule featureviz_census)."""

from latent_atlas import featureviz as fv
from latent_atlas.data import load_dataset
from latent_atlas.io import write_parquet
from latent_atlas.models import load_model
from latent_atlas.runtime import run_script


def main():
    model = fv.prepare_model(load_model(snakemake.input.model))
    opt = fv.optimiser_from_config(snakemake.params.optimiser, snakemake.config["seed"])
    data = load_dataset(snakemake.input.data)
    tables = fv.census_analysis(model, data.train().images, opt, **snakemake.params.settings)
    meta = fv.result_metadata(model, snakemake, data.class_names)
    for name, table in tables.items():
        write_parquet(table, snakemake.output[name], metadata=meta)


run_script(snakemake, main)
