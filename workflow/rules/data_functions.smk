# Input functions, settings and targets of the data stage (its rules: data.smk).


def dataset_spec(wildcards):
    return config["datasets"][wildcards.dataset]


@register_targets
def data_targets():
    return [
        path
        for dataset in sorted(
            {m["dataset"] for m in MODELS.values()} or config["datasets"]
        )
        for path in figure_paths(f"results/figures/data/{dataset}_examples")
    ]
