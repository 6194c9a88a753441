"""The SLURM profile, run for real on a single-node cluster started by the test (tests/slurm_cluster.py).

The cluster (munged, slurmctld, slurmd with a fake GPU; fixture `slurm_cluster` in conftest.py)
starts in a few seconds under a scratch folder and is stopped by PID and removed at the end of the
session, also when a test fails. Without the SLURM binaries (or root) the tests skip with the
install hint, except in CI (CI=true), where they fail. The SLURM run of config/test.yaml is the
session's second clean run (fixture `second_run`), which tests/test_workflow.py also compares
with the first for determinism; the tests that take it are marked `cluster_run` and run in
`make test-slurm` (CI runs it after `make test`), not in `make test`.

Run:  make test-slurm   (or .venv/bin/python -m pytest -m slurm tests/test_slurm.py for all)
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, run_snakemake
from slurm_workflow import PROFILE, run_on_cluster

TEST_CONFIG = ROOT / "config" / "test.yaml"
# Results that are not a function of the config: wall-clock logs and timings.
NOT_COMPARED = ("logs/", "benchmarks/")


def planned_resources(workdir: Path, *args: str) -> dict[str, dict[str, str]]:
    """Resources of each rule in a dry run of the test config (rule -> the last job's resources)."""
    proc = run_snakemake(workdir, "--cores", "2", "-n", *args, configfile=ROOT / "config" / "test.yaml")
    jobs = {}
    for block in re.split(r"^(?=(?:local)?(?:rule|checkpoint) \w+:)", proc.stdout + proc.stderr, flags=re.M):
        rule = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
        if rule and res:
            jobs[rule.group(1)] = dict(kv.split("=", 1) for kv in res.group(1).split(", ") if "=" in kv)
    return jobs


def test_profile_asks_slurm_for_gpus_and_per_rule_resources(tmp_path):
    """A dry run with the profile as shipped: every GPU rule asks gpu=1 on the GPU partition."""
    jobs = planned_resources(tmp_path, "--workflow-profile", str(PROFILE))
    gpu_rules = [r for r, res in jobs.items() if int(res.get("gpu", 0)) > 0]
    assert "train" in gpu_rules
    for rule in gpu_rules:
        assert jobs[rule]["slurm_partition"] == "your_gpu_partition", f"GPU rule {rule} not on the GPU partition"
    assert jobs["train"]["mem_mb"] == "16000" and jobs["train"]["cpus_per_task"] == "4"
    assert jobs["prepare_data"]["slurm_partition"] == "your_partition"
    assert "gpu" not in jobs["prepare_data"]
    assert all(r["slurm_account"] == "your_account" for r in jobs.values())
    cfg = yaml.safe_load((PROFILE / "config.yaml").read_text())
    unknown = set(cfg["set-resources"]) - workflow_rule_names()
    assert not unknown, f"profiles/slurm sets resources of rules the workflow does not run: {unknown}"
    extra = " ".join(str(res.get("slurm_extra", "")) for res in cfg["set-resources"].values())
    assert "--gres" not in extra and "--gpus" not in extra  # the plugin refuses them there


def workflow_rule_names() -> set[str]:
    """Every rule the workflow defines (also those that only run after a checkpoint)."""
    names = set()
    for smk in [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        text = smk.read_text()
        names |= set(re.findall(r"^(?:rule|checkpoint) (\w+):", text, flags=re.M))
        names |= set(re.findall(r"^use rule \w+ as (\w+)", text, flags=re.M))
    return names


@pytest.mark.slurm
def test_cluster_runs_a_gpu_job_and_a_cpu_job(slurm_cluster, tmp_path):
    """A two-rule workflow through --executor slurm: the gpu rule gets the node's (fake) GPU."""
    run_on_cluster(slurm_cluster, tmp_path, snakefile=ROOT / "tests" / "slurm" / "Snakefile", timeout=300)
    gpu_job = (tmp_path / "gpu.txt").read_text().split()
    cpu_job = (tmp_path / "cpu.txt").read_text().split()
    assert re.fullmatch(r"job=\d+", gpu_job[0]) and re.fullmatch(r"job=\d+", cpu_job[0])
    assert gpu_job[0] != cpu_job[0]
    assert gpu_job[1] in ("gpus=0", "gpus=1")  # SLURM bound a GPU: resources gpu=1 -> --gpus=1
    assert cpu_job[1] == "gpus=none"


def result_files(workdir: Path) -> dict[str, Path]:
    """Every file under workdir/results that the config determines, by path relative to results/."""
    base = workdir / "results"
    return {p.relative_to(base).as_posix(): p for p in sorted(base.rglob("*"))
            if p.is_file() and not p.relative_to(base).as_posix().startswith(NOT_COMPARED)
            and p.name != ".gitkeep"}


def comparable_bytes(path: Path) -> bytes:
    """The file's bytes, except for two things that are not results: a wall-clock `seconds`
    column of a .tsv table (dropped), and the folder name inside a torch .pt zip archive (torch
    names it after the temporary file it was written to; every member's bytes are compared)."""
    data = path.read_bytes()
    if path.suffix == ".tsv" and b"seconds" in data.split(b"\n", 1)[0]:
        frame = pd.read_csv(io.BytesIO(data), sep="\t").drop(columns="seconds")
        return frame.to_csv(sep="\t", index=False).encode()
    if path.suffix == ".pt" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return b"".join(info.filename.split("/", 1)[-1].encode() + b"\0" + archive.read(info)
                            for info in archive.infolist())
    return data


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.cluster_run
def test_test_config_on_slurm_equals_the_local_run(slurm_cluster, e2e_run, second_run):
    """config/test.yaml through --executor slurm, to the end; every result equals the local run's."""
    workdir, out = second_run.workdir, second_run.output
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert submitted, "no job went through SLURM"

    slurm, local = result_files(workdir), result_files(e2e_run)
    assert sorted(slurm) == sorted(local), (
        f"only on SLURM: {sorted(set(slurm) - set(local))}; only local: {sorted(set(local) - set(slurm))}")
    parquet = [k for k in slurm if k.endswith(".parquet")]
    figures = [k for k in slurm if k.startswith("figures/")]
    assert parquet and figures
    differ = [k for k in slurm if comparable_bytes(slurm[k]) != comparable_bytes(local[k])]
    digest = {k: hashlib.sha256(slurm[k].read_bytes()).hexdigest()[:12] for k in differ}
    assert not differ, f"{len(differ)} of {len(slurm)} files differ between SLURM and local runs: {digest}"

    # GPU rules ran under SLURM with the GPU the scheduler bound, and the local allocator stood aside.
    gpu_logs = [p for p in (workdir / "results" / "logs").rglob("*.log")
                if "using the scheduler's GPU" in p.read_text()]
    assert gpu_logs, "no GPU rule logged its SLURM job"
    for p in gpu_logs:
        assert re.search(r"SLURM job \d+: using the scheduler's GPU \(CUDA_VISIBLE_DEVICES=[01]\)", p.read_text()), p
