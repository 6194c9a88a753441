# Input functions, settings and targets of the models stage (its rules: models.smk).

import re


from latent_atlas.models.archs import arch_kind, extract_settings, is_dense, latent_size


def model_spec(wildcards):
    return MODELS[wildcards.model]


def is_classifier(model):
    return arch_kind(MODELS[model]["arch"]) == "classifier"


def model_config_hash(wildcards):
    """Hash of what a model's files depend on: its entry, its dataset's entry, seed, threads."""
    spec = MODELS[wildcards.model]
    return config_hash(
        {
            "model": spec,
            "dataset": config["datasets"][spec["dataset"]],
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
    classifier = is_classifier(model)
    hidden = classifier and extract_settings(spec)["hidden_layers"]
    runs = {
        "train": True,
        "extract_autoencoder": not classifier,
        "extract_classifier": classifier and not hidden,
        "extract_classifier_hidden": hidden,
        "plot_model_autoencoder": not classifier,
        "plot_model_classifier": classifier,
        "plot_latent_scatter": latent_size(spec["arch"], spec.get("params")) == 2,
        "plot_first_layer_weights": is_dense(spec["arch"]),
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
