"""Workflow-level checks: config validation, dry runs, lint/format, the end-to-end run, determinism."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, SNAKEMAKE, run_snakemake
from latent_atlas.config import ConfigError, check_config, schema_errors
from latent_atlas.figures.manifest import read_manifest
from latent_atlas.io import sha256_file
from latent_atlas.schema import SCHEMA_PATH

TEST_CONFIG = ROOT / "config" / "test.yaml"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# --- config validation -------------------------------------------------------------------------

def test_shipped_configs_are_valid():
    for path in [ROOT / "config" / "config.yaml", TEST_CONFIG, *sorted((ROOT / "config" / "paper").glob("*.yaml")),
                 *sorted((ROOT / "config" / "examples").glob("*.yaml"))]:
        assert schema_errors(_load(path), SCHEMA_PATH) == [], path


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["datasets"]["digits"].update(bogus=1), "datasets.digits: Additional properties are not allowed ('bogus'"),
        (lambda c: c["models"]["dense_ae"]["train"].update(epochs="ten"), "models.dense_ae.train.epochs: 'ten' is not of type 'integer'"),
        (lambda c: c["models"]["dense_ae"].update(arch="transformer"), "models.dense_ae.arch: 'transformer' is not one of"),
        (lambda c: c.update(colour="red"), "<top level>: Additional properties are not allowed ('colour'"),
    ],
)
def test_schema_errors_name_the_key_path(mutate, expected):
    cfg = _load(TEST_CONFIG)
    mutate(cfg)
    errors = schema_errors(cfg, SCHEMA_PATH)
    assert any(e.startswith(expected) for e in errors), errors


def test_cross_reference_errors_name_the_key_path():
    cfg = _load(TEST_CONFIG)
    cfg["models"]["dense_ae"]["dataset"] = "nowhere"
    with pytest.raises(ConfigError, match=r"models\.dense_ae\.dataset: 'nowhere' is not a defined dataset"):
        check_config(cfg)
    cfg = _load(TEST_CONFIG)
    cfg["featureviz"] = {"models": ["dense_ae"]}
    with pytest.raises(ConfigError, match=r"featureviz\.models\[0\]: model 'dense_ae' cannot run featureviz: "
                                          r"featureviz takes classifier models; it is an autoencoder"):
        check_config(cfg)
    # Any section with a models list is checked, also one a new stage adds.
    cfg = _load(TEST_CONFIG)
    cfg["norms"] = {"models": ["conv_ae", "conv_aee"]}
    with pytest.raises(ConfigError, match=r"norms\.models\[1\]: 'conv_aee' is not a defined model"):
        check_config(cfg)


def test_invalid_config_stops_before_any_job(tmp_path):
    cfg = _load(TEST_CONFIG)
    cfg["models"]["dense_ae"]["dataset"] = "nowhere"
    proc = run_snakemake(tmp_path, "-n", configfile=_write(tmp_path, cfg), check=False)
    assert proc.returncode != 0
    assert "models.dense_ae.dataset: 'nowhere' is not a defined dataset" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


# --- the workflow as a whole -------------------------------------------------------------------

@pytest.mark.parametrize("configfile", [ROOT / "config" / "config.yaml", TEST_CONFIG])
def test_dry_run(tmp_path, configfile):
    proc = run_snakemake(tmp_path, "-n", "--quiet", "rules", configfile=configfile)
    out = proc.stdout + proc.stderr
    for rule in ("prepare_data", "train", "extract_autoencoder", "extract_classifier_hidden", "figure_manifest"):
        assert rule in out, f"{rule} missing from the dry run of {configfile.name}:\n{out[-3000:]}"


def test_lint_reports_nothing(tmp_path):
    proc = run_snakemake(tmp_path, "--lint", configfile=TEST_CONFIG, check=False)
    out = proc.stdout + proc.stderr
    assert "Lints for" not in out, out[-6000:]
    assert proc.returncode == 0, out[-3000:]


def test_snakefmt_check_passes():
    snakefmt = str(Path(SNAKEMAKE).with_name("snakefmt"))
    files = ["Snakefile", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "workflow" / "rules").glob("*.smk"))]
    proc = subprocess.run([snakefmt, "--check", *files], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_end_to_end_outputs(e2e_run):
    results = e2e_run / "results"
    manifest = read_manifest(results / "figures" / "MANIFEST.tsv")
    assert len(manifest) > 0
    for row in manifest.itertuples():
        path = e2e_run / row.file
        assert path.exists(), row.file
        assert sha256_file(path) == row.sha256, row.file
        assert row.rule not in ("", "unknown"), row.file
    config = _load(TEST_CONFIG)
    for model, spec in config["models"].items():
        assert (results / spec["dataset"] / model / "latents.parquet").exists()
    for dataset in config["datasets"]:
        assert (results / "data" / dataset / "images.npy").exists() and (results / "data" / dataset / "samples.parquet").exists()


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.cluster_run
def test_same_config_gives_identical_files(e2e_run, second_run):
    """A second run from a clean results/ gives byte-identical Parquet files and figures (the
    second run goes through SLURM: see conftest.second_run; tests/test_slurm.py compares every
    other file too)."""
    first = read_manifest(e2e_run / "results" / "figures" / "MANIFEST.tsv")
    second = read_manifest(second_run.workdir / "results" / "figures" / "MANIFEST.tsv")
    assert len(first) > 0
    assert first.equals(second), first.compare(second)

    def parquet_hashes(workdir: Path) -> dict[str, str]:
        base = workdir / "results"
        return {str(p.relative_to(base)): sha256_file(p) for p in sorted(base.rglob("*.parquet"))}

    a, b = parquet_hashes(e2e_run), parquet_hashes(second_run.workdir)
    assert a and a.keys() == b.keys()
    differing = [k for k in a if a[k] != b[k]]
    assert not differing, f"{len(differing)} Parquet files differ (SLURM second run): {differing}"


@pytest.mark.slow
def test_report_builds(e2e_run):
    """The report names every figure of the manifest, and every caption renders (docutils
    reports errors in captions, e.g. a stray |substitution|, only as messages)."""
    report = e2e_run / "report.html"
    proc = run_snakemake(e2e_run, "--report", str(report), configfile=TEST_CONFIG, timeout=600)
    messages = [line for line in (proc.stdout + proc.stderr).splitlines() if "(ERROR/" in line or "(WARNING/" in line]
    assert not messages, messages
    text = report.read_text(errors="replace")
    assert report.stat().st_size > 10_000
    manifest = read_manifest(e2e_run / "results" / "figures" / "MANIFEST.tsv")
    # a folder atlas's files are listed in the manifest (rule atlas) but reach the report through
    # its atlas.html: the page itself (single layout) or a redirect to the folder's index.html
    folder = manifest["file"].str.contains(r"/atlas/", regex=True) & (manifest["rule"] == "atlas")
    assert folder.any() and not manifest.loc[folder, "file"].str.endswith(".snakemake_timestamp").any()
    missing = [f for f in manifest.loc[~folder, "file"] if Path(f).name not in text]
    assert not missing, f"figures missing from the report: {missing}"
    assert "Inglis" in text and "latent-space study" in text  # captions are rendered


def test_rule_table_is_current_and_rules_match_their_functions():
    """docs/architecture.md's rule table is what scripts/rule_table.py generates, every rule names
    a job function whose keyword-only arguments are the rule's params, and READS covers every rule."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "rule_table.py"), "--check"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]


