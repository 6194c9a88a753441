# Stage: latent geometry. For every model in `geometry.models`: density along each axis, radius
# histograms, PCA, zoomed plane scatters, nearest neighbours and intrinsic dimension (one job),
# t-SNE (one job per input space and sample size), UMAP (one job per model: numba compiles once),
# decoded random latent points (autoencoders); then one job draws the figures of each model,
# and a side-by-side comparison of the models of each dataset.


include: "geometry_functions.smk"


rule geometry_tables:
    input:
        "results/{dataset}/{model}/latents.parquet",
    output:
        expand(
            "results/{{dataset}}/{{model}}/geometry/{table}.parquet",
            table=GEOMETRY_TABLES,
        ),
    log:
        "results/logs/geometry_tables/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/geometry_tables/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: config["numeric_threads"]
    params:
        job="latent_atlas.geometry.jobs:geometry_tables",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        names=GEOMETRY_TABLES,
        axes=geometry_settings("axes", "bin_width", "off_centre_ratio", "width_ratio"),
        radius=GEOMETRY["radius"],
        pca=GEOMETRY["pca"],
        planes=GEOMETRY["planes"],
        neighbours=GEOMETRY["neighbours"],
    script:
        "../scripts/run_job.py"


rule geometry_tsne:
    input:
        "results/{dataset}/{model}/latents.parquet",
    output:
        "results/{dataset}/{model}/geometry/tsne_{space}_n{n}.parquet",
    log:
        "results/logs/geometry_tsne/{dataset}/{model}/{space}_n{n}.log",
    benchmark:
        "results/benchmarks/geometry_tsne/{dataset}/{model}/{space}_n{n}.tsv"
    wildcard_constraints:
        space="raw|pca[0-9]+",
        n="[0-9]+",
    conda:
        "../../envs/analysis.yaml"
    threads: config["numeric_threads"]
    params:
        job="latent_atlas.geometry.jobs:geometry_tsne",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        settings=projection_settings("tsne"),
    script:
        "../scripts/run_job.py"


rule geometry_umap:
    input:
        "results/{dataset}/{model}/latents.parquet",
    output:
        [
            f"results/{{dataset}}/{{model}}/geometry/umap_{space}_n{n}.parquet"
            for space, n in geometry_grid("umap")
        ],
    log:
        "results/logs/geometry_umap/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/geometry_umap/{dataset}/{model}.tsv"
    priority: 10  # a long job heading a chain of jobs: start it early
    conda:
        "../../envs/analysis.yaml"
    threads: config["numeric_threads"]
    params:
        job="latent_atlas.geometry.jobs:geometry_umap",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        settings=projection_settings("umap"),
        grid=geometry_grid("umap"),
    script:
        "../scripts/run_job.py"


rule geometry_random_points:
    input:
        latents="results/{dataset}/{model}/latents.parquet",
        model="results/{dataset}/{model}/model.pt",
        data=rules.prepare_data.output,
        classifier=geometry_classifier,
    output:
        images="results/{dataset}/{model}/geometry/random_points.npz",
        scores="results/{dataset}/{model}/geometry/random_points.parquet",
    log:
        "results/logs/geometry_random_points/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/geometry_random_points/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=model_regex(geometry_autoencoders()),
    conda:
        "../../envs/analysis.yaml"
    threads: config["numeric_threads"]
    resources:
        gpu=1,
    params:
        job="latent_atlas.geometry.jobs:geometry_random_points",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        n_per_set=GEOMETRY["random_points"]["n_per_set"],
        offset_scale=GEOMETRY["random_points"]["offset_scale"],
        classifier=geometry_classifier_name,
    script:
        "../scripts/run_job.py"


# The figures of a model's geometry tables and projections in one job: drawing is quick,
# starting a process is not.
rule plot_geometry:
    input:
        unpack(geometry_plot_inputs),
    output:
        **{
            method: geometry_figure(method, "projection")
            for method in geometry_methods()
        },
        axes=geometry_figure("axes"),
        radius=geometry_figure("radius"),
        pca=geometry_figure("pca"),
        planes=geometry_figure("planes"),
        neighbours=geometry_figure("neighbours"),
    log:
        "results/logs/plot_geometry/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/plot_geometry/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.geometry.jobs:plot_geometry",
        axes=geometry_settings("axes", "show_alone", "selected", "bin_width"),
    script:
        "../scripts/run_job.py"


rule plot_geometry_random_points:
    input:
        images="results/{dataset}/{model}/geometry/random_points.npz",
        scores="results/{dataset}/{model}/geometry/random_points.parquet",
    output:
        figure=geometry_figure("random_points"),
    log:
        "results/logs/plot_geometry_random_points/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/plot_geometry_random_points/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.geometry.jobs:plot_geometry_random_points",
    script:
        "../scripts/run_job.py"


rule geometry_compare:
    input:
        unpack(geometry_compare_inputs),
    output:
        table="results/{dataset}/geometry_compare.parquet",
        figure=figure_output(
            "results/figures/{dataset}/geometry_compare",
            "geometry_compare",
            "Latent geometry",
        ),
    log:
        "results/logs/geometry_compare/{dataset}.log",
    benchmark:
        "results/benchmarks/geometry_compare/{dataset}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.geometry.jobs:geometry_compare",
    script:
        "../scripts/run_job.py"
