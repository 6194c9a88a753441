"""GPU slots (latent_atlas.gpu): separate processes drawing from a fake pool, no GPU needed."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT
from latent_atlas import gpu

# A job in its own process: take a slot, report the device, hold it until `release` exists.
HOLDER = """
import os, sys, time
from pathlib import Path
from latent_atlas.gpu import gpu_slot
pool, lock_dir, release, timeout = sys.argv[1].split(","), sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
print("started", flush=True)
with gpu_slot(pool, lock_dir=lock_dir, wait_timeout=timeout, poll_seconds=0.05,
              jobs_per_gpu=int(os.environ.get("JOBS_PER_GPU", "1"))) as device:
    print("device", device, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
    while not release.exists():
        time.sleep(0.02)
"""


class Holder:
    """One holder process; `device()` waits for the id it took."""

    def __init__(self, tmp: Path, name: str, pool: str = "0,1", timeout: float = 30, env=None):
        self.release = tmp / f"release-{name}"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, pool, str(tmp / "locks"), str(self.release), str(timeout)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT / "src"), **(env or {})),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.next_line(60) == "started"

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def next_line(self, timeout: float) -> str | None:
        """The child's next stdout line, or None after `timeout` seconds."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def device(self, timeout: float = 20) -> str:
        """The device id the holder took (it checks CUDA_VISIBLE_DEVICES equals it)."""
        line = self.next_line(timeout)
        assert line, f"holder got no slot: {self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        _, device, visible = line.split()
        assert device == visible
        return device

    def finish(self) -> None:
        self.release.touch()
        assert self.proc.wait(20) == 0, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def holders(tmp_path):
    made: list[Holder] = []

    def start(name: str, **kw) -> Holder:
        h = Holder(tmp_path, name, **kw)
        made.append(h)
        return h

    yield start
    for h in made:
        h.kill()


def test_two_jobs_get_different_devices_and_a_third_waits(holders):
    a, b = holders("a"), holders("b")
    first, second = a.device(), b.device()
    assert {first, second} == {"0", "1"}
    c = holders("c")
    assert c.next_line(1.5) is None, "a third job took a slot while both were held"
    b.finish()
    assert c.device() == second
    a.finish()
    c.finish()


def test_slot_of_a_killed_holder_is_taken_again(holders):
    a = holders("a", pool="0")
    assert a.device() == "0"
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    b = holders("b", pool="0", timeout=5)
    assert b.device(timeout=5) == "0"
    b.finish()


def test_jobs_per_gpu_lets_jobs_share_a_device(holders):
    a = holders("a", pool="3", env={"JOBS_PER_GPU": "2"})
    b = holders("b", pool="3", env={"JOBS_PER_GPU": "2"})
    assert a.device() == b.device() == "3"
    c = holders("c", pool="3", env={"JOBS_PER_GPU": "2"})
    assert c.next_line(1.0) is None
    a.finish()
    assert c.device() == "3"
    b.finish()
    c.finish()


def test_wait_times_out_with_a_clear_message(holders, tmp_path):
    a = holders("a", pool="0")
    assert a.device() == "0"
    t0 = time.monotonic()
    with pytest.raises(gpu.GPUSlotTimeout, match=r"no free GPU slot after 0.3 s.*pool \[0\].*--resources gpu=1"):
        with gpu.gpu_slot(["0"], lock_dir=tmp_path / "locks", wait_timeout=0.3, poll_seconds=0.05):
            pass
    assert time.monotonic() - t0 < 5
    a.finish()


def test_slot_sets_and_restores_cuda_visible_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    with gpu.gpu_slot(["5"], lock_dir=tmp_path) as device:
        assert device == "5" and os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,5"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with gpu.gpu_slot(["7"], lock_dir=tmp_path):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "7"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_under_slurm_the_environment_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv(gpu.POOL_ENV, "0,1")
    before = dict(os.environ)
    lock_dir = tmp_path / "locks"
    with gpu.job_gpu_slot(1, {"pool": [2, 3], "lock_dir": str(lock_dir)}) as device:
        assert device is None
        assert dict(os.environ) == before
    assert dict(os.environ) == before
    assert not lock_dir.exists()


def test_no_gpu_runs_on_cpu_untouched(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv(gpu.POOL_ENV, raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu, "visible_device_count", lambda: 0)
    lock_dir = tmp_path / "locks"
    with gpu.job_gpu_slot(1, {"pool": "all", "lock_dir": str(lock_dir)}) as device:
        assert device is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    with gpu.job_gpu_slot(1, {"pool": "none", "lock_dir": str(lock_dir)}) as device:
        assert device is None
    # A rule without a gpu resource never takes a slot, whatever the pool.
    with gpu.job_gpu_slot(0, {"pool": [0], "lock_dir": str(lock_dir)}) as device:
        assert device is None
    assert not lock_dir.exists()


def test_job_slot_uses_config_pool_and_environment_override(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv(gpu.POOL_ENV, raising=False)
    section = {"pool": [6], "lock_dir": str(tmp_path / "cfg")}
    with gpu.job_gpu_slot(1, section) as device:
        assert device == "6"
    monkeypatch.setenv(gpu.POOL_ENV, "9")
    monkeypatch.setenv(gpu.LOCK_DIR_ENV, str(tmp_path / "env"))
    with gpu.job_gpu_slot(1, section) as device:
        assert device == "9"
    assert sorted(p.name for p in (tmp_path / "env").iterdir()) == ["gpu-9.slot0.lock"]


@pytest.mark.parametrize(
    ("pool", "env", "expected"),
    [
        ("all", {"CUDA_VISIBLE_DEVICES": "2,3"}, ["2", "3"]),
        ("all", {"CUDA_VISIBLE_DEVICES": ""}, []),
        ("all", {"CUDA_VISIBLE_DEVICES": "-1"}, []),
        ([0, 1, 1], {}, ["0", "1"]),
        (["GPU-8f1c"], {}, ["GPU-8f1c"]),
        ("none", {}, []),
        ([], {}, []),
        ("all", {gpu.POOL_ENV: "0, 1"}, ["0", "1"]),
        ([5], {gpu.POOL_ENV: "none"}, []),
    ],
)
def test_resolve_pool(pool, env, expected):
    assert gpu.resolve_pool(pool, env) == expected


def test_resolve_pool_all_counts_devices_without_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(gpu, "visible_device_count", lambda: 4)
    assert gpu.resolve_pool("all", {}) == ["0", "1", "2", "3"]


def test_slots_spread_over_devices_first():
    assert gpu.slot_order(["0", "1"], 2) == [("0", 0), ("1", 0), ("0", 1), ("1", 1)]
    with pytest.raises(ValueError, match="jobs_per_gpu"):
        gpu.slot_order(["0"], 0)


def slot_devices(workdir: Path) -> dict[Path, list[str]]:
    """Device ids in the GPU-slot lines of every log file under workdir/results/logs."""
    return {log_file: re.findall(r"GPU slot \d+ of device (\S+) \(CUDA_VISIBLE_DEVICES=", log_file.read_text())
            for log_file in sorted((workdir / "results" / "logs").rglob("*.log"))}


def slot_intervals(workdir: Path) -> list[tuple[str, str, str, str]]:
    """(device, taken at, released at, log file) of every GPU slot held, from the job logs."""
    stamp = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) .*"
    out = []
    for log_file in sorted((workdir / "results" / "logs").rglob("*.log")):
        text = log_file.read_text()
        taken = re.findall(stamp + r"GPU slot \d+ of device (\S+) \(CUDA_VISIBLE_DEVICES=", text, flags=re.M)
        freed = re.findall(stamp + r"released GPU slot \d+ of device (\S+)", text, flags=re.M)
        for (start, device), (end, _) in zip(taken, freed):
            out.append((device, start, end, log_file.name))
    return out


def workflow_gpu_rules() -> set[str]:
    """Rules of the workflow that declare `resources: gpu=N` with N > 0 (read from the rule files)."""
    names = set()
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^(?=rule |checkpoint )", smk.read_text(), flags=re.M)[1:]:
            name = re.match(r"(?:rule|checkpoint) (\w+)", block).group(1)
            if re.search(r"^\s+resources:\s*\n(?:\s+\w+=.*\n)*?\s+gpu=\s*[1-9]", block, flags=re.M):
                names.add(name)
    return names


@pytest.mark.slow
def test_local_run_spreads_gpu_jobs_over_a_fake_pool(e2e_run):
    """`--cores 2 --resources gpu=2` with pool 0,1: the logs of the GPU rules show both ids.

    The shared end-to-end run (tests/conftest.py::e2e_run) uses that pool: the device changes
    no result, so this test reads its logs.
    """
    gpu_rules = workflow_gpu_rules()
    assert {"train", "importance_block"} <= gpu_rules, gpu_rules
    workdir, logs = e2e_run, slot_devices(e2e_run)
    assert any(logs.values()), "the shared end-to-end run logged no GPU slot (tests/conftest.py::e2e_run)"
    used: dict[str, list[str]] = {}
    for log_file, ids in logs.items():
        rule = log_file.relative_to(workdir / "results" / "logs").parts[0]
        if rule in gpu_rules:
            assert len(ids) == 1 and ids[0] in ("0", "1"), f"{log_file}: GPU slot lines {ids}"
            used.setdefault(rule, []).extend(ids)
        else:
            assert not ids, f"{log_file}: rule {rule} declares no gpu but took a slot"
    assert "train" in used
    assert len(used.get("importance_block", [])) > 1, f"fewer than two importance shards ran: {used}"
    # Jobs spread over both devices, and jobs holding slots at the same time never share one
    # (one job per GPU). Which device a given shard gets depends on what else runs then.
    assert {d for ids in used.values() for d in ids} == {"0", "1"}, used
    holds = slot_intervals(workdir)
    for i, (dev_a, start_a, end_a, who_a) in enumerate(holds):
        for dev_b, start_b, end_b, who_b in holds[i + 1:]:
            if dev_a == dev_b:
                assert not (start_a < end_b and start_b < end_a), f"{who_a} and {who_b} shared device {dev_a}"


def test_jobs_one_after_another_alternate_devices(tmp_path, monkeypatch):
    """A free slot is taken least-recently-used first, so sequential jobs spread over the pool."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    taken = []
    for _ in range(4):
        with gpu.gpu_slot(["0", "1"], lock_dir=tmp_path) as device:
            taken.append(device)
    assert taken == ["0", "1", "0", "1"]


def test_failed_gpu_probe_warns_with_the_reason(monkeypatch, caplog):
    """A probe that cannot count devices says why instead of silently turning slots off."""
    monkeypatch.setattr(gpu.Path, "is_dir", lambda self: True)  # pretend an NVIDIA driver is there
    monkeypatch.setattr(gpu.sys, "executable", "/bin/false")
    with caplog.at_level("WARNING", logger="latent_atlas"):
        assert gpu.visible_device_count() == 0
    assert "GPU probe failed (exit status 1" in caplog.text
    assert "LATENT_ATLAS_GPU_POOL" in caplog.text
