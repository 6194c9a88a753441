# Stage: featureviz. Activation maximisation of output and hidden neurons, adversarial examples,
# dead neurons and co-activating clusters of each classifier in `featureviz.models`.
# One job per figure set (galleries: one per layer), so they shard across GPU jobs; each writes
# tables (+ images) under results/{dataset}/{model}/featureviz/, separate rules draw them.


include: "featureviz_functions.smk"


rule featureviz_unregularised:
    input:
        model="results/{dataset}/{model}/model.pt",
    output:
        table=f"{FV_DIR}/unregularised.parquet",
        images=f"{FV_DIR}/unregularised.npz",
    log:
        "results/logs/featureviz_unregularised/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/featureviz_unregularised/{dataset}/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["numeric_threads"]
    resources:
        gpu=1,
    params:
        job="latent_atlas.featureviz.jobs:featureviz_unregularised",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        optimiser=FV_OPTIMISER,
        settings=FV["unregularised"],
    script:
        "../scripts/run_job.py"


rule featureviz_adversarial:
    input:
        model="results/{dataset}/{model}/model.pt",
        data=rules.prepare_data.output,
    output:
        table=f"{FV_DIR}/adversarial.parquet",
        images=f"{FV_DIR}/adversarial.npz",
        success=f"{FV_DIR}/adversarial_success.parquet",
    log:
        "results/logs/featureviz_adversarial/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/featureviz_adversarial/{dataset}/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["numeric_threads"]
    resources:
        gpu=1,
    params:
        job="latent_atlas.featureviz.jobs:featureviz_adversarial",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        optimiser=FV_OPTIMISER,
        settings=featureviz_settings("adversarial", but="show"),
    script:
        "../scripts/run_job.py"


rule featureviz_tv_sweep:
    input:
        model="results/{dataset}/{model}/model.pt",
        data=rules.prepare_data.output,
    output:
        table=f"{FV_DIR}/tv_sweep.parquet",
        images=f"{FV_DIR}/tv_sweep.npz",
    log:
        "results/logs/featureviz_tv_sweep/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/featureviz_tv_sweep/{dataset}/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["numeric_threads"]
    resources:
        gpu=1,
    params:
        job="latent_atlas.featureviz.jobs:featureviz_tv_sweep",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        optimiser=FV_OPTIMISER,
        settings=FV["tv_sweep"],
    script:
        "../scripts/run_job.py"


rule featureviz_tv_l1_grid:
    input:
        model="results/{dataset}/{model}/model.pt",
    output:
        table=f"{FV_DIR}/tv_l1_grid.parquet",
        images=f"{FV_DIR}/tv_l1_grid.npz",
    log:
        "results/logs/featureviz_tv_l1_grid/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/featureviz_tv_l1_grid/{dataset}/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["numeric_threads"]
    resources:
        gpu=1,
    params:
        job="latent_atlas.featureviz.jobs:featureviz_tv_l1_grid",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        optimiser=FV_OPTIMISER,
        settings=FV["tv_l1_grid"],
    script:
        "../scripts/run_job.py"


rule featureviz_gallery:
    input:
        **FV_SELECTION_INPUTS,
        model="results/{dataset}/{model}/model.pt",
        data=rules.prepare_data.output,
    output:
        table=f"{FV_DIR}/gallery_layer{{layer}}.parquet",
        images=f"{FV_DIR}/gallery_layer{{layer}}.npz",
    log:
        "results/logs/featureviz_gallery/{dataset}/{model}/layer{layer}.log",
    benchmark:
        "results/benchmarks/featureviz_gallery/{dataset}/{model}/layer{layer}.tsv"
    wildcard_constraints:
        layer="[0-9]+",
    conda:
        "../../envs/torch.yaml"
    threads: config["numeric_threads"]
    resources:
        gpu=1,
    params:
        **FV_SELECTION_PARAMS,
        job="latent_atlas.featureviz.jobs:featureviz_gallery",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        optimiser=FV_OPTIMISER,
        settings=featureviz_settings("gallery", but="layers"),
    script:
        "../scripts/run_job.py"


rule featureviz_census:
    input:
        model="results/{dataset}/{model}/model.pt",
        data=rules.prepare_data.output,
    output:
        dead_neurons=f"{FV_DIR}/dead_neurons.parquet",
        dead_summary=f"{FV_DIR}/dead_summary.parquet",
        coactivation_clusters=f"{FV_DIR}/coactivation_clusters.parquet",
        coactivation_matrix=f"{FV_DIR}/coactivation_matrix.parquet",
    log:
        "results/logs/featureviz_census/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/featureviz_census/{dataset}/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["numeric_threads"]
    resources:
        gpu=1,
    params:
        job="latent_atlas.featureviz.jobs:featureviz_census",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        optimiser=FV_OPTIMISER,
        settings=FV["census"],
    script:
        "../scripts/run_job.py"


# Every featureviz figure of a model in one job: drawing is quick, starting a process is not.
rule plot_featureviz:
    input:
        unpack(featureviz_plot_inputs),
    output:
        **featureviz_optional_figures(featureviz_figure),
        unregularised=featureviz_figure("unregularised", "unregularised"),
        adversarial=featureviz_figure("adversarial", "adversarial"),
        adversarial_success=featureviz_figure(
            "adversarial_success", "adversarial_success"
        ),
        tv_sweep=featureviz_figure("tv_sweep", "tv_sweep"),
        tv_l1_grid_output=featureviz_figure("tv_l1_grid_output", "tv_l1_grid_output"),
        dead_neurons=featureviz_figure("dead_neurons", "dead_neurons"),
        coactivation=featureviz_figure("coactivation", "coactivation"),
    log:
        "results/logs/plot_featureviz/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/plot_featureviz/{dataset}/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.featureviz.jobs:plot_featureviz",
        show=FV["adversarial"]["show"],
        display=FV["display"],
    script:
        "../scripts/run_job.py"
