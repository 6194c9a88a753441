# Stage: autoencoders as anomaly detectors. A model's reconstruction error per sample (and a
# VAE's negative ELBO), against labelled anomalies where there are any: ROC and PR curves, a
# threshold at anomaly.fpr on the train split's normal samples and the confusion table at it
# on the test split; the top anomalies with their per-cell errors; PyOD baselines on the raw
# inputs and on the latents, on the same splits (anomaly_scores); the figures (plot_anomaly).


include: "anomaly_functions.smk"


rule anomaly_scores:
    input:
        unpack(anomaly_inputs),
    output:
        scores="results/{dataset}/{model}/anomaly/scores.parquet",
        summary="results/{dataset}/{model}/anomaly/summary.parquet",
        curves="results/{dataset}/{model}/anomaly/curves.parquet",
        top="results/{dataset}/{model}/anomaly/top.parquet",
        cells="results/{dataset}/{model}/anomaly/top_cells.npz",
    log:
        "results/logs/anomaly_scores/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/anomaly_scores/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=model_regex(anomaly_models()),
    conda:
        "../../envs/analysis.yaml"
    threads: config["numeric_threads"]
    resources:
        gpu=1,
    params:
        job="latent_atlas.anomaly.jobs:anomaly_scores",
        seed=config["seed"],
        numeric_threads=config["numeric_threads"],
        normal_classes=anomaly_normal_classes,
        normal_attributes=anomaly_normal_attributes,
        validation=anomaly_validation,
        error=ANOMALY["error"],
        fpr=ANOMALY["fpr"],
        top_k=ANOMALY["top_k"],
        batch_size=ANOMALY["batch_size"],
        baselines=ANOMALY["baselines"],
    script:
        "../scripts/run_job.py"


rule plot_anomaly:
    input:
        scores=rules.anomaly_scores.output.scores,
        summary=rules.anomaly_scores.output.summary,
        curves=rules.anomaly_scores.output.curves,
        top=rules.anomaly_scores.output.top,
        cells=rules.anomaly_scores.output.cells,
        samples="results/data/{dataset}/samples.parquet",
    output:
        curves=anomaly_figure("curves"),
        distribution=anomaly_figure("distribution"),
        top=anomaly_figure("top"),
        summary=anomaly_figure("summary"),
    log:
        "results/logs/plot_anomaly/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/plot_anomaly/{dataset}/{model}.tsv"
    wildcard_constraints:
        model=model_regex(anomaly_models()),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.anomaly.jobs:plot_anomaly",
    script:
        "../scripts/run_job.py"
