# Stage 1: datasets -> the dataset store results/data/{dataset}/ (images.npy, samples.parquet;
# later rules take both as input `rules.prepare_data.output`) + a grid of example images per class;
# the attribute table attributes.parquet (dataset_attributes: read from the source's tables, no
# image decoded) where a stage needs it.


include: "data_functions.smk"


rule prepare_data:
    output:
        images="results/data/{dataset}/images.npy",
        samples="results/data/{dataset}/samples.parquet",
    log:
        "results/logs/prepare_data/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_data/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["numeric_threads"]
    params:
        job="latent_atlas.data.jobs:prepare_data",
        seed=config["seed"],
        spec=dataset_spec,
    script:
        "../scripts/run_job.py"


rule dataset_attributes:
    input:
        samples=rules.prepare_data.output.samples,
        table=dataset_attribute_table,
    output:
        "results/data/{dataset}/attributes.parquet",
    log:
        "results/logs/dataset_attributes/{dataset}.log",
    benchmark:
        "results/benchmarks/dataset_attributes/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    params:
        job="latent_atlas.data.jobs:dataset_attributes",
        seed=config["seed"],
        spec=dataset_attribute_spec,
    script:
        "../scripts/run_job.py"


rule plot_dataset_examples:
    input:
        rules.prepare_data.output,
    output:
        figure_output(
            "results/figures/data/{dataset}_examples", "dataset_examples", "Data"
        ),
    log:
        "results/logs/plot_dataset_examples/{dataset}.log",
    benchmark:
        "results/benchmarks/plot_dataset_examples/{dataset}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.data.jobs:plot_dataset_examples",
        seed=config["seed"],
    script:
        "../scripts/run_job.py"
