# Input functions, settings and targets of the attributes stage (its rules: attributes.smk).

ATTRIBUTES = config["attributes"]


def attribute_models():
    return models_of("attributes")


def attribute_datasets():
    return list(dict.fromkeys(MODELS[m]["dataset"] for m in attribute_models()))


def attribute_decodes(wildcards):
    """Whether the model's decoder draws the traversals (else the nearest real images do)."""
    return "decoder" in model_offers(MODELS[wildcards.model])


def attribute_traversal_settings():
    """attributes.traversal but `arithmetic` (its own param: the walks do not depend on it)."""
    return {k: v for k, v in ATTRIBUTES["traversal"].items() if k != "arithmetic"}


def attribute_traversal_inputs(wildcards):
    """The latents, attributes, probes and directions, the dataset store, and the model where it
    decodes."""
    out = {
        "latents": f"results/{wildcards.dataset}/{wildcards.model}/latents.parquet",
        "attributes": rules.dataset_attributes.output[0].format(
            dataset=wildcards.dataset
        ),
        "probes": rules.attribute_probes.output.probes.format(**wildcards),
        "directions": rules.attribute_probes.output.directions.format(**wildcards),
        "data": dataset_store(wildcards.dataset),
    }
    if attribute_decodes(wildcards):
        out["model"] = f"results/{wildcards.dataset}/{wildcards.model}/model.pt"
    return out


def attribute_score_inputs(wildcards):
    """The scores of every attributes model of the dataset, in attributes.models order."""
    return [
        rules.disentanglement.output.scores.format(dataset=wildcards.dataset, model=m)
        for m in attribute_models()
        if MODELS[m]["dataset"] == wildcards.dataset
    ]


def attribute_figure(what):
    """A figure output of rule plot_attributes, in every format, with its report caption."""
    return figure_output(
        f"results/figures/{{dataset}}/{{model}}/attributes_{what}",
        f"attributes_{what}",
        "Attributes",
    )


def attribute_dataset_figure(what):
    return figure_output(
        f"results/figures/{{dataset}}/attributes_{what}",
        f"attributes_{what}",
        "Attributes",
    )


@register_targets
def attribute_targets():
    """Each attributes model's figures, and each dataset's scores table and figure."""
    out = []
    for model in attribute_models():
        out += outputs(
            rules.plot_attributes, dataset=MODELS[model]["dataset"], model=model
        )
    for dataset in attribute_datasets():
        out += outputs(rules.attribute_scores, dataset=dataset)
        out += outputs(rules.plot_attribute_scores, dataset=dataset)
    return out
