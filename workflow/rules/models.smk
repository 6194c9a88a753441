# Stage 2: train each configured model; write its latents (all models), predictions and hidden
# layers (classifiers) or reconstructions (autoencoders); draw the figures of training.

import re

from latent_atlas.archs import extract_settings, is_dense, latent_size


def model_spec(wildcards):
    return MODELS[wildcards.model]


def is_classifier(model):
    return model_kind(MODELS[model]["arch"]) == "classifier"


def model_config_hash(wildcards):
    """Hash of what a model's files depend on: its entry, its dataset's entry, seed, threads."""
    spec = MODELS[wildcards.model]
    return config_hash(
        {
            "model": spec,
            "dataset": config["datasets"][spec["dataset"]],
            "seed": config["seed"],
            "numeric_threads": config["numeric_threads"],
        }
    )


def model_extract(wildcards):
    return extract_settings(MODELS[wildcards.model])


def _model_has(model, what):
    spec = MODELS[model]
    return {
        "classifier": is_classifier(model),
        "autoencoder": not is_classifier(model),
        "hidden": is_classifier(model) and extract_settings(spec)["hidden_layers"],
        "2d_latents": latent_size(spec["arch"], spec.get("params")) == 2,
        "dense": is_dense(spec["arch"]),
    }[what]


def model_names(what):
    """Regex of the model names that have `what` (a rule's {model} wildcard constraint)."""
    names = [m for m in MODELS if _model_has(m, what)]
    return "|".join(re.escape(m) for m in names) if names else "(?!x)x"


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


@register_targets
def model_targets():
    out = []
    for model in MODELS:
        d = model_dir(model)
        figs = f"results/figures/{MODELS[model]['dataset']}/{model}"
        out += [f"{d}/metrics.json", f"{d}/latents.parquet"]
        out += figure_paths(f"{figs}/model_training_curves")
        if _model_has(model, "classifier"):
            out.append(f"{d}/predictions.parquet")
            out += figure_paths(f"{figs}/model_confusion_matrix")
        if _model_has(model, "hidden"):
            out.append(f"{d}/hidden.parquet")
        if _model_has(model, "autoencoder"):
            out.append(f"{d}/reconstructions.npz")
            out += figure_paths(f"{figs}/model_reconstructions")
        if _model_has(model, "2d_latents"):
            out += figure_paths(f"{figs}/model_latent_scatter")
        if _model_has(model, "dense"):
            out += figure_paths(f"{figs}/model_first_layer_weights")
    return out
