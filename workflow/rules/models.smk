# Stage 2: train each configured model, then write its latents (and hidden layers) to Parquet.


def model_spec(wildcards):
    return MODELS[wildcards.model]


def is_classifier(model):
    return model_kind(MODELS[model]["arch"]) == "classifier"


rule train:
    input:
        "results/data/{dataset}.npz",
    output:
        model="results/{dataset}/{model}/model.pt",
        metrics="results/{dataset}/{model}/metrics.json",
        train_log="results/{dataset}/{model}/train_log.tsv",
    params:
        spec=model_spec,
        checkpoint_dir="results/{dataset}/{model}/checkpoints",
    log:
        "results/logs/train/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{model}.tsv"
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train.py"


rule extract_latents:
    input:
        data="results/data/{dataset}.npz",
        model="results/{dataset}/{model}/model.pt",
    output:
        latents="results/{dataset}/{model}/latents.parquet",
    params:
        spec=model_spec,
    log:
        "results/logs/extract_latents/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/extract_latents/{dataset}/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/extract_latents.py"


@register_targets
def model_targets():
    out = []
    for model in MODELS:
        d = model_dir(model)
        out += [f"{d}/metrics.json", f"{d}/latents.parquet"]
    return out
