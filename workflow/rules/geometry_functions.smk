# Input functions, settings and targets of the geometry stage (its rules: geometry.smk).

GEOMETRY = config["geometry"]


GEOMETRY_TABLES = [
    "axis_density",
    "axis_summary",
    "radius_histogram",
    "radius_summary",
    "pca_variance",
    "pca_loadings",
    "pca_scores",
    "planes",
    "zoom",
    "neighbours",
    "intrinsic_dimension",
    "summary",
]


def geometry_models():
    return models_of("geometry")


def geometry_autoencoders():
    return [
        m for m in geometry_models() if model_kind(MODELS[m]["arch"]) == "autoencoder"
    ]


def geometry_spaces():
    """Projection inputs: "raw" latents and "pca<k>" for each configured k."""
    proj = GEOMETRY["projections"]
    raw = ["raw"] if proj["raw"] else []
    return raw + [f"pca{k}" for k in proj["pca_components"]]


def geometry_grid(method):
    """(space, sample size) of every projection of `method` ("tsne" or "umap")."""
    sizes = GEOMETRY["projections"][method]["sample_sizes"]
    return [(space, n) for n in sizes for space in geometry_spaces()]


def projection_files(method, d):
    return [
        f"{d}/geometry/{method}_{space}_n{n}.parquet"
        for space, n in geometry_grid(method)
    ]


def geometry_methods():
    """The projection methods with at least one configured map."""
    return [method for method in ("tsne", "umap") if geometry_grid(method)]


def geometry_figure(what, caption=None):
    """A figure output of a geometry plot rule, in every format, with its report caption."""
    return figure_output(
        f"results/figures/{{dataset}}/{{model}}/geometry_{what}",
        f"geometry_{caption or what}",
        "Latent geometry",
    )


def geometry_plot_inputs(wildcards):
    """What plot_geometry draws from: the geometry tables and every projection map."""
    d = f"results/{wildcards.dataset}/{wildcards.model}"
    out = {t: f"{d}/geometry/{t}.parquet" for t in GEOMETRY_TABLES}
    for method in geometry_methods():
        for i, path in enumerate(projection_files(method, d)):
            out[f"{method}_{i}"] = path
    return out


def geometry_classifier(wildcards):
    """Path of the classifier that scores decoded images (random_points.classifier), or []."""
    name = GEOMETRY["random_points"]["classifier"]
    if name is None:
        return []
    if name not in MODELS or model_kind(MODELS[name]["arch"]) != "classifier":
        raise WorkflowError(
            f"geometry.random_points.classifier: {name!r} is not a configured classifier model"
        )
    if MODELS[name]["dataset"] != wildcards.dataset:
        return []  # a classifier of another dataset cannot judge these images
    return [f"{model_dir(name)}/model.pt"]


def geometry_compare_inputs(wildcards):
    """The tables of every geometry model on this dataset."""
    names = [m for m in geometry_models() if MODELS[m]["dataset"] == wildcards.dataset]
    return {
        f"{m}:{t}": f"{model_dir(m)}/geometry/{t}.parquet"
        for m in names
        for t in GEOMETRY_TABLES
    }


def model_regex(names):
    return "|".join(names) if names else "(?!x)x"


@register_targets
def geometry_targets():
    out = []
    for m in geometry_models():
        d = model_dir(m)
        fd = d.replace("results/", "results/figures/", 1)
        out += [f"{d}/geometry/{t}.parquet" for t in GEOMETRY_TABLES]
        whats = ["axes", "radius", "pca", "planes", "neighbours"]
        for method in geometry_methods():
            out += projection_files(method, d)
            whats.append(method)
        if m in geometry_autoencoders():
            out.append(f"{d}/geometry/random_points.parquet")
            whats.append("random_points")
        for what in whats:
            out += figure_paths(f"{fd}/geometry_{what}")
    for dataset in sorted({MODELS[m]["dataset"] for m in geometry_models()}):
        out.append(f"results/{dataset}/geometry_compare.parquet")
        out += figure_paths(f"results/figures/{dataset}/geometry_compare")
    return out
