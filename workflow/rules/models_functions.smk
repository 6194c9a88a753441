# Input functions, settings and targets of the models stage (its rules: models.smk).

import re


from latent_atlas.archs import extract_settings, is_dense, latent_size


def model_spec(wildcards):
    return MODELS[wildcards.model]


def is_classifier(model):
    return model_kind(MODELS[model]["arch"]) == "classifier"


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


def _model_has(model, what):
    spec = MODELS[model]
    return {
        "classifier": is_classifier(model),
        "autoencoder": not is_classifier(model),
        "hidden": is_classifier(model) and extract_settings(spec)["hidden_layers"],
        "classifier_only": is_classifier(model)
        and not extract_settings(spec)["hidden_layers"],
        "2d_latents": latent_size(spec["arch"], spec.get("params")) == 2,
        "dense": is_dense(spec["arch"]),
    }[what]


def model_names(what):
    """Regex of the model names that have `what` (a rule's {model} wildcard constraint)."""
    names = [m for m in MODELS if _model_has(m, what)]
    return "|".join(re.escape(m) for m in names) if names else "(?!x)x"


@register_targets
def model_targets():
    out = []
    for model in MODELS:
        d = model_dir(model)
        figs = f"results/figures/{MODELS[model]['dataset']}/{model}"
        out += [f"{d}/metrics.json", f"{d}/latents.parquet"]
        out += figure_paths(f"{figs}/model_training_curves")
        if _model_has(model, "classifier"):
            out.append(f"{d}/predictions.parquet")
            out += figure_paths(f"{figs}/model_confusion_matrix")
        if _model_has(model, "hidden"):
            out.append(f"{d}/hidden.parquet")
        if _model_has(model, "autoencoder"):
            out.append(f"{d}/reconstructions.npz")
            out += figure_paths(f"{figs}/model_reconstructions")
        if _model_has(model, "2d_latents"):
            out += figure_paths(f"{figs}/model_latent_scatter")
        if _model_has(model, "dense"):
            out += figure_paths(f"{figs}/model_first_layer_weights")
    return out
