# Input functions, settings and targets of the data stage (its rules: data.smk).


def dataset_spec(wildcards):
    """The dataset's entry but `attributes` (the attribute table's alone: dataset_attributes)."""
    spec = config["datasets"][wildcards.dataset]
    return {key: value for key, value in spec.items() if key != "attributes"}


def dataset_attribute_spec(wildcards):
    """The dataset's whole entry: it selects the samples, and names the attribute table."""
    return config["datasets"][wildcards.dataset]


def dataset_attribute_table(wildcards):
    """The user's attribute table of the dataset (`datasets.<name>.attributes.file`), if any."""
    own = config["datasets"][wildcards.dataset].get("attributes")
    return [own["file"]] if own else []


@register_targets
def data_targets():
    """The example grid of every dataset a model uses (of every dataset when there are no models)."""
    used = {m["dataset"] for m in MODELS.values()} & set(
        config["datasets"]
    )  # not standalone tables
    datasets = sorted(used or config["datasets"])
    return outputs(rules.plot_dataset_examples, dataset=datasets)


def dataset_store(dataset):
    """The two files of dataset `dataset`'s store (rule prepare_data), for input functions; rules
    whose dataset is a wildcard take `rules.prepare_data.output`."""
    return [
        f"results/data/{dataset}/images.npy",
        f"results/data/{dataset}/samples.parquet",
    ]
