"""Train one model (rule train): model.pt, metrics.json, train_log.tsv; resumes from its checkpoint."""

from latent_atlas.runtime import run_script
from latent_atlas.training import train_and_save


def main():
    train_and_save(
        snakemake.input[0],
        snakemake.params.spec,
        model_path=snakemake.output.model,
        metrics_path=snakemake.output.metrics,
        log_path=snakemake.output.train_log,
        checkpoint_dir=snakemake.params.checkpoint_dir,
        name=snakemake.wildcards.model,
        seed=int(snakemake.config["seed"]),
    )


run_script(snakemake, main)
