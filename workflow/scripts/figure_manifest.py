"""Write results/figures/MANIFEST.tsv: every figure with its sha256, the rule that made it, the config hash."""

from latent_atlas.figures import write_manifest
from latent_atlas.runtime import run_script


def main():
    write_manifest(
        figures=list(snakemake.input),
        rules=snakemake.params.rules,
        config_hash=snakemake.params.config_hash,
        path=snakemake.output[0],
    )


run_script(snakemake, main)
