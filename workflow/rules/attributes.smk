# Stage: latents against per-sample attributes. The dataset's attribute table
# (dataset_attributes, data.smk) and a model's latents -> per attribute a linear probe, its
# directions and the angles between them, the latent dimensions carrying it
# (attribute_probes); disentanglement scores against the factors (disentanglement); walks along
# attribute directions, latent axes and principal components, decoded or shown by the nearest
# real images (attribute_traversals); a model's figures (plot_attributes); every model's scores
# side by side (attribute_scores, plot_attribute_scores).


include: "attributes_functions.smk"


rule attribute_probes:
    input:
        latents="results/{dataset}/{model}/latents.parquet",
        attributes=rules.dataset_attributes.output[0],
    output:
        probes="results/{dataset}/{model}/attributes/probes.parquet",
        directions="results/{dataset}/{model}/attributes/directions.parquet",
        angles="results/{dataset}/{model}/attributes/angles.parquet",
        dimensions="results/{dataset}/{model}/attributes/dimensions.parquet",
    log:
        "results/logs/attribute_probes/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/attribute_probes/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=model_regex(attribute_models()),
    conda:
        "../../envs/analysis.yaml"
    threads: config["numeric_threads"]
    params:
        job="latent_atlas.attributes.jobs:attribute_probes",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        names=ATTRIBUTES["names"],
        split=ATTRIBUTES["split"],
        max_samples=ATTRIBUTES["max_samples"],
        cv_folds=ATTRIBUTES["cv_folds"],
        mi_bins=ATTRIBUTES["mi_bins"],
        top_dimensions=ATTRIBUTES["top_dimensions"],
    script:
        "../scripts/run_job.py"


rule disentanglement:
    input:
        latents="results/{dataset}/{model}/latents.parquet",
        attributes=rules.dataset_attributes.output[0],
    output:
        scores="results/{dataset}/{model}/attributes/scores.parquet",
        factors="results/{dataset}/{model}/attributes/factor_scores.parquet",
        importance="results/{dataset}/{model}/attributes/dci_importance.parquet",
    log:
        "results/logs/disentanglement/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/disentanglement/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=model_regex(attribute_models()),
    conda:
        "../../envs/analysis.yaml"
    threads: config["numeric_threads"]
    params:
        job="latent_atlas.attributes.jobs:disentanglement",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        factors=ATTRIBUTES["factors"],
        max_samples=ATTRIBUTES["max_samples"],
        mi_bins=ATTRIBUTES["mi_bins"],
        dci=ATTRIBUTES["dci"],
    script:
        "../scripts/run_job.py"


rule attribute_traversals:
    input:
        unpack(attribute_traversal_inputs),
    output:
        "results/{dataset}/{model}/attributes/traversals.parquet",
    log:
        "results/logs/attribute_traversals/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/attribute_traversals/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=model_regex(attribute_models()),
    conda:
        "../../envs/torch.yaml"
    threads: config["numeric_threads"]
    resources:
        gpu=1,
    params:
        job="latent_atlas.attributes.jobs:attribute_traversals",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        split=ATTRIBUTES["split"],
        max_samples=ATTRIBUTES["max_samples"],
        traversal=attribute_traversal_settings(),
        arithmetic=ATTRIBUTES["traversal"]["arithmetic"],
        decode=attribute_decodes,
    script:
        "../scripts/run_job.py"


rule plot_attributes:
    input:
        probes=rules.attribute_probes.output.probes,
        angles=rules.attribute_probes.output.angles,
        dimensions=rules.attribute_probes.output.dimensions,
        factors=rules.disentanglement.output.factors,
        importance=rules.disentanglement.output.importance,
        traversals=rules.attribute_traversals.output[0],
    output:
        probes=attribute_figure("probes"),
        dimensions=attribute_figure("dimensions"),
        angles=attribute_figure("angles"),
        disentanglement=attribute_figure("disentanglement"),
        traversals=attribute_figure("traversals"),
        axes=attribute_figure("axis_traversals"),
        components=attribute_figure("component_traversals"),
        arithmetic=attribute_figure("arithmetic"),
    log:
        "results/logs/plot_attributes/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/plot_attributes/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=model_regex(attribute_models()),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.attributes.jobs:plot_attributes",
        top_dimensions=ATTRIBUTES["top_dimensions"],
    script:
        "../scripts/run_job.py"


rule attribute_scores:
    input:
        attribute_score_inputs,
    output:
        "results/{dataset}/attribute_scores.parquet",
    log:
        "results/logs/attribute_scores/{dataset}.log",
    benchmark:
        "results/benchmarks/attribute_scores/{dataset}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.attributes.jobs:attribute_scores",
    script:
        "../scripts/run_job.py"


rule plot_attribute_scores:
    input:
        rules.attribute_scores.output[0],
    output:
        attribute_dataset_figure("scores"),
    log:
        "results/logs/plot_attribute_scores/{dataset}.log",
    benchmark:
        "results/benchmarks/plot_attribute_scores/{dataset}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.attributes.jobs:plot_attribute_scores",
    script:
        "../scripts/run_job.py"
