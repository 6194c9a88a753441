"""latent-atlas as a Snakemake module of another workflow: README.md's snippet, run as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, SNAKEMAKE, TEST_CONFIG


def _readme_snippet() -> str:
    """The first Python block of README.md's section "Use it as a module in your workflow"."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use it as a module in your workflow", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _outer(workdir, *args: str, timeout: int = 300) -> str:
    """Run Snakemake on the outer workflow in `workdir`. No PYTHONPATH: the module's Snakefile
    must put latent-atlas's src/ on the path itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SLURM_JOB_ID")}
    proc = subprocess.run([SNAKEMAKE, *args], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


def _rules(out: str) -> set[str]:
    return {line.strip() for line in out.splitlines() if re.fullmatch(r"\s*\w+\s*", line)}


@pytest.mark.slow
def test_workflow_runs_as_a_module_with_renamed_rules(tmp_path):
    snippet = _readme_snippet()
    assert "path/to/latent-atlas/Snakefile" in snippet
    (tmp_path / "Snakefile").write_text(snippet.replace("path/to/latent-atlas", str(ROOT)))
    (tmp_path / "config").mkdir()
    shutil.copy(TEST_CONFIG, tmp_path / "config" / "config.yaml")

    # Every rule of the workflow, and only those, under its la_ name.
    own = _rules(_outer(tmp_path, "--snakefile", str(ROOT / "Snakefile"), "--configfile",
                        str(TEST_CONFIG), "--list-rules"))
    assert {"train", "importance_block", "atlas", "figure_manifest"} <= own
    assert _rules(_outer(tmp_path, "--list-rules")) == {f"la_{rule}" for rule in own}
    dry = _outer(tmp_path, "-n", "--quiet", "rules")
    for rule in ("la_prepare_data", "la_train", "la_importance_plan", "la_figure_manifest"):
        assert re.search(rf"^{rule}\s+\d+$", dry, re.M), dry[-3000:]

    # A real run of a few renamed jobs, GPU rule (train) included: each finds its job function.
    targets = ["results/figures/data/digits_examples.png", "results/digits/dense_ae/model.pt"]
    out = _outer(tmp_path, "--cores", "2", *targets)
    for rule in ("la_prepare_data", "la_plot_dataset_examples", "la_train"):
        assert f"(Rule: {rule})" in out, out[-3000:]
    for target in targets:
        assert (tmp_path / target).stat().st_size > 0, target
    log = (tmp_path / "results" / "logs" / "train" / "digits" / "dense_ae.log").read_text()
    assert "rule la_train" in log

