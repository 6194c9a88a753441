"""The script of every rule: run the job function named after the rule (latent_atlas.runtime.run_job)."""

from latent_atlas.runtime import run_job

run_job(snakemake)  # noqa: F821 (Snakemake defines it)
