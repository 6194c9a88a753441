# Stage: compare latent spaces. For every pair of `compare.pairs` (and the training snapshots of
# `compare.snapshots`): the pair's measures on the same samples (CKA, Procrustes, SVCCA, kNN
# overlap, linear probes, matched dimensions), one table per dataset, its figures; the maps of
# those samples (compare_maps: the explain stage's job on compare.split and compare.max_samples)
# of each compared model (a snapshot's per-point measures are drawn on its model's maps); the
# interactive comparison page (compare_page: the atlas's renderer).


include: "compare_functions.smk"


use rule explain_maps as compare_maps with:
    input:
        "results/{dataset}/{model}/latents.parquet",
        **COMPARE_SELECTION_INPUTS,
    output:
        maps="results/{dataset}/{model}/compare/maps.parquet",
        placement="results/{dataset}/{model}/compare/placement.parquet",
        pca_scree="results/{dataset}/{model}/compare/pca_scree.parquet",
        pca_loadings="results/{dataset}/{model}/compare/pca_loadings.parquet",
        pca_contributions="results/{dataset}/{model}/compare/pca_contributions.parquet",
    log:
        "results/logs/compare_maps/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/compare_maps/{dataset}/{model}.tsv"
    params:
        **COMPARE_SELECTION_PARAMS,
        split=COMPARE["split"],
        n_samples=COMPARE["max_samples"],
        sample_ids=[],


rule compare_pair:
    input:
        **COMPARE_SELECTION_INPUTS,
        latents_a="results/{dataset}/{a}/latents.parquet",
        latents_b="results/{dataset}/{b}/latents.parquet",
    output:
        measures="results/{dataset}/compare/{a}/{b}/measures.parquet",
        points="results/{dataset}/compare/{a}/{b}/points.parquet",
        dimensions="results/{dataset}/compare/{a}/{b}/dimensions.parquet",
    log:
        "results/logs/compare_pair/{dataset}/{a}/{b}.log",
    benchmark:
        "results/benchmarks/compare_pair/{dataset}/{a}/{b}.tsv"
    wildcard_constraints:
        a="[A-Za-z0-9][A-Za-z0-9_-]*(@[0-9]+)?",
        b="[A-Za-z0-9][A-Za-z0-9_-]*(@[0-9]+)?",
    conda:
        "../../envs/analysis.yaml"
    threads: config["numeric_threads"]
    params:
        **COMPARE_SELECTION_PARAMS,
        job="latent_atlas.compare.jobs:compare_pair",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        split=COMPARE["split"],
        max_samples=COMPARE["max_samples"],
        k=COMPARE["k"],
        rbf_max_samples=COMPARE["rbf_max_samples"],
        svcca_k=COMPARE["svcca_k"],
        cv_folds=COMPARE["cv_folds"],
    script:
        "../scripts/run_job.py"


rule compare_table:
    input:
        compare_table_inputs,
    output:
        "results/{dataset}/compare.parquet",
    log:
        "results/logs/compare_table/{dataset}.log",
    benchmark:
        "results/benchmarks/compare_table/{dataset}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.compare.jobs:compare_table",
    script:
        "../scripts/run_job.py"


rule plot_compare:
    input:
        unpack(compare_plot_inputs),
    output:
        **compare_optional_figures(),
        cka=compare_figure("cka"),
        overlap=compare_figure("overlap"),
        dimensions=compare_figure("dimensions"),
    log:
        "results/logs/plot_compare/{dataset}.log",
    benchmark:
        "results/benchmarks/plot_compare/{dataset}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.compare.jobs:plot_compare",
        show=COMPARE["show"],
    script:
        "../scripts/run_job.py"


rule compare_page:
    input:
        unpack(compare_page_inputs),
    output:
        report(
            "results/figures/{dataset}/compare.html",
            caption="../report/compare_page.rst",
            category="Compare latent spaces",
        ),
    log:
        "results/logs/compare_page/{dataset}.log",
    benchmark:
        "results/benchmarks/compare_page/{dataset}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.compare.jobs:compare_page",
        seed=config["seed"],
        k=COMPARE["k"][0],
        point_size=ATLAS["point_size"],
        # the thumbnails as the atlas draws them; not on_map: this page draws dots only
        thumbnails={k: v for k, v in ATLAS["thumbnails"].items() if k != "on_map"},
    script:
        "../scripts/run_job.py"
