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


def geometry_settings(section, *keys):
    """The `keys` of `geometry.<section>` (the part of the section a rule reads)."""
    return {key: GEOMETRY[section][key] for key in keys}


def projection_settings(method):
    """The settings of one t-SNE or UMAP map: `geometry.projections.<method>` but `sample_sizes`
    (which maps exist, not how one is made: adding a size must not rerun the other maps).
    """
    settings = GEOMETRY["projections"][method]
    return {key: value for key, value in settings.items() if key != "sample_sizes"}


def geometry_models():
    return models_of("geometry")


def geometry_autoencoders():
    """The geometry models whose random points can be decoded."""
    return [m for m in geometry_models() if "decoder" in model_offers(MODELS[m])]


def geometry_spaces():
    """Projection inputs: "raw" latents and "pca<k>" for each configured k."""
    proj = GEOMETRY["projections"]
    raw = ["raw"] if proj["raw"] else []
    return raw + [f"pca{k}" for k in proj["pca_components"]]


def geometry_grid(method):
    """(space, sample size) of every projection of `method` ("tsne" or "umap")."""
    sizes = GEOMETRY["projections"][method]["sample_sizes"]
    return [(space, n) for n in sizes for space in geometry_spaces()]


def geometry_maps(method, dataset, model):
    """The map tables of `method` of one model, in `geometry_grid(method)` order."""
    if method == "umap":
        return outputs(rules.geometry_umap, dataset=dataset, model=model)
    return [
        path
        for space, n in geometry_grid(method)
        for path in outputs(
            rules.geometry_tsne, dataset=dataset, model=model, space=space, n=n
        )
    ]


def geometry_table_files(dataset, model):
    """{table name: path} of the geometry tables of one model."""
    return dict(
        zip(
            GEOMETRY_TABLES,
            outputs(rules.geometry_tables, dataset=dataset, model=model),
        )
    )


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
    out = geometry_table_files(wildcards.dataset, wildcards.model)
    for method in geometry_methods():
        maps = geometry_maps(method, wildcards.dataset, wildcards.model)
        for i, path in enumerate(maps):
            out[f"{method}_{i}"] = path
    return out


def geometry_classifier_name(wildcards):
    """The classifier that scores decoded images (random_points.classifier, checked by
    check_config), or None: none is set, or it belongs to another dataset, whose images it cannot
    judge."""
    name = GEOMETRY["random_points"]["classifier"]
    if name is None or MODELS[name]["dataset"] != wildcards.dataset:
        return None
    return name


def geometry_classifier(wildcards):
    """Path of the classifier that scores decoded images, or []."""
    name = geometry_classifier_name(wildcards)
    return [] if name is None else [f"{model_dir(name)}/model.pt"]


def geometry_compare_inputs(wildcards):
    """The tables of every geometry model on this dataset."""
    names = [m for m in geometry_models() if MODELS[m]["dataset"] == wildcards.dataset]
    return {
        f"{m}:{t}": path
        for m in names
        for t, path in geometry_table_files(wildcards.dataset, m).items()
    }


def model_regex(names):
    """A wildcard constraint matching exactly `names` (none: a pattern that matches nothing)."""
    return "|".join(names) if names else "(?!x)x"


@register_targets
def geometry_targets():
    """Every geometry table, map and figure, from the outputs of the stage's rules."""
    out = []
    for m in geometry_models():
        dataset = MODELS[m]["dataset"]
        out += outputs(rules.geometry_tables, dataset=dataset, model=m)
        for method in geometry_methods():
            out += geometry_maps(method, dataset, m)
        out += outputs(rules.plot_geometry, dataset=dataset, model=m)
        if m in geometry_autoencoders():
            out += outputs(rules.geometry_random_points, dataset=dataset, model=m)
            out += outputs(rules.plot_geometry_random_points, dataset=dataset, model=m)
    for dataset in sorted({MODELS[m]["dataset"] for m in geometry_models()}):
        out += outputs(rules.geometry_compare, dataset=dataset)
    return out
