# Stage: explain what a 2-D map of learned features means. For every model in `explain.models`:
# PCA, t-SNE and UMAP of the same samples, their quality in numbers, feature correlations, ridge
# maps of the map axes, PCA loadings, per-cluster feature profiles, and one sample end to end.
# Tables under results/{dataset}/{model}/explain/, figures drawn from them by separate rules.


include: "explain_functions.smk"


rule explain_maps:
    input:
        "results/{dataset}/{model}/latents.parquet",
        **explained_inputs(EXPLAIN["samples"]),
    output:
        maps="results/{dataset}/{model}/explain/maps.parquet",
        placement="results/{dataset}/{model}/explain/placement.parquet",
        pca_scree="results/{dataset}/{model}/explain/pca_scree.parquet",
        pca_loadings="results/{dataset}/{model}/explain/pca_loadings.parquet",
        pca_contributions="results/{dataset}/{model}/explain/pca_contributions.parquet",
    log:
        "results/logs/explain_maps/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/explain_maps/{dataset}/{model}.tsv"
    priority: 10  # a long job heading a chain of jobs: start it early
    conda:
        "../../envs/analysis.yaml"
    threads: config["numeric_threads"]
    params:
        job="latent_atlas.explain.jobs:explain_maps",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        split=EXPLAIN["split"],
        n_samples=EXPLAIN["n_samples"],
        sample_ids=explained_samples(EXPLAIN["samples"]),
        tsne=EXPLAIN["tsne"],
        umap=EXPLAIN["umap"],
        loading_components=EXPLAIN["pca"]["loading_components"],
    script:
        "../scripts/run_job.py"


rule explain_quality:
    input:
        latents="results/{dataset}/{model}/latents.parquet",
        maps="results/{dataset}/{model}/explain/maps.parquet",
    output:
        "results/{dataset}/{model}/explain/quality.parquet",
    log:
        "results/logs/explain_quality/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/explain_quality/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: config["numeric_threads"]
    params:
        job="latent_atlas.explain.jobs:explain_quality",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        quality=EXPLAIN["quality"],
    script:
        "../scripts/run_job.py"


rule explain_features:
    input:
        latents="results/{dataset}/{model}/latents.parquet",
        maps="results/{dataset}/{model}/explain/maps.parquet",
    output:
        stats="results/{dataset}/{model}/explain/feature_stats.parquet",
        correlation="results/{dataset}/{model}/explain/feature_correlation.parquet",
        clusters="results/{dataset}/{model}/explain/umap_clusters.parquet",
        profiles="results/{dataset}/{model}/explain/cluster_profiles.parquet",
    log:
        "results/logs/explain_features/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/explain_features/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: config["numeric_threads"]
    params:
        job="latent_atlas.explain.jobs:explain_features",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        near_constant=EXPLAIN["features"]["near_constant"],
        clusters=explain_settings("clusters", "method", "n_clusters"),
    script:
        "../scripts/run_job.py"


rule explain_ridge:
    input:
        latents="results/{dataset}/{model}/latents.parquet",
        maps="results/{dataset}/{model}/explain/maps.parquet",
    output:
        scores="results/{dataset}/{model}/explain/ridge_scores.parquet",
        coefficients="results/{dataset}/{model}/explain/ridge_coefficients.parquet",
        predictions="results/{dataset}/{model}/explain/ridge_predictions.parquet",
    log:
        "results/logs/explain_ridge/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/explain_ridge/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: config["numeric_threads"]
    params:
        job="latent_atlas.explain.jobs:explain_ridge",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        alphas=EXPLAIN["ridge"]["alphas"],
        cv_folds=EXPLAIN["ridge"]["cv_folds"],
    script:
        "../scripts/run_job.py"


rule explain_samples:
    input:
        data=rules.prepare_data.output,
        model="results/{dataset}/{model}/model.pt",
        latents="results/{dataset}/{model}/latents.parquet",
        placement="results/{dataset}/{model}/explain/placement.parquet",
    output:
        "results/{dataset}/{model}/explain/samples.npz",
    log:
        "results/logs/explain_samples/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/explain_samples/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: config["numeric_threads"]
    resources:
        gpu=1,
    params:
        job="latent_atlas.explain.jobs:explain_samples",
        numeric_threads=config["numeric_threads"],
    script:
        "../scripts/run_job.py"


# Every explain figure of a model in one job: drawing is quick, starting a process is not.
rule plot_explain:
    input:
        maps="results/{dataset}/{model}/explain/maps.parquet",
        quality="results/{dataset}/{model}/explain/quality.parquet",
        correlation="results/{dataset}/{model}/explain/feature_correlation.parquet",
        stats="results/{dataset}/{model}/explain/feature_stats.parquet",
        ridge_scores="results/{dataset}/{model}/explain/ridge_scores.parquet",
        ridge_coefficients="results/{dataset}/{model}/explain/ridge_coefficients.parquet",
        ridge_predictions="results/{dataset}/{model}/explain/ridge_predictions.parquet",
        loadings="results/{dataset}/{model}/explain/pca_loadings.parquet",
        scree="results/{dataset}/{model}/explain/pca_scree.parquet",
        profiles="results/{dataset}/{model}/explain/cluster_profiles.parquet",
        clusters="results/{dataset}/{model}/explain/umap_clusters.parquet",
        samples="results/{dataset}/{model}/explain/samples.npz",
        placement="results/{dataset}/{model}/explain/placement.parquet",
        contributions="results/{dataset}/{model}/explain/pca_contributions.parquet",
    output:
        **{what: explain_figure(what) for what in EXPLAIN_FIGURES},
    log:
        "results/logs/plot_explain/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/plot_explain/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.explain.jobs:plot_explain",
        title="{model} on {dataset}",
        ridge_top=EXPLAIN["ridge"]["top"],
        arrows=EXPLAIN["pca"]["arrows"],
        cluster_top=EXPLAIN["clusters"]["top_features"],
        contributors_top=EXPLAIN["pca"]["top_contributors"],
        max_maps=EXPLAIN["samples"]["max_maps"],
    script:
        "../scripts/run_job.py"
