"""Shared fixtures: paths, and the end-to-end Snakemake runs of config/test.yaml per session.

Stage tests that check workflow outputs take `e2e_run` (the run's working directory) instead of
running Snakemake themselves, so the whole pipeline runs once per test session. A second clean run
(`second_run`, tests marked `cluster_run`: `make test-slurm`, run by CI after `make test`) goes
through the SLURM executor on a test cluster and checks both determinism and that SLURM gives the
local run's bytes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from slurm_cluster import INSTALL_HINT, SlurmCluster, missing_requirements

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FSDD = SHARED / "data" / "fsdd" / "recordings"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TEST_CONFIG = ROOT / "config" / "test.yaml"
CHROMIUM = "/usr/bin/chromium"


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


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def slurm_cluster():
    """A single-node SLURM cluster (munged, slurmctld, slurmd with two fake GPUs) for this session.

    Without the SLURM binaries (or root) the tests that take it skip with the install hint,
    except in CI (CI=true), where they fail.
    """
    missing = missing_requirements()
    if missing:
        message = f"SLURM test cluster cannot start, missing: {', '.join(missing)}. Install: {INSTALL_HINT}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    # A short path: munge's socket lives inside (UNIX socket paths are limited to ~107 bytes).
    root = Path(tempfile.mkdtemp(prefix="la-slurm-"))
    with SlurmCluster(root, gpus=2) as cluster:
        yield cluster
    assert not root.exists()


@dataclass
class SecondRun:
    workdir: Path
    output: str  # Snakemake's stdout + stderr


@pytest.fixture(scope="session")
def second_run(slurm_cluster, tmp_path_factory) -> SecondRun:
    """A second run of config/test.yaml from a clean results/, through `--executor slurm` on the
    test cluster. Tests that take it are marked `cluster_run` (`make test-slurm`, and CI)."""
    from slurm_workflow import run_on_cluster

    workdir = tmp_path_factory.mktemp("second")
    proc = run_on_cluster(slurm_cluster, workdir, "--configfile", str(TEST_CONFIG), timeout=2400)
    return SecondRun(workdir, proc.stdout + proc.stderr)


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium through Playwright, with no network (every page test shares it).

    In CI (CI=true) a missing Chromium fails the browser tests; locally they skip with the
    install hint.
    """
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        msg = ("Debian's chromium is not installed (apt-get install -y --no-install-recommends "
               "chromium, or `make system-deps`)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    sync_api = pytest.importorskip("playwright.sync_api")
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"chromium-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp / "config"), XDG_CACHE_HOME=str(tmp / "cache"))
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, env=env,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"])
        yield b
        b.close()
    shutil.rmtree(tmp, ignore_errors=True)
