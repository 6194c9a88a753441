# Stage 2: train each configured model; write its latents (all models), predictions and hidden
# layers (classifiers) or reconstructions (autoencoders); draw the figures of training.


include: "models_functions.smk"


rule train:
    input:
        "results/data/{dataset}.npz",
    output:
        model="results/{dataset}/{model}/model.pt",
        metrics="results/{dataset}/{model}/metrics.json",
        train_log="results/{dataset}/{model}/train_log.tsv",
    log:
        "results/logs/train/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
    params:
        spec=model_spec,
        # not an output: Snakemake must keep it when a job fails, so a rerun resumes from it
        checkpoint_dir="results/{dataset}/{model}/checkpoints",
    script:
        "../scripts/train.py"


rule extract_latents:
    input:
        data="results/data/{dataset}.npz",
        model="results/{dataset}/{model}/model.pt",
    output:
        latents="results/{dataset}/{model}/latents.parquet",
    log:
        "results/logs/extract_latents/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/extract_latents/{dataset}/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        extract=model_extract,
        config_hash=model_config_hash,
    script:
        "../scripts/extract_latents.py"


rule extract_predictions:
    input:
        data="results/data/{dataset}.npz",
        model="results/{dataset}/{model}/model.pt",
    output:
        predictions="results/{dataset}/{model}/predictions.parquet",
    log:
        "results/logs/extract_predictions/{dataset}/{model}.log",
    wildcard_constraints:
        model=model_names("classifier"),
    conda:
        "../../envs/torch.yaml"
    params:
        extract=model_extract,
        config_hash=model_config_hash,
    script:
        "../scripts/extract_predictions.py"


rule extract_hidden:
    input:
        data="results/data/{dataset}.npz",
        model="results/{dataset}/{model}/model.pt",
    output:
        hidden="results/{dataset}/{model}/hidden.parquet",
    log:
        "results/logs/extract_hidden/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/extract_hidden/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=model_names("hidden"),
    conda:
        "../../envs/torch.yaml"
    params:
        extract=model_extract,
        config_hash=model_config_hash,
    script:
        "../scripts/extract_hidden.py"


rule extract_reconstructions:
    input:
        data="results/data/{dataset}.npz",
        model="results/{dataset}/{model}/model.pt",
    output:
        reconstructions="results/{dataset}/{model}/reconstructions.npz",
    log:
        "results/logs/extract_reconstructions/{dataset}/{model}.log",
    wildcard_constraints:
        model=model_names("autoencoder"),
    conda:
        "../../envs/torch.yaml"
    params:
        extract=model_extract,
    script:
        "../scripts/extract_reconstructions.py"


rule plot_training_curves:
    input:
        "results/{dataset}/{model}/train_log.tsv",
    output:
        report(
            fig("results/figures/{dataset}/{model}/model_training_curves"),
            caption="../report/model_training_curves.rst",
            category="Models",
            subcategory="{model}",
        ),
    log:
        "results/logs/plot_training_curves/{dataset}/{model}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_training_curves.py"


rule plot_reconstructions:
    input:
        "results/{dataset}/{model}/reconstructions.npz",
    output:
        report(
            fig("results/figures/{dataset}/{model}/model_reconstructions"),
            caption="../report/model_reconstructions.rst",
            category="Models",
            subcategory="{model}",
        ),
    log:
        "results/logs/plot_reconstructions/{dataset}/{model}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_reconstructions.py"


rule plot_confusion_matrix:
    input:
        "results/{dataset}/{model}/predictions.parquet",
    output:
        report(
            fig("results/figures/{dataset}/{model}/model_confusion_matrix"),
            caption="../report/model_confusion_matrix.rst",
            category="Models",
            subcategory="{model}",
        ),
    log:
        "results/logs/plot_confusion_matrix/{dataset}/{model}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_confusion_matrix.py"


rule plot_latent_scatter:
    input:
        "results/{dataset}/{model}/latents.parquet",
    output:
        report(
            fig("results/figures/{dataset}/{model}/model_latent_scatter"),
            caption="../report/model_latent_scatter.rst",
            category="Models",
            subcategory="{model}",
        ),
    log:
        "results/logs/plot_latent_scatter/{dataset}/{model}.log",
    wildcard_constraints:
        model=model_names("2d_latents"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_latent_scatter.py"


rule plot_first_layer_weights:
    input:
        "results/{dataset}/{model}/model.pt",
    output:
        report(
            fig("results/figures/{dataset}/{model}/model_first_layer_weights"),
            caption="../report/model_first_layer_weights.rst",
            category="Models",
            subcategory="{model}",
        ),
    log:
        "results/logs/plot_first_layer_weights/{dataset}/{model}.log",
    wildcard_constraints:
        model=model_names("dense"),
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/plot_first_layer_weights.py"
