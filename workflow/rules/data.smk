# Stage 1: datasets -> results/data/{dataset}.npz (+ a grid of example images per class).


def dataset_spec(wildcards):
    return config["datasets"][wildcards.dataset]


rule prepare_data:
    output:
        "results/data/{dataset}.npz",
    params:
        spec=dataset_spec,
    log:
        "results/logs/prepare_data/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_data/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/prepare_data.py"


rule plot_dataset_examples:
    input:
        "results/data/{dataset}.npz",
    output:
        report(
            fig("results/figures/data/{dataset}_examples"),
            caption="../report/dataset_examples.rst",
            category="Data",
        ),
    log:
        "results/logs/plot_dataset_examples/{dataset}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_dataset_examples.py"


@register_targets
def data_targets():
    return [
        path
        for dataset in sorted({m["dataset"] for m in MODELS.values()} or config["datasets"])
        for path in figure_paths(f"results/figures/data/{dataset}_examples")
    ]
