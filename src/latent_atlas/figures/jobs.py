"""The figures stage's job: results/figures/MANIFEST.tsv (rule figure_manifest)."""

from __future__ import annotations

from typing import Mapping

from latent_atlas.figures.manifest import write_manifest
from latent_atlas.runtime import Job


def figure_manifest(job: Job, *, rules: Mapping[str, str], config_hash: str) -> None:
    """Every figure with its sha256, the rule that made it (`rules`: path -> rule) and the hash of
    the whole config."""
    write_manifest(figures=list(job.input), rules=rules, config_hash=config_hash, path=job.output[0])
