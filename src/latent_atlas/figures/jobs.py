"""The figures stage's job: results/figures/MANIFEST.tsv (rule figure_manifest)."""

from __future__ import annotations

from latent_atlas.figures.manifest import write_manifest
from latent_atlas.runtime import Job


def figure_manifest(job: Job) -> None:
    """Every figure with its sha256, the rule that made it and the config hash."""
    write_manifest(figures=list(job.input), rules=job.params.rules, config_hash=job.params.config_hash,
                   path=job.output[0])
