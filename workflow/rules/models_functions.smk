# Input functions, settings and targets of the models stage (its rules: models.smk).

import re


from latent_atlas.config import source_files
from latent_atlas.models.archs import extract_settings


def model_setting(key):
    """A params function: the model entry's `key` (None when absent)."""
    return lambda wildcards: MODELS[wildcards.model].get(key)


def train_attributes(wildcards):
    """The dataset's attribute table where the model trains on chosen attribute values
    (train.attributes), else nothing."""
    if (MODELS[wildcards.model].get("train") or {}).get("attributes"):
        return f"results/data/{wildcards.dataset}/attributes.parquet"
    return []


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


def snapshot_source(wildcards):
    """The `snapshots` folder of a snapshot's model (rule train_with_snapshots)."""
    return expand(
        rules.train_with_snapshots.output.snapshots,
        dataset=wildcards.dataset,
        model=MODELS[wildcards.model]["snapshot"]["of"],
    )[0]


def snapshot_epoch(wildcards):
    return MODELS[wildcards.model]["snapshot"]["epoch"]


def model_config_hash(wildcards):
    return rules_lib.model_config_hash(config, wildcards.model)


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
    """Names of the stage's rules that run for `model` (latent_atlas.rules.model_rules)."""
    return rules_lib.model_rules(MODELS[model])


def rule_models(name):
    """Regex of the model names rule `name` runs for (its {model} wildcard constraint)."""
    names = [m for m in MODELS if name in model_rules(m)]
    return "|".join(re.escape(m) for m in names) if names else "(?!x)x"


@register_targets
def model_targets():
    """Every output of the stage's rules, for each model a rule runs for (a snapshot's files are
    made where a section names it)."""
    return [
        path
        for model, spec in config["models"].items()
        for name in model_rules(model)
        for path in outputs(getattr(rules, name), dataset=spec["dataset"], model=model)
    ]
