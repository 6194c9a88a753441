# Stage: the latent atlas. For every model in `atlas.models`: a per-point table (latent-space
# neighbours, local density, neighbourhood preservation in each map, predicted class or
# reconstruction error) and one self-contained interactive HTML page drawn from it.
# The maps are the explain stage's, or the atlas's own (rules atlas_maps and atlas_quality: the
# explain stage's jobs on the atlas's samples).


include: "atlas_functions.smk"


use rule explain_maps as atlas_maps with:
    input:
        # not explain's selection file: the atlas maps its own samples (sample_ids below)
        "results/{dataset}/{model}/latents.parquet",
    output:
        maps="results/{dataset}/{model}/atlas/maps.parquet",
        placement="results/{dataset}/{model}/atlas/placement.parquet",
        pca_scree="results/{dataset}/{model}/atlas/pca_scree.parquet",
        pca_loadings="results/{dataset}/{model}/atlas/pca_loadings.parquet",
        pca_contributions="results/{dataset}/{model}/atlas/pca_contributions.parquet",
    log:
        "results/logs/atlas_maps/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/atlas_maps/{dataset}/{model}.tsv"
    params:
        # the atlas's own sample count; explain.samples.ids name samples of explain's models
        n_samples=rules_lib.atlas_sample_count(ATLAS["n_samples"], EXPLAIN["n_samples"]),
        sample_ids=[],


use rule explain_quality as atlas_quality with:
    input:
        latents="results/{dataset}/{model}/latents.parquet",
        maps="results/{dataset}/{model}/atlas/maps.parquet",
    output:
        "results/{dataset}/{model}/atlas/quality.parquet",
    log:
        "results/logs/atlas_quality/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/atlas_quality/{dataset}/{model}.tsv"


rule atlas_points:
    input:
        unpack(atlas_points_inputs),
    output:
        "results/{dataset}/{model}/atlas/points.parquet",
    log:
        "results/logs/atlas_points/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/atlas_points/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: config["numeric_threads"]
    resources:
        gpu=1,
    params:
        job="latent_atlas.atlas.jobs:atlas_points",
        numeric_threads=config["numeric_threads"],
        k=ATLAS["k"],
    script:
        "../scripts/run_job.py"


rule atlas:
    input:
        unpack(atlas_page_inputs),
    output:
        # atlas.layout single: the page (the folder holds a redirect to it); folder: a redirect to
        # the folder's index.html, the page, with its data beside it
        page=report(
            "results/figures/{dataset}/{model}/atlas.html",
            caption="../report/atlas.rst",
            category="Latent atlas",
            subcategory="{model}",
        ),
        folder=directory("results/figures/{dataset}/{model}/atlas"),
    log:
        "results/logs/atlas/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/atlas/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.atlas.jobs:atlas",
        seed=config["seed"],
        title="{model} on {dataset}",
        point_size=ATLAS["point_size"],
        thumbnails=ATLAS["thumbnails"],
        importance=atlas_importance_link,
        layout=ATLAS["layout"],
        max_page_mb=ATLAS["max_page_mb"],
        tile_points=ATLAS["tile_points"],
    script:
        "../scripts/run_job.py"
