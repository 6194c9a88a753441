# Stage: figures. The manifest of every figure the stages registered (file, sha256, rule, config hash).


rule figure_manifest:
    input:
        all_figures,
    output:
        "results/figures/MANIFEST.tsv",
    log:
        "results/logs/figure_manifest.log",
    benchmark:
        "results/benchmarks/figure_manifest.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    params:
        job="latent_atlas.figures.jobs:figure_manifest",
        rules=figure_rules,
        config_hash=CONFIG_HASH,
    script:
        "../scripts/run_job.py"
