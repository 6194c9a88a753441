# Stage 1: datasets -> results/data/{dataset}.npz (+ a grid of example images per class).


include: "data_functions.smk"


rule prepare_data:
    output:
        "results/data/{dataset}.npz",
    log:
        "results/logs/prepare_data/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_data/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        spec=dataset_spec,
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
