# Input functions, settings and targets of the data stage (its rules: data.smk).


def dataset_spec(wildcards):
    return config["datasets"][wildcards.dataset]


@register_targets
def data_targets():
    """The example grid of every dataset a model uses (of every dataset when there are no models)."""
    used = {m["dataset"] for m in MODELS.values()} & set(
        config["datasets"]
    )  # not standalone tables
    datasets = sorted(used or config["datasets"])
    return outputs(rules.plot_dataset_examples, dataset=datasets)
