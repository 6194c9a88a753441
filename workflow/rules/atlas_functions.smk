# Input functions, settings and targets of the atlas stage (its rules: atlas.smk).

import os

ATLAS = config["atlas"]


def atlas_models():
    """`atlas.models`, or every model the explain or geometry section names (in that order)."""
    if ATLAS.get("models") is not None:
        return list(ATLAS["models"])
    names = models_of("explain") + models_of("geometry")
    return [
        m for m in dict.fromkeys(names) if section_refusal("atlas", MODELS[m]) is None
    ]


def atlas_own_maps():
    """Models whose atlas maps its own samples (with atlas_maps); all of them when
    `atlas.n_samples` is set, else those the explain stage does not map."""
    if ATLAS["n_samples"] is not None:
        return atlas_models()
    return [m for m in atlas_models() if m not in models_of("explain")]


def atlas_maps_dir(wildcards):
    """Where the atlas's maps and their quality table are: its own, or the explain stage's."""
    stage = "atlas" if wildcards.model in atlas_own_maps() else "explain"
    return f"results/{wildcards.dataset}/{wildcards.model}/{stage}"


def atlas_quality_table(wildcards):
    return f"{atlas_maps_dir(wildcards)}/quality.parquet"


def atlas_points_inputs(wildcards):
    """Latents and maps, and the predictions (classifiers) or model and images (autoencoders)."""
    base = f"results/{wildcards.dataset}/{wildcards.model}"
    files = {
        "latents": f"{base}/latents.parquet",
        "maps": f"{atlas_maps_dir(wildcards)}/maps.parquet",
    }
    spec = MODELS[wildcards.model]
    kind, offers = model_kind(spec), model_offers(spec)
    if kind == "classifier" and "head" in offers:
        files["predictions"] = f"{base}/predictions.parquet"
    elif kind == "autoencoder" and "decoder" in offers:
        files.update(model=f"{base}/model.pt", data=dataset_store(wildcards.dataset))
    return files


# Sources whose samples carry attributes of their own (data.sources: Source.attributes).
ATTRIBUTE_SOURCES = ("celeba", "synthetic_factors", "audio_digits")


def atlas_has_attributes(wildcards):
    """Whether the page colours by the dataset's attributes: the model is in the attributes stage,
    or its dataset has attributes besides the class (a source's own, or a configured table).
    """
    spec = config["datasets"][wildcards.dataset]
    celeba = spec["source"] == "torchvision" and spec.get("name") == "CelebA"
    return (
        wildcards.model in models_of("attributes")
        or spec["source"] in ATTRIBUTE_SOURCES
        or celeba
        or bool(spec.get("attributes"))
    )


def atlas_page_inputs(wildcards):
    """The per-point table, the maps' quality, the latents, the dataset store, the attribute
    table where the page colours by attributes (atlas_has_attributes), and the anomaly scores
    where the model is in the anomaly stage."""
    base = f"results/{wildcards.dataset}/{wildcards.model}"
    out = {
        "points": f"{base}/atlas/points.parquet",
        "quality": atlas_quality_table(wildcards),
        "latents": f"{base}/latents.parquet",
        "data": dataset_store(wildcards.dataset),
    }
    if atlas_has_attributes(wildcards):
        out["attributes"] = rules.dataset_attributes.output[0].format(
            dataset=wildcards.dataset
        )
    if wildcards.model in models_of("anomaly"):
        out["anomaly"] = rules.anomaly_scores.output.scores.format(**wildcards)
    return out


def atlas_importance_link(wildcards):
    """Relative link from the atlas page to the model's importance explorer, or "" if none."""
    if wildcards.model not in models_of("importance"):
        return ""
    page = f"results/{wildcards.dataset}/{wildcards.model}/importance/explorer.html"
    return os.path.relpath(
        page, f"results/figures/{wildcards.dataset}/{wildcards.model}"
    )


@register_targets
def atlas_targets():
    """Each atlas model's page and per-point table."""
    return [
        path
        for model in atlas_models()
        for rule in (rules.atlas_points, rules.atlas)
        for path in outputs(rule, dataset=MODELS[model]["dataset"], model=model)
    ]
