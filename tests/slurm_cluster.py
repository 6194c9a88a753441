"""A private single-node SLURM cluster for tests: munged, slurmctld and slurmd on this machine.

Everything lives under one scratch folder (config, munge key and socket, state, spool, pid and log
files) and uses free TCP ports, so it touches neither /etc nor a cluster that may already run here.
Clients find it through `SLURM_CONF` (see `SlurmCluster.env`); because the SLURM jobstep executor
drops every `SLURM_*` variable before it calls `srun` inside a job, `env()` also puts a small `srun`
wrapper first on PATH that sets `SLURM_CONF` again. Daemons are stopped by the PIDs in their pid
files, never by name. Needs root (slurmd launches jobs) and Debian's packages
`slurmctld slurmd slurm-client munge`.

    with SlurmCluster(tmp_path / "slurm", gpus=1) as cluster:
        subprocess.run(["sbatch", ...], env=cluster.env(os.environ))

Run it by hand (python tests/slurm_cluster.py DIR) to get a cluster until Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scancel")
FAKE_GPU_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom")
INSTALL_HINT = ("apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge "
                "(as root; `make system-deps` does it)")


def missing_requirements() -> list[str]:
    """What this machine lacks to start a cluster (empty when it can)."""
    missing = [b for b in BINARIES if not shutil.which(b) and not Path("/usr/sbin", b).exists()]
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        missing.append("root (slurmd must run as root to launch jobs)")
    return missing


def _which(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _real_memory_mb() -> int:
    """90% of what slurmd reports, so the node is never refused for having less than configured."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    mem = int(next(f.split("=")[1] for f in out.split() if f.startswith("RealMemory=")))
    return max(500, int(mem * 0.9))


