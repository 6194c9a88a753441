# Stage 2: train each configured model (or load it, or its latents, from the user's files); write
# its latents (all models), predictions and hidden layers (classifiers) or reconstructions
# (autoencoders); draw the figures of training. The weights kept after the epochs of
# train.snapshots are models of their own, <model>@<epoch> (train_with_snapshots, snapshot_model).
# Job functions: latent_atlas/models/jobs.py; which models each rule runs for: model_rules.


include: "models_functions.smk"


rule train:
    input:
        rules.prepare_data.output,
        attributes=train_attributes,
    output:
        model="results/{dataset}/{model}/model.pt",
        metrics="results/{dataset}/{model}/metrics.json",
        train_log="results/{dataset}/{model}/train_log.tsv",
    log:
        "results/logs/train/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=rule_models("train"),
    priority: 5  # every analysis waits on it: start it early
    conda:
        "../../envs/torch.yaml"
    threads: config["numeric_threads"]
    resources:
        gpu=1,
    params:
        job="latent_atlas.models.jobs:train",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        arch=model_setting("arch"),
        arch_params=model_setting("params"),
        training=model_setting("train"),
        # not an output: Snakemake must keep it when a job fails, so a rerun resumes from it
        checkpoint_dir="results/{dataset}/{model}/checkpoints",
    script:
        "../scripts/run_job.py"


# Training that keeps the weights after the epochs `train.snapshots` lists, in a folder of records
# (checkpoint.snapshot_path) beside the model's files; otherwise rule train.
use rule train as train_with_snapshots with:
    output:
        model="results/{dataset}/{model}/model.pt",
        metrics="results/{dataset}/{model}/metrics.json",
        train_log="results/{dataset}/{model}/train_log.tsv",
        snapshots=directory("results/{dataset}/{model}/snapshots"),
    wildcard_constraints:
        model=rule_models("train_with_snapshots"),


# A training snapshot as a model of its own, results/{dataset}/<model>@<epoch>/model.pt: the
# record train_with_snapshots kept, copied (a file of the folder cannot be a rule's input). The
# extraction and analysis rules then take it as any model.
rule snapshot_model:
    input:
        snapshots=snapshot_source,
    output:
        model="results/{dataset}/{model}/model.pt",
    log:
        "results/logs/snapshot_model/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/snapshot_model/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=rule_models("snapshot_model"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.models.jobs:snapshot_model",
        epoch=snapshot_epoch,
    script:
        "../scripts/run_job.py"


# A model trained elsewhere (models.<name>.source: state_dict, torch_export, onnx) instead of
# training: its files are checked against the dataset and recorded in model.pt, which every later
# rule reads as it reads a trained model's.
rule import_model:
    input:
        unpack(model_source_files),
        data=rules.prepare_data.output,
    output:
        model="results/{dataset}/{model}/model.pt",
    log:
        "results/logs/import_model/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/import_model/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=rule_models("import_model"),
    priority: 5
    conda:
        "../../envs/torch.yaml"
    threads: config["numeric_threads"]
    params:
        job="latent_atlas.models.jobs:import_model",
        arch=model_setting("arch"),
        arch_params=model_setting("params"),
        kind=model_setting("kind"),
        source=model_setting("source"),
    script:
        "../scripts/run_job.py"


# A table of latents without a network (source.format: latents): matched to the dataset's samples
# and written as the model's latents.parquet, which the latents-only stages read.
rule import_latents:
    input:
        unpack(latents_table_inputs),
    output:
        latents="results/{dataset}/{model}/latents.parquet",
    log:
        "results/logs/import_latents/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/import_latents/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=rule_models("import_latents"),
    priority: 5
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.models.jobs:import_latents",
        source=model_setting("source"),
        config_hash=model_config_hash,
    script:
        "../scripts/run_job.py"


# Extraction: one job per model writes every file computed from it (one torch start, one load).
# No gpu resource: load_model puts the model on the CPU, and extraction runs where the model is.
rule extract_autoencoder:
    input:
        data=rules.prepare_data.output,
        model="results/{dataset}/{model}/model.pt",
    output:
        latents="results/{dataset}/{model}/latents.parquet",
        reconstructions="results/{dataset}/{model}/reconstructions.npz",
    log:
        "results/logs/extract/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/extract/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=rule_models("extract_autoencoder"),
    priority: 5  # every analysis waits on it: start it early
    conda:
        "../../envs/torch.yaml"
    threads: config["numeric_threads"]
    params:
        job="latent_atlas.models.jobs:extract_model",
        numeric_threads=config["numeric_threads"],
        settings=model_extract,
        config_hash=model_config_hash,
    script:
        "../scripts/run_job.py"


# Autoencoders loaded without a decoder: latents only.
use rule extract_autoencoder as extract_encoder with:
    output:
        latents="results/{dataset}/{model}/latents.parquet",
    wildcard_constraints:
        model=rule_models("extract_encoder"),


use rule extract_autoencoder as extract_classifier with:
    output:
        latents="results/{dataset}/{model}/latents.parquet",
        predictions="results/{dataset}/{model}/predictions.parquet",
    wildcard_constraints:
        model=rule_models("extract_classifier"),


use rule extract_autoencoder as extract_classifier_hidden with:
    output:
        latents="results/{dataset}/{model}/latents.parquet",
        predictions="results/{dataset}/{model}/predictions.parquet",
        hidden="results/{dataset}/{model}/hidden.parquet",
    wildcard_constraints:
        model=rule_models("extract_classifier_hidden"),


# The model's figures: training curves and reconstructions (autoencoders) or the confusion
# matrix (classifiers) in one job.
rule plot_model_autoencoder:
    input:
        train_log="results/{dataset}/{model}/train_log.tsv",
        reconstructions="results/{dataset}/{model}/reconstructions.npz",
    output:
        training_curves=model_figure("training_curves"),
        reconstructions=model_figure("reconstructions"),
    log:
        "results/logs/plot_model/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/plot_model/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=rule_models("plot_model_autoencoder"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.models.jobs:plot_model",
    script:
        "../scripts/run_job.py"


use rule plot_model_autoencoder as plot_model_classifier with:
    input:
        train_log="results/{dataset}/{model}/train_log.tsv",
        predictions="results/{dataset}/{model}/predictions.parquet",
    output:
        training_curves=model_figure("training_curves"),
        confusion_matrix=model_figure("confusion_matrix"),
    wildcard_constraints:
        model=rule_models("plot_model_classifier"),


rule plot_latent_scatter:
    input:
        "results/{dataset}/{model}/latents.parquet",
    output:
        latent_scatter=model_figure("latent_scatter"),
    log:
        "results/logs/plot_latent_scatter/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/plot_latent_scatter/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=rule_models("plot_latent_scatter"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.models.jobs:plot_latent_scatter",
    script:
        "../scripts/run_job.py"


rule plot_first_layer_weights:
    input:
        "results/{dataset}/{model}/model.pt",
    output:
        first_layer_weights=model_figure("first_layer_weights"),
    log:
        "results/logs/plot_first_layer_weights/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/plot_first_layer_weights/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=rule_models("plot_first_layer_weights"),
    conda:
        "../../envs/torch.yaml"
    threads: 1
    params:
        job="latent_atlas.models.jobs:plot_first_layer_weights",
    script:
        "../scripts/run_job.py"
