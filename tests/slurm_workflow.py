"""Running the workflow on the test SLURM cluster (tests/slurm_cluster.py) with profiles/slurm.

Shared by tests/test_slurm.py and the session fixtures in tests/conftest.py (the second clean run
of config/test.yaml goes through SLURM when a cluster can start).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from slurm_cluster import SlurmCluster

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

PROFILE = ROOT / "profiles" / "slurm"
# snakemake with the plugin's status-check back-off capped (the test cluster's jobs take seconds).
POLLING_SNAKEMAKE = ROOT / "tests" / "slurm" / "snakemake_polling.py"
# The plugin waits `init` seconds before its first status check and then backs off by 10 s per
# round in which no job finished; these keep a test run fast. `squeue` because the test cluster
# has no accounting database (sacct would fail); MinJobAge=300 keeps finished jobs in squeue.
FAST_POLLING = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
                "--seconds-between-status-checks", "1"]
# The test node: every job fits next to another (2 CPUs here), memory is only a scheduling number.
NODE_CAPS = {"cpus_per_task": 1, "mem_mb": 1000}


def profile_resources(profile: Path = PROFILE, partition: str = "main") -> tuple[list[str], list[str]]:
    """The profile's default-resources and set-resources as command-line values, fitted to the test
    node: the partition placeholders become `partition`, CPUs and memory are capped."""
    cfg = yaml.safe_load((profile / "config.yaml").read_text())

    def fit(key: str, value):
        if key == "slurm_partition":
            return partition
        return min(int(value), NODE_CAPS[key]) if key in NODE_CAPS else value

    defaults = [f"{k}={fit(k, v)}" for k, v in cfg["default-resources"].items()]
    per_rule = [f"{rule}:{k}={fit(k, v)}" for rule, res in cfg["set-resources"].items() for k, v in res.items()]
    return defaults, per_rule


def run_on_cluster(cluster: SlurmCluster, workdir: Path, *args: str, snakefile: Path = ROOT / "Snakefile",
                   timeout: int = 900) -> subprocess.CompletedProcess:
    """`snakemake --workflow-profile profiles/slurm` in `workdir`, submitting to `cluster`."""
    defaults, per_rule = profile_resources()
    cmd = ["timeout", "-k", "15", str(timeout), sys.executable, str(POLLING_SNAKEMAKE), "--snakefile", str(snakefile),
           "--directory", str(workdir), "--workflow-profile", str(PROFILE),
           "--default-resources", *defaults, "--set-resources", *per_rule,
           "--retries", "0", "--jobs", "4", *FAST_POLLING, *args]
    env = cluster.env(dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout + 60)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake on SLURM failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-8000:]}{cluster.logs(15)}")
    return proc