class SlurmCluster:
    """One node (this machine) in one partition `main`, with `gpus` fake GPUs (GRES on /dev/null, /dev/zero, ...).

    Parameters
    ----------
    root : path
        Scratch folder for everything the cluster writes; created, and removed by `stop()`.
    gpus : int
        Fake GPUs of the node, so jobs asking `--gpus=1` schedule; a job sees the one SLURM bound to
        it in CUDA_VISIBLE_DEVICES (0 .. gpus-1).
    """

    def __init__(self, root: str | os.PathLike, gpus: int = 1, cpus: int | None = None):
        self.root = Path(root).resolve()
        if not 0 <= gpus <= len(FAKE_GPU_DEVICES):
            raise ValueError(f"gpus: 0 to {len(FAKE_GPU_DEVICES)} fake GPUs, got {gpus}")
        self.gpus = gpus
        self.cpus = cpus or os.cpu_count() or 1
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "etc" / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self._pid_files = {
            "slurmd": self.root / "run" / "slurmd.pid",
            "slurmctld": self.root / "run" / "slurmctld.pid",
            "munged": self.root / "munge" / "munged.pid",
        }

    # -- environment for clients -------------------------------------------------------------
    def env(self, base: dict | os._Environ | None = None) -> dict:
        """`base` (default os.environ) plus SLURM_CONF pointing at this cluster."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = os.pathsep.join([str(self.root / "bin"), env.get("PATH", os.defpath)])
        env.pop("SLURM_JOB_ID", None)
        return env

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, env=self.env(), timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}{self.logs()}")
        return proc

    # -- life cycle --------------------------------------------------------------------------
    def __enter__(self) -> SlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 60) -> None:
        missing = missing_requirements()
        if missing:
            raise RuntimeError(f"cannot start a SLURM cluster, missing: {', '.join(missing)}. {INSTALL_HINT}")
        for sub in ("bin", "etc", "munge", "run", "state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        srun = self.root / "bin" / "srun"
        search = os.pathsep.join(p for p in os.environ.get("PATH", os.defpath).split(os.pathsep)
                                 if Path(p).resolve() != srun.parent)
        real_srun = shutil.which("srun", path=search) or "/usr/bin/srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec {real_srun} "$@"\n')
        srun.chmod(0o755)
        os.chmod(self.root / "munge", 0o700)
        self._start_munge()
        self._write_config()
        self._daemon("slurmctld", _which("slurmctld"), "-f", str(self.conf))
        self._daemon("slurmd", _which("slurmd"), "-f", str(self.conf), "-N", self.node)
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            proc = self.run("sinfo", "-h", "-n", self.node, "-o", "%T", check=False)
            state = proc.stdout.strip()
            if state == "idle":
                return
            time.sleep(0.3)
        raise RuntimeError(f"SLURM node {self.node} not idle after {timeout:g} s (state {state!r}){self.logs()}")

    def _start_munge(self) -> None:
        key = self.root / "munge" / "munge.key"
        subprocess.run([_which("mungekey"), "--create", "--force", f"--keyfile={key}"], check=True,
                       capture_output=True, text=True)
        os.chmod(key, 0o600)
        # --force: munged refuses to run as root otherwise; this one only serves our socket.
        self._daemon("munged", _which("munged"), "--force", f"--socket={self.munge_socket}",
                     f"--key-file={key}", f"--pid-file={self._pid_files['munged']}",
                     f"--log-file={self.root / 'log' / 'munged.log'}",
                     f"--seed-file={self.root / 'munge' / 'munged.seed'}")
        for _ in range(100):
            if self.munge_socket.exists():
                return
            time.sleep(0.05)
        raise RuntimeError(f"munged did not create {self.munge_socket}{self.logs()}")

    def _daemon(self, name: str, *cmd: str) -> None:
        """Start a self-daemonising program and wait for its pid file."""
        proc = subprocess.run(list(cmd), capture_output=True, text=True, env=self.env(), timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} failed to start ({proc.returncode}): {proc.stderr}{self.logs()}")
        pid_file = self._pid_files[name]
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text().strip():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{name} wrote no pid file {pid_file}{self.logs()}")

    def _write_config(self) -> None:
        ctld_port, slurmd_port = _free_ports(2)
        r = self.root
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        self.conf.write_text(f"""\
ClusterName=latentatlas
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={self._pid_files['slurmctld']}
SlurmdPidFile={self._pid_files['slurmd']}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
MpiDefault=none
ReturnToService=2
MinJobAge=300
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
GresTypes=gpu
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={_real_memory_mb()}{gres} State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        # Fake devices: slurmd wants a character device per GPU to bind (no cgroups confine
        # devices here), any will do.
        lines = ["AutoDetect=off"] + [f"NodeName={self.node} Name=gpu File={dev}"
                                      for dev in FAKE_GPU_DEVICES[:self.gpus]]
        (self.conf.parent / "gres.conf").write_text("\n".join(lines) + "\n")

    def stop(self, remove: bool = True) -> None:
        """Cancel every job, stop the daemons by PID, remove the scratch folder."""
        if self.conf.exists() and self._alive("slurmctld"):
            self.run("scancel", "--full", "--user", str(os.getuid()), check=False)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                out = self.run("squeue", "-h", "-o", "%i", check=False)
                if out.returncode != 0 or not out.stdout.strip():
                    break
                time.sleep(0.3)
        for name in ("slurmd", "slurmctld", "munged"):
            self._kill(name)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def _pid(self, name: str) -> int | None:
        try:
            return int(self._pid_files[name].read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _alive(self, name: str) -> bool:
        pid = self._pid(name)
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def _kill(self, name: str, timeout: float = 10) -> None:
        pid = self._pid(name)
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def pids(self) -> dict[str, int | None]:
        return {name: self._pid(name) for name in self._pid_files}

    def logs(self, tail: int = 40) -> str:
        """The last lines of each daemon's log, for error messages."""
        out = []
        for log_file in sorted((self.root / "log").glob("*.log")):
            lines = log_file.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"\n--- {log_file.name} ---\n" + "\n".join(lines))
        return "".join(out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} SCRATCH_DIR   (starts a cluster; Ctrl-C stops it)")
    with SlurmCluster(sys.argv[1]) as c:
        print(f"cluster up: export SLURM_CONF={c.conf}   (Ctrl-C stops it)", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
