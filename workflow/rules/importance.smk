# Stage: permutation importance (Inglis & Parnell). For every model in `importance.models`:
# a plan (image shape -> number of pixel blocks, a checkpoint), one GPU-capable job per block of
# pixels writing a Parquet shard, a gather into pixel_importance.parquet, the per-class latent
# importance, the paper's figures and a self-contained interactive explorer (HTML).
# Job functions: latent_atlas/importance/jobs.py.


include: "importance_functions.smk"


checkpoint importance_plan:
    input:
        rules.prepare_data.output,
    output:
        "results/{dataset}/{model}/importance/plan.json",
    log:
        "results/logs/importance_plan/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/importance_plan/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.importance.jobs:importance_plan",
        block_size=IMPORTANCE["block_size"],
    script:
        "../scripts/run_job.py"


rule importance_block:
    input:
        data=rules.prepare_data.output,
        model="results/{dataset}/{model}/model.pt",
    output:
        "results/{dataset}/{model}/importance/blocks/block_{block}.parquet",
    log:
        "results/logs/importance_block/{dataset}/{model}/{block}.log",
    benchmark:
        "results/benchmarks/importance_block/{dataset}/{model}/{block}.tsv"
    wildcard_constraints:
        block=r"\d{4}",
    conda:
        "../../envs/torch.yaml"
    threads: config["numeric_threads"]
    resources:
        gpu=1,
    params:
        job="latent_atlas.importance.jobs:importance_block",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        block_size=IMPORTANCE["block_size"],
        max_samples=IMPORTANCE["max_samples"],
        device=IMPORTANCE["device"],
        logits=importance_logits,
        method=IMPORTANCE["method"],
        n_perm=IMPORTANCE["n_perm"],
        batch_size=IMPORTANCE["batch_size"],
        memory_mb=IMPORTANCE["memory_mb"],
        sign_threshold=IMPORTANCE["sign_threshold"],
        confidence=IMPORTANCE["confidence"],
    script:
        "../scripts/run_job.py"


rule importance_gather:
    input:
        importance_block_paths,
    output:
        "results/{dataset}/{model}/importance/pixel_importance.parquet",
    log:
        "results/logs/importance_gather/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/importance_gather/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.importance.jobs:importance_gather",
        output_name="primary",
    script:
        "../scripts/run_job.py"


use rule importance_gather as importance_gather_logits with:
    output:
        "results/{dataset}/{model}/importance/pixel_importance_logits.parquet",
    log:
        "results/logs/importance_gather_logits/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/importance_gather_logits/{dataset}/{model}.tsv"
    params:
        output_name="logits",


rule latent_importance:
    input:
        data=rules.prepare_data.output,
        model="results/{dataset}/{model}/model.pt",
    output:
        "results/{dataset}/{model}/importance/latent_importance.parquet",
    log:
        "results/logs/latent_importance/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/latent_importance/{dataset}/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["numeric_threads"]
    resources:
        gpu=1,
    params:
        job="latent_atlas.importance.jobs:latent_importance",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        max_samples=IMPORTANCE["max_samples"],
        device=IMPORTANCE["device"],
        n_perm=IMPORTANCE["n_perm"],
        batch_size=IMPORTANCE["batch_size"],
        confidence=IMPORTANCE["confidence"],
    script:
        "../scripts/run_job.py"


rule importance_explorer:
    input:
        data=rules.prepare_data.output,
        pixel="results/{dataset}/{model}/importance/pixel_importance.parquet",
        latent="results/{dataset}/{model}/importance/latent_importance.parquet",
    output:
        report(
            "results/{dataset}/{model}/importance/explorer.html",
            caption="../report/importance_explorer.rst",
            category="Permutation importance",
            subcategory="{model}",
        ),
    log:
        "results/logs/importance_explorer/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/importance_explorer/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.importance.jobs:importance_explorer",
        top_k=IMPORTANCE["top_k"],
        n_perm=IMPORTANCE["n_perm"],
    script:
        "../scripts/run_job.py"


# Every importance figure of a model in one job: drawing is quick, starting a process is not.
rule plot_importance:
    input:
        data=rules.prepare_data.output,
        pixel="results/{dataset}/{model}/importance/pixel_importance.parquet",
        latent="results/{dataset}/{model}/importance/latent_importance.parquet",
    output:
        **{
            f"class_{c}": importance_figure(f"class_{c}", "class")
            for c in IMPORTANCE["classes"]
        },
        directional=importance_figure("directional"),
        dimension=importance_figure("dimension"),
        classes=importance_figure("classes"),
    log:
        "results/logs/plot_importance/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/plot_importance/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.importance.jobs:plot_importance",
        top_k=IMPORTANCE["top_k"],
        classes=IMPORTANCE["classes"],
    script:
        "../scripts/run_job.py"
