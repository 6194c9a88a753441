# Input functions, settings and targets of the models stage (its rules: models.smk).

import re


from latent_atlas.config import source_files
from latent_atlas.models.archs import extract_settings, is_dense, model_latent_size


def model_spec(wildcards):
    return MODELS[wildcards.model]


def is_classifier(model):
    return model_kind(MODELS[model]) == "classifier"


def model_source_files(wildcards):
    """{source key: path} of the user's files a loaded model or latents table is read from."""
    return source_files(MODELS[wildcards.model])


def latents_table_inputs(wildcards):
    """The latents table, and the dataset it is matched to (none for a standalone table)."""
    spec = MODELS[wildcards.model]
    out = {"table": spec["source"]["table"]}
    if spec["source"].get("match", "sample_id") != "standalone":
        out["data"] = dataset_store(spec["dataset"])
    return out


def model_config_hash(wildcards):
    """Hash of what a model's files depend on: its entry, its dataset's entry, seed, threads."""
    spec = MODELS[wildcards.model]
    return config_hash(
        {
            "model": spec,
            "dataset": config["datasets"].get(spec["dataset"]),
            "seed": config["seed"],
            "numeric_threads": config["numeric_threads"],
        }
    )


def model_extract(wildcards):
    return extract_settings(MODELS[wildcards.model])


def model_figure(what):
    """A figure output of a model plot rule, in every format, with its report caption."""
    return figure_output(
        f"results/figures/{{dataset}}/{{model}}/model_{what}",
        f"model_{what}",
        "Models",
        "{model}",
    )


def model_rules(model):
    """Names of the stage's rules that run for `model`: the rules' {model} wildcard constraints
    (`rule_models`) and the stage's targets both come from here."""
    spec = MODELS[model]
    source, kind, offers = model_source(spec), model_kind(spec), model_offers(spec)
    trained, network = source == "train", "network" in offers
    classifier = kind == "classifier"
    hidden = classifier and extract_settings(spec)["hidden_layers"]
    decodes = "decoder" in offers
    runs = {
        "train": trained,
        "import_model": network and not trained,
        "import_latents": not network,
        "extract_autoencoder": kind == "autoencoder" and decodes,
        "extract_encoder": kind == "autoencoder" and not decodes,
        "extract_classifier": classifier and not hidden,
        "extract_classifier_hidden": hidden,
        "plot_model_autoencoder": kind == "autoencoder" and trained,
        "plot_model_classifier": classifier and trained,
        "plot_latent_scatter": model_latent_size(spec) == 2,
        "plot_first_layer_weights": bool(spec.get("arch")) and is_dense(spec["arch"]),
    }
    return [name for name, yes in runs.items() if yes]


def rule_models(name):
    """Regex of the model names rule `name` runs for (its {model} wildcard constraint)."""
    names = [m for m in MODELS if name in model_rules(m)]
    return "|".join(re.escape(m) for m in names) if names else "(?!x)x"


@register_targets
def model_targets():
    """Every output of the stage's rules, for each model a rule runs for."""
    return [
        path
        for model, spec in MODELS.items()
        for name in model_rules(model)
        for path in outputs(getattr(rules, name), dataset=spec["dataset"], model=model)
    ]
