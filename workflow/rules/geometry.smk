# Stage: latent geometry. For every model in `geometry.models`: density along each axis, radius
# histograms, PCA, zoomed plane scatters, nearest neighbours and intrinsic dimension (one job),
# t-SNE (one job per input space and sample size), UMAP (one job per model: numba compiles once),
# decoded random latent points (autoencoders); then one figure rule per figure, and a side-by-side
# comparison of the models of each dataset.


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
    params:
        names=GEOMETRY_TABLES,
        geometry=GEOMETRY,
    script:
        "../scripts/geometry_tables.py"


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
        settings=GEOMETRY["projections"]["tsne"],
    script:
        "../scripts/geometry_projection.py"


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
    conda:
        "../../envs/analysis.yaml"
    params:
        settings=GEOMETRY["projections"]["umap"],
        grid=geometry_grid("umap"),
    script:
        "../scripts/geometry_projection.py"


rule geometry_random_points:
    input:
        latents="results/{dataset}/{model}/latents.parquet",
        model="results/{dataset}/{model}/model.pt",
        data="results/data/{dataset}.npz",
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
        "../../envs/torch.yaml"
    params:
        settings=GEOMETRY["random_points"],
    script:
        "../scripts/geometry_random_points.py"


rule plot_geometry_axes:
    input:
        density="results/{dataset}/{model}/geometry/axis_density.parquet",
        summary="results/{dataset}/{model}/geometry/axis_summary.parquet",
    output:
        report(
            fig("results/figures/{dataset}/{model}/geometry_axes"),
            caption="../report/geometry_axes.rst",
            category="Latent geometry",
        ),
    log:
        "results/logs/plot_geometry_axes/{dataset}/{model}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        settings=GEOMETRY["axes"],
    script:
        "../scripts/plot_geometry_axes.py"


rule plot_geometry_radius:
    input:
        histogram="results/{dataset}/{model}/geometry/radius_histogram.parquet",
        summary="results/{dataset}/{model}/geometry/radius_summary.parquet",
    output:
        report(
            fig("results/figures/{dataset}/{model}/geometry_radius"),
            caption="../report/geometry_radius.rst",
            category="Latent geometry",
        ),
    log:
        "results/logs/plot_geometry_radius/{dataset}/{model}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_geometry_radius.py"


rule plot_geometry_pca:
    input:
        "results/{dataset}/{model}/geometry/pca_variance.parquet",
    output:
        report(
            fig("results/figures/{dataset}/{model}/geometry_pca"),
            caption="../report/geometry_pca.rst",
            category="Latent geometry",
        ),
    log:
        "results/logs/plot_geometry_pca/{dataset}/{model}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_geometry_pca.py"


rule plot_geometry_planes:
    input:
        planes="results/{dataset}/{model}/geometry/planes.parquet",
        zoom="results/{dataset}/{model}/geometry/zoom.parquet",
    output:
        report(
            fig("results/figures/{dataset}/{model}/geometry_planes"),
            caption="../report/geometry_planes.rst",
            category="Latent geometry",
        ),
    log:
        "results/logs/plot_geometry_planes/{dataset}/{model}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_geometry_planes.py"


rule plot_geometry_neighbours:
    input:
        points="results/{dataset}/{model}/geometry/neighbours.parquet",
        dimension="results/{dataset}/{model}/geometry/intrinsic_dimension.parquet",
    output:
        report(
            fig("results/figures/{dataset}/{model}/geometry_neighbours"),
            caption="../report/geometry_neighbours.rst",
            category="Latent geometry",
        ),
    log:
        "results/logs/plot_geometry_neighbours/{dataset}/{model}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_geometry_neighbours.py"


rule plot_geometry_projection:
    input:
        geometry_projection_inputs,
    output:
        report(
            fig("results/figures/{dataset}/{model}/geometry_{method}"),
            caption="../report/geometry_projection.rst",
            category="Latent geometry",
        ),
    log:
        "results/logs/plot_geometry_projection/{dataset}/{model}_{method}.log",
    wildcard_constraints:
        method="tsne|umap",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_geometry_projections.py"


rule plot_geometry_random_points:
    input:
        images="results/{dataset}/{model}/geometry/random_points.npz",
        scores="results/{dataset}/{model}/geometry/random_points.parquet",
    output:
        report(
            fig("results/figures/{dataset}/{model}/geometry_random_points"),
            caption="../report/geometry_random_points.rst",
            category="Latent geometry",
        ),
    log:
        "results/logs/plot_geometry_random_points/{dataset}/{model}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_geometry_random_points.py"


rule geometry_compare:
    input:
        unpack(geometry_compare_inputs),
    output:
        table="results/{dataset}/geometry_compare.parquet",
        figure=report(
            fig("results/figures/{dataset}/geometry_compare"),
            caption="../report/geometry_compare.rst",
            category="Latent geometry",
        ),
    log:
        "results/logs/geometry_compare/{dataset}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_geometry_compare.py"
