# Stage: figures (rules are added by its issue).


rule figure_manifest:
    input:
        all_figures,
    output:
        "results/figures/MANIFEST.tsv",
    log:
        "results/logs/figure_manifest.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        rules=figure_rules,
        config_hash=CONFIG_HASH,
    script:
        "../scripts/figure_manifest.py"
