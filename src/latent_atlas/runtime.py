"""What every job does first: log to its Snakemake log file, fix threads and seeds.

`workflow/scripts/*.py` call `start_job(snakemake)` and then one library function.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from pathlib import Path

import numpy as np

from latent_atlas.gpu import job_gpu_slot

log = logging.getLogger("latent_atlas")


def configure_logging(log_path: str | os.PathLike | None) -> None:
    """Send the library's log records to `log_path` (and to stderr, for the terminal)."""
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for h in handlers:
        h.setFormatter(fmt)
        log.addHandler(h)


_SETTINGS: dict[str, int] = {}


def set_determinism(seed: int, threads: int) -> None:
    """Seed python and numpy, fix the thread count that float results depend on, and set up torch.

    torch is set up now if the job already imported it; code that imports torch later calls
    `configure_torch()` (models.load_model does). Importing torch costs seconds, so jobs that do not
    need it (most analyses and figures) never import it.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    _SETTINGS.update(seed=int(seed), threads=int(threads))
    _SETTINGS.pop("torch_done", None)
    if "torch" in sys.modules:
        configure_torch()


def configure_torch():
    """Apply the job's seed, thread count and deterministic algorithms to torch; return torch.

    Idempotent; does nothing but import torch when `set_determinism` was never called.
    """
    import torch

    if _SETTINGS and not _SETTINGS.get("torch_done"):
        torch.manual_seed(_SETTINGS["seed"])
        torch.set_num_threads(_SETTINGS["threads"])
        torch.use_deterministic_algorithms(True, warn_only=False)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        _SETTINGS["torch_done"] = 1
    return torch


def start_job(smk) -> None:
    """Common start of a workflow script: logging to the rule's log, seeds and threads from config."""
    log_path = smk.log[0] if len(smk.log) else None
    configure_logging(log_path)
    cfg = smk.config
    set_determinism(int(cfg.get("seed", 0)), int(cfg.get("numeric_threads", 2)))
    log.info("rule %s, wildcards %s", smk.rule, dict(smk.wildcards.items()))


def run_script(smk, main) -> None:
    """Run `main()` with logging set up; log the error (so it lands in the log file) and re-raise.

    A rule that declares `resources: gpu=N` (N > 0) runs `main()` holding a local GPU slot
    (`latent_atlas.gpu`: its own device in CUDA_VISIBLE_DEVICES; nothing under SLURM or without GPU).
    """
    start_job(smk)
    gpus = int(getattr(smk.resources, "gpu", 0) or 0)
    try:
        with job_gpu_slot(gpus, smk.config.get("gpu"), label=f"rule {smk.rule}"):
            main()
    except Exception:
        log.exception("rule %s failed", smk.rule)
        raise