def test_two_datasets_with_sections_at_their_defaults(tmp_path):
    """A config that ran before the atlas existed keeps running: two datasets (all digits; a 0/1
    subset), explain on the classifier of the first with two of its samples named, importance on an
    autoencoder of the second, every other section at its defaults. The atlas, on by default for
    every model, maps the subset's autoencoder without applying explain's sample ids to it (they
    are not in its dataset), and a sample id in no explained dataset is a config error."""
    from sklearn.datasets import load_digits

    target = load_digits().target
    ids = [int(i) for i in np.flatnonzero(target >= 2)[:2]]  # in the digits, not in the 0/1 subset
    tiny = {"epochs": 1, "batch_size": 64}
    cfg = {
        "seed": 0, "numeric_threads": 1,
        "datasets": {"digits": {"source": "sklearn_digits"},
                     "zero_one": {"source": "sklearn_digits", "classes": [0, 1]}},
        "models": {"cnn": {"dataset": "digits", "arch": "cnn_classifier",
                           "params": {"channels": [4, 8], "feature_dim": 16}, "train": tiny},
                   "ae01": {"dataset": "zero_one", "arch": "dense_ae", "params": {"latent_dim": 4}, "train": tiny}},
        "explain": {"models": ["cnn"], "n_samples": 100, "samples": {"ids": ids}},
        "importance": {"models": ["ae01"], "n_perm": 1},
    }
    configfile = _write(tmp_path, cfg)
    proc = run_snakemake(tmp_path, "-n", "--quiet", "rules", configfile=configfile)
    # importance_block's shards are known once the plan (a checkpoint) ran: the dry run lists the plan
    for rule in ("atlas_maps", "explain_maps", "importance_plan", "featureviz_gallery", "geometry_tsne"):
        assert rule in proc.stdout + proc.stderr, rule
    # the job that failed: the atlas's maps of the subset's autoencoder (and both stores)
    targets = ["results/zero_one/ae01/atlas/maps.parquet", "results/data/digits/samples.parquet"]
    run_snakemake(tmp_path, "--cores", "2", *targets, configfile=configfile)
    atlas_maps = pd.read_parquet(tmp_path / "results/zero_one/ae01/atlas/maps.parquet")
    assert len(atlas_maps) and set(atlas_maps["label"]) <= {0, 1}

    # Once the stores exist, check_config names a sample id that no explained dataset holds.
    cfg["explain"]["samples"]["ids"] = ids + [10**6]
    proc = run_snakemake(tmp_path, "-n", configfile=_write(tmp_path, cfg), check=False)
    assert proc.returncode != 0
    assert ("explain.samples.ids: sample ids [1000000] are not in dataset 'digits' of explain model 'cnn'"
            in proc.stdout + proc.stderr)
