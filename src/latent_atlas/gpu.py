"""GPU slots for local runs: each GPU job on a workstation gets a device of its own.

Snakemake only counts a `gpu` resource (`--resources gpu=4`); it never tells a job which device
to use, so GPU jobs started together would all land on device 0. Every rule that declares
`resources: gpu=N` (N > 0) runs its script inside `job_gpu_slot` (see `runtime.run_script`): the job
takes a free slot of the pool, one OS file lock (`fcntl.flock`) per slot, sets
`CUDA_VISIBLE_DEVICES` to that slot's device id for its own work and frees the slot when it ends.
The kernel drops a flock when its holder exits, so a crashed or killed job never blocks a slot.

Nothing happens under SLURM (`SLURM_JOB_ID` set: the scheduler already chose the device) or when
the pool is empty (no GPU: the job runs on CPU as before).

The pool comes from the config's `gpu:` section or, taking precedence, from environment variables
(machine settings that should not change the config and with it the config hash):

- `LATENT_ATLAS_GPU_POOL`: `all`, `none` or comma-separated device ids (`0,1,2,3`).
- `LATENT_ATLAS_JOBS_PER_GPU`: jobs that may share one device.
- `LATENT_ATLAS_GPU_LOCK_DIR`: folder of the slot locks (share it between workflows that run on
  the same machine at the same time).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from latent_atlas.schema import defaults

log = logging.getLogger("latent_atlas")

POOL_ENV = "LATENT_ATLAS_GPU_POOL"
JOBS_PER_GPU_ENV = "LATENT_ATLAS_JOBS_PER_GPU"
LOCK_DIR_ENV = "LATENT_ATLAS_GPU_LOCK_DIR"

# The `gpu:` section's defaults, from the config schema (the only place they are written).
DEFAULTS = defaults("#/properties/gpu")
POLL_SECONDS = 1.0  # how often a waiting job looks for a free slot


class GPUSlotTimeout(TimeoutError):
    """No slot of the pool became free within the configured wait."""


def _parse_ids(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def visible_device_count() -> int:
    """Number of CUDA devices on this machine, without initialising CUDA in this process.

    CUDA reads `CUDA_VISIBLE_DEVICES` once, when it initialises; counting devices with torch here
    could initialise it before the slot's id is set. So: no NVIDIA driver, no devices (cheap);
    otherwise torch counts them in a child process.
    """
    if not Path("/proc/driver/nvidia/gpus").is_dir() and sys.platform.startswith("linux"):
        return 0
    code = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, env=env)
    except (subprocess.SubprocessError, OSError) as err:
        log.warning("GPU probe failed (%s): counting 0 devices, so GPU slots are off", err)
        return 0
    try:
        if proc.returncode != 0:
            raise ValueError(f"exit status {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return int(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as err:
        reason = err if isinstance(err, ValueError) and proc.returncode else f"unreadable output {proc.stdout!r}"
        log.warning("GPU probe failed (%s): counting 0 devices, so GPU slots are off; "
                    "set LATENT_ATLAS_GPU_POOL to name the devices", reason)
        return 0


def resolve_pool(pool: str | int | Sequence[str | int] | None = "all",
                 environ: Mapping[str, str] | None = None) -> list[str]:
    """Device ids a job may take, as strings for `CUDA_VISIBLE_DEVICES`.

    Parameters
    ----------
    pool : "all", "none", a comma-separated string, an int or a list of ids (ints or GPU UUIDs)
        `all` = the ids in `CUDA_VISIBLE_DEVICES` when it is set, else every device of this
        machine (0 .. n-1); `none` or an empty list = no GPU. `LATENT_ATLAS_GPU_POOL` in the
        environment takes precedence over this argument.
    environ : mapping, default os.environ

    Returns
    -------
    ids : list of str, in pool order, without duplicates; empty when there is no GPU.
    """
    env = os.environ if environ is None else environ
    if env.get(POOL_ENV, "").strip():
        pool = env[POOL_ENV].strip()
    if pool is None:
        pool = "all"
    if isinstance(pool, int):
        ids = [str(pool)]
    elif isinstance(pool, str):
        word = pool.strip().lower()
        if word == "none":
            ids = []
        elif word == "all":
            if "CUDA_VISIBLE_DEVICES" in env:
                # "" or "-1" mean no device (CUDA's own convention).
                ids = [i for i in _parse_ids(env["CUDA_VISIBLE_DEVICES"]) if i != "-1"]
            else:
                ids = [str(i) for i in range(visible_device_count())]
        else:
            ids = _parse_ids(pool)
    else:
        ids = [str(i).strip() for i in pool]
    if any(not i or "," in i for i in ids):
        raise ValueError(f"gpu.pool: device ids must be non-empty and contain no comma, got {pool!r}")
    return list(dict.fromkeys(ids))


def slot_order(ids: Sequence[str], jobs_per_gpu: int) -> list[tuple[str, int]]:
    """Slots (device id, index on that device), interleaved so jobs spread over devices first."""
    if jobs_per_gpu < 1:
        raise ValueError(f"gpu.jobs_per_gpu: must be at least 1, got {jobs_per_gpu}")
    return [(device, k) for k in range(jobs_per_gpu) for device in ids]


def _lock_name(device: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in device)


def _slot_path(lock_dir: Path, device: str, k: int) -> Path:
    return lock_dir / f"gpu-{_lock_name(device)}.slot{k}.lock"


def _least_recently_used_first(slots: Sequence[tuple[str, int]], lock_dir: Path) -> list[tuple[str, int]]:
    """`slots` ordered by when each was last taken (never taken first; ties keep `slots` order),
    so jobs that follow one another also spread over the devices instead of all taking the first."""
    def last_taken(slot):
        # The holder writes "pid time_ns" (file mtimes are too coarse for jobs in quick succession).
        try:
            return int(_slot_path(lock_dir, *slot).read_text().split()[1])
        except (FileNotFoundError, IndexError, ValueError):
            return -1
    return sorted(slots, key=last_taken)


def _try_slots(slots: Sequence[tuple[str, int]], lock_dir: Path) -> tuple[int, str, int] | None:
    """Lock the free slot taken least recently; return (open fd, device, index) or None when all
    are taken."""
    for device, k in _least_recently_used_first(slots, lock_dir):
        path = _slot_path(lock_dir, device, k)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                continue
            raise
        # Who holds it, for a person looking at the folder; the lock itself is the flock.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {time.time_ns()}\n".encode())
        return fd, device, k
    return None


@contextlib.contextmanager
def gpu_slot(ids: Sequence[str], *, jobs_per_gpu: int = 1,
             lock_dir: str | os.PathLike = DEFAULTS["lock_dir"],
             wait_timeout: float = DEFAULTS["wait_timeout"],
             poll_seconds: float = POLL_SECONDS,
             label: str = "job") -> Iterator[str | None]:
    """Hold one free slot of `ids` while the block runs, with `CUDA_VISIBLE_DEVICES` set to it.

    Parameters
    ----------
    ids : sequence of str
        The pool (see `resolve_pool`). Empty: nothing happens and the block gets None.
    jobs_per_gpu : int
        Slots per device.
    lock_dir : path
        Folder of the lock files (created), shared by every job that draws from this pool.
    wait_timeout : float
        Seconds to wait for a free slot before raising `GPUSlotTimeout`.
    poll_seconds : float
        Seconds between attempts while every slot is taken.
    label : str
        Names the job in log messages.

    Yields
    ------
    device : str or None
        The device id now in `CUDA_VISIBLE_DEVICES` (the job sees it as `cuda:0`).
    """
    if not ids:
        yield None
        return
    slots = slot_order(ids, jobs_per_gpu)
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    waited = False
    while (got := _try_slots(slots, lock_dir)) is None:
        if not waited:
            log.info("%s: all %d GPU slots of pool %s are taken; waiting (at most %g s)",
                     label, len(slots), ",".join(ids), wait_timeout)
            waited = True
        if time.monotonic() - start >= wait_timeout:
            raise GPUSlotTimeout(
                f"{label}: no free GPU slot after {wait_timeout:g} s: all {len(slots)} slots of pool "
                f"[{', '.join(ids)}] x {jobs_per_gpu} job(s) per GPU are held (locks in {lock_dir}). "
                f"Cap GPU jobs at the slot count (--resources gpu={len(slots)}), or raise "
                f"gpu.wait_timeout / gpu.jobs_per_gpu."
            )
        time.sleep(poll_seconds)
    fd, device, k = got
    previous = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    log.info("%s: GPU slot %d of device %s (CUDA_VISIBLE_DEVICES=%s, waited %.1f s)",
             label, k, device, device, time.monotonic() - start)
    try:
        yield device
    finally:
        if previous is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = previous
        os.close(fd)  # releases the flock
        log.info("%s: released GPU slot %d of device %s", label, k, device)


def settings(section: Mapping | None, environ: Mapping[str, str] | None = None) -> dict:
    """The `gpu:` config section with defaults filled in and environment overrides applied."""
    env = os.environ if environ is None else environ
    out = dict(DEFAULTS)
    out.update({k: v for k, v in (section or {}).items() if v is not None})
    if env.get(JOBS_PER_GPU_ENV, "").strip():
        try:
            out["jobs_per_gpu"] = int(env[JOBS_PER_GPU_ENV])
        except ValueError:
            raise ValueError(f"{JOBS_PER_GPU_ENV}: expected an integer, got {env[JOBS_PER_GPU_ENV]!r}") from None
    if env.get(LOCK_DIR_ENV, "").strip():
        out["lock_dir"] = env[LOCK_DIR_ENV]
    return out


@contextlib.contextmanager
def job_gpu_slot(gpus: int, section: Mapping | None = None, label: str = "job",
                 environ: Mapping[str, str] | None = None) -> Iterator[str | None]:
    """The slot of one workflow job that declares `resources: gpu=<gpus>`.

    Does nothing (yields None, environment untouched) when the job asks for no GPU, under SLURM
    (`SLURM_JOB_ID` set) or when the pool is empty; otherwise holds one slot (see `gpu_slot`).
    Jobs that ask for several GPUs still get one slot: the workflow's GPU rules use one device.
    """
    env = os.environ if environ is None else environ
    if gpus <= 0:
        yield None
        return
    if env.get("SLURM_JOB_ID"):
        log.info("%s: SLURM job %s: using the scheduler's GPU (CUDA_VISIBLE_DEVICES=%s)", label,
                 env["SLURM_JOB_ID"], env.get("CUDA_VISIBLE_DEVICES", "<unset>"))
        yield None
        return
    cfg = settings(section, env)
    ids = resolve_pool(cfg["pool"], env)
    if not ids:
        log.info("%s: no GPU in the pool: running on CPU", label)
        yield None
        return
    with gpu_slot(ids, jobs_per_gpu=int(cfg["jobs_per_gpu"]), lock_dir=cfg["lock_dir"],
                  wait_timeout=float(cfg["wait_timeout"]), poll_seconds=float(cfg.get("poll_seconds", POLL_SECONDS)),
                  label=label) as device:
        log.info("%s: %s", label, _describe_cuda(device))
        yield device


def _describe_cuda(device: str) -> str:
    """What torch sees now that CUDA_VISIBLE_DEVICES holds only `device` (for the job's log)."""
    try:
        import torch
    except ImportError:
        return "torch not installed"
    if not torch.cuda.is_available():
        return "CUDA is not available here: the job runs on CPU"
    return f"cuda:0 is device {device} ({torch.cuda.get_device_name(0)})"
