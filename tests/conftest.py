"""Shared fixtures: paths, and one end-to-end Snakemake run of config/test.yaml per session.

Stage tests that check workflow outputs take `e2e_run` (the run's working directory) instead of
running Snakemake themselves, so the whole pipeline runs once per test session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FSDD = SHARED / "data" / "fsdd" / "recordings"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def run_snakemake(workdir: Path, *args: str, configfile: Path | None = None,
                  timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Run the workflow with its working directory `workdir` (results land in workdir/results)."""
    cmd = [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    cmd += list(args)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def e2e_run(tmp_path_factory) -> Path:
    """Run config/test.yaml end to end once; return the working directory holding results/.

    GPU rules run with a fake local pool of two devices ("0,1", two jobs at once): no result
    depends on the device, and tests/test_gpu.py reads from the logs how the jobs were spread.
    """
    workdir = tmp_path_factory.mktemp("e2e")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LATENT_ATLAS_GPU_POOL", "0,1")
        mp.delenv("SLURM_JOB_ID", raising=False)
        run_snakemake(workdir, "--cores", "2", "--resources", "gpu=2",
                      configfile=ROOT / "config" / "test.yaml", timeout=1200)
    return workdir
