# Input functions, settings and targets of the compare stage (its rules: compare.smk).

from latent_atlas.selection import selection_inputs, selection_params

COMPARE = config["compare"]
# The compared samples' selection file and its settings (compare.samples), where set: inputs and
# params of compare_pair and compare_maps (compare_maps' input is always its latents and these
# alone, not explain_maps' selection of explained samples).
COMPARE_SELECTION_INPUTS = selection_inputs(COMPARE)
COMPARE_SELECTION_PARAMS = selection_params(COMPARE, "compare")
COMPARE_PAIRS = rules_lib.compare_pairs(config)


def compare_pairs_of(dataset):
    """The compared pairs of one dataset, in compare_pairs' order."""
    return [
        (a, b)
        for a, b in COMPARE_PAIRS
        if MODELS[a.partition("@")[0]]["dataset"] == dataset
    ]


def compare_datasets():
    return list(
        dict.fromkeys(MODELS[a.partition("@")[0]]["dataset"] for a, _ in COMPARE_PAIRS)
    )


def compare_pair_files(dataset, name):
    """Output `name` of rule compare_pair for every pair of `dataset`."""
    return [
        getattr(rules.compare_pair.output, name).format(dataset=dataset, a=a, b=b)
        for a, b in compare_pairs_of(dataset)
    ]


def compare_table_inputs(wildcards):
    return compare_pair_files(wildcards.dataset, "measures")


def compare_maps_of(dataset, model):
    """A model's maps of the compared samples. They are explain's maps when explain maps the
    model with the same split and sample count and no named samples, and compare names no
    selection (the same job on the same samples with the same settings: byte for byte the same
    coordinates), else compare_maps'.
    """
    if (
        model in EXPLAIN["models"]
        and EXPLAIN["split"] == COMPARE["split"]
        and EXPLAIN["n_samples"] == COMPARE["max_samples"]
        and not EXPLAIN["samples"]["ids"]
        and not explained_inputs(EXPLAIN["samples"])
        and not COMPARE_SELECTION_PARAMS
    ):
        return rules.explain_maps.output.maps.format(dataset=dataset, model=model)
    return rules.compare_maps.output.maps.format(dataset=dataset, model=model)


def compare_plot_inputs(wildcards):
    """The table, each pair's per-point overlap, dimensions and A's maps, and the images."""
    out = {
        "table": rules.compare_table.output[0].format(dataset=wildcards.dataset),
        "data": dataset_store(wildcards.dataset),
    }
    for i, (a, _) in enumerate(compare_pairs_of(wildcards.dataset)):
        out[f"maps_{i}"] = compare_maps_of(wildcards.dataset, a.partition("@")[0])
    for name in ("points", "dimensions"):
        for i, path in enumerate(compare_pair_files(wildcards.dataset, name)):
            out[f"{name}_{i}"] = path
    return out


def compare_page_inputs(wildcards):
    """The table, each compared (base) model's maps and latents (rows of the page, in
    compared_models' order), each pair's per-point overlap, the images, and the dataset's
    disentanglement scores where the attributes stage scores its models."""
    dataset = wildcards.dataset
    out = {
        "table": rules.compare_table.output[0].format(dataset=dataset),
        "data": dataset_store(dataset),
    }
    models = rules_lib.compared_models(compare_pairs_of(dataset))
    for i, model in enumerate(models):
        out[f"maps_{i}"] = compare_maps_of(dataset, model)
        out[f"latents_{i}"] = f"results/{dataset}/{model}/latents.parquet"
    for i, path in enumerate(compare_pair_files(dataset, "points")):
        out[f"points_{i}"] = path
    if dataset in attribute_datasets():
        out["scores"] = rules.attribute_scores.output[0].format(dataset=dataset)
    return out


def compare_figure(what):
    """A figure output of rule plot_compare, in every format, with its report caption."""
    return figure_output(
        f"results/figures/{{dataset}}/compare_{what}",
        f"compare_{what}",
        "Compare latent spaces",
    )


def compare_optional_figures():
    """The training trajectory, drawn when some compared model takes snapshots."""
    return {"trajectory": compare_figure("trajectory")} if COMPARE["snapshots"] else {}


@register_targets
def compare_targets():
    """Each compared dataset's table, figures and comparison page."""
    return [
        path
        for dataset in compare_datasets()
        for rule in (rules.compare_table, rules.plot_compare, rules.compare_page)
        for path in outputs(rule, dataset=dataset)
    ]
