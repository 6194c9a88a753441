# Input functions, settings and targets of the anomaly stage (its rules: anomaly.smk).

ANOMALY = config["anomaly"]


def anomaly_models():
    return models_of("anomaly")


def anomaly_normal_classes(wildcards):
    """anomaly.normal_classes, else the classes the model was trained on (train.classes: the
    one-class protocol), else null (the job then looks for classes named normal and anomaly).
    """
    if ANOMALY["normal_classes"] is not None:
        return ANOMALY["normal_classes"]
    return (MODELS[wildcards.model].get("train") or {}).get("classes")


def anomaly_normal_attributes(wildcards):
    """anomaly.normal_attributes, else the attribute values the model was trained on
    (train.attributes), else null (classes alone say which samples are normal)."""
    if ANOMALY["normal_attributes"] is not None:
        return ANOMALY["normal_attributes"]
    return (MODELS[wildcards.model].get("train") or {}).get("attributes")


def anomaly_validation(wildcards):
    """What says which training samples the model's training held out for validation (the
    thresholds' reference): its train.classes and attributes, validation_fraction and
    max_train_samples; None for
    a model trained elsewhere."""
    spec = MODELS[wildcards.model]
    if spec.get("source") or "train" not in spec:
        return None
    train = spec["train"]
    validation = {
        "classes": train.get("classes"),
        "validation_fraction": train["validation_fraction"],
        "max_train_samples": train.get("max_train_samples"),
    }
    if train.get(
        "attributes"
    ):  # only where set: other models' params stay as they were
        validation["attributes"] = train["attributes"]
    return validation


def anomaly_inputs(wildcards):
    """The dataset store, the model and its latents (for the baselines on latents); the attribute
    table where attribute values say which samples are normal or were trained on."""
    inputs = {
        "data": dataset_store(wildcards.dataset),
        "model": f"results/{wildcards.dataset}/{wildcards.model}/model.pt",
        "latents": f"results/{wildcards.dataset}/{wildcards.model}/latents.parquet",
    }
    if anomaly_normal_attributes(wildcards) or (
        anomaly_validation(wildcards) or {}
    ).get("attributes"):
        inputs["attributes"] = f"results/data/{wildcards.dataset}/attributes.parquet"
    return inputs


def anomaly_figure(what):
    """A figure output of rule plot_anomaly, in every format, with its report caption."""
    return figure_output(
        f"results/figures/{{dataset}}/{{model}}/anomaly_{what}",
        f"anomaly_{what}",
        "Anomaly scores",
    )


@register_targets
def anomaly_targets():
    """Each anomaly model's tables and figures."""
    out = []
    for model in anomaly_models():
        out += outputs(
            rules.plot_anomaly, dataset=MODELS[model]["dataset"], model=model
        )
    return out
