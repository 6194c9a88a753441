# Stage: permutation importance (Inglis & Parnell). For every model in `importance.models`:
# a plan (image shape -> pixel groups and their blocks, a checkpoint), one GPU-capable job per
# block of groups writing a Parquet shard, a gather into the group and pixel tables (with each
# score's p-value and Benjamini-Hochberg discoveries), the per-class latent importance, the
# paper's figures and a self-contained interactive explorer (HTML). The main analysis lives in
# importance/, each of `importance.variants` (other groupings or permutations of the same model)
# in importance_<name>/ ({analysis}), drawn beside the main one in importance_variants.
# Job functions: latent_atlas/importance/jobs.py.


include: "importance_functions.smk"


checkpoint importance_plan:
    input:
        rules.prepare_data.output,
    output:
        "results/{dataset}/{model}/{analysis}/plan.json",
    log:
        "results/logs/importance_plan/{dataset}/{model}/{analysis}.log",
    benchmark:
        "results/benchmarks/importance_plan/{dataset}/{model}/{analysis}.tsv"
    wildcard_constraints:
        analysis=ANALYSIS,
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.importance.jobs:importance_plan",
        block_size=IMPORTANCE["block_size"],
        groups=importance_setting("groups"),
        patch=importance_used("patch", ("groups", "patch")),
        superpixel=importance_used("superpixel", ("groups", "superpixel")),
    script:
        "../scripts/run_job.py"


rule importance_block:
    input:
        **IMPORTANCE_SELECTION_INPUTS,
        data=rules.prepare_data.output,
        model="results/{dataset}/{model}/model.pt",
        plan="results/{dataset}/{model}/{analysis}/plan.json",
    output:
        "results/{dataset}/{model}/{analysis}/blocks/block_{block}.parquet",
    log:
        "results/logs/importance_block/{dataset}/{model}/{analysis}/{block}.log",
    benchmark:
        "results/benchmarks/importance_block/{dataset}/{model}/{analysis}/{block}.tsv"
    wildcard_constraints:
        block=r"\d{4}",
        analysis=ANALYSIS,
    conda:
        "../../envs/torch.yaml"
    threads: config["numeric_threads"]
    resources:
        gpu=1,
    params:
        **IMPORTANCE_SELECTION_PARAMS,
        job="latent_atlas.importance.jobs:importance_block",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        max_samples=IMPORTANCE["max_samples"],
        device=IMPORTANCE["device"],
        logits=importance_logits,
        method=IMPORTANCE["method"],
        n_perm=IMPORTANCE["n_perm"],
        batch_size=IMPORTANCE["batch_size"],
        memory_mb=IMPORTANCE["memory_mb"],
        sign_threshold=IMPORTANCE["sign_threshold"],
        confidence=IMPORTANCE["confidence"],
        permutation=importance_setting("permutation"),
        conditional=importance_used("conditional", ("permutation", "conditional")),
    script:
        "../scripts/run_job.py"


rule importance_gather:
    input:
        shards=importance_block_paths,
        plan="results/{dataset}/{model}/{analysis}/plan.json",
    output:
        pixel="results/{dataset}/{model}/{analysis}/pixel_importance.parquet",
        group="results/{dataset}/{model}/{analysis}/group_importance.parquet",
    log:
        "results/logs/importance_gather/{dataset}/{model}/{analysis}.log",
    benchmark:
        "results/benchmarks/importance_gather/{dataset}/{model}/{analysis}.tsv"
    wildcard_constraints:
        analysis=ANALYSIS,
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.importance.jobs:importance_gather",
        output_name="primary",
        min_effect=IMPORTANCE["min_effect"],
        fdr=IMPORTANCE["fdr"],
        permutation=importance_setting("permutation"),
    script:
        "../scripts/run_job.py"


use rule importance_gather as importance_gather_logits with:
    output:
        pixel="results/{dataset}/{model}/{analysis}/pixel_importance_logits.parquet",
        group="results/{dataset}/{model}/{analysis}/group_importance_logits.parquet",
    log:
        "results/logs/importance_gather_logits/{dataset}/{model}/{analysis}.log",
    benchmark:
        "results/benchmarks/importance_gather_logits/{dataset}/{model}/{analysis}.tsv"
    params:
        output_name="logits",
        min_effect=IMPORTANCE["min_effect"],
        fdr=IMPORTANCE["fdr"],
        permutation=importance_setting("permutation"),


rule latent_importance:
    input:
        **IMPORTANCE_SELECTION_INPUTS,
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
        **IMPORTANCE_SELECTION_PARAMS,
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
        fdr=IMPORTANCE["fdr"],
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
        fdr=IMPORTANCE["fdr"],
    script:
        "../scripts/run_job.py"


# The main map beside every variant's (importance.variants): what grouping and conditioning change.
rule plot_importance_variants:
    input:
        data=rules.prepare_data.output,
        latent="results/{dataset}/{model}/importance/latent_importance.parquet",
        pixel=importance_variant_tables,
    output:
        importance_figure("variants"),
    log:
        "results/logs/plot_importance_variants/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/plot_importance_variants/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.importance.jobs:plot_importance_variants",
        top_k=IMPORTANCE["top_k"],
        fdr=IMPORTANCE["fdr"],
        labels=importance_variant_labels,
    script:
        "../scripts/run_job.py"
