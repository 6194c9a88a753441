"""How a rule's job runs: log to its Snakemake log file, fix threads and seeds, take a GPU slot,
then call the job function the rule names.

Every rule's `script:` is `workflow/scripts/run_job.py`, which calls `run_job(snakemake)`. A rule
names its job function in its params, `job="latent_atlas.<stage>.jobs:<function>"` (grep the
function's name, or follow the module path); its other params are the settings the job reads,
passed to the function as keyword arguments: `function(job, **settings)`, where `job` (a `Job`)
holds the rule's input, output, wildcards and threads. The global config is not passed: a setting
reaches a job only through its rule's params, so Snakemake reruns exactly the jobs it changes.
`seed` and `numeric_threads`, where a rule passes them, also seed and size the job's libraries
before the call (`set_determinism`).
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from latent_atlas.errors import failure
from latent_atlas.gpu import job_gpu_slot

log = logging.getLogger("latent_atlas")


_FORMAT = ("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")


class _WithoutTraceback(logging.Formatter):
    """The terminal's format when a log file keeps the tracebacks: a record's line only."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None}))


def configure_logging(log_path: str | os.PathLike | None) -> None:
    """Send the library's log records to `log_path` and to stderr, for the terminal (tracebacks go
    to the log file only, when there is one)."""
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter((_WithoutTraceback if log_path else logging.Formatter)(*_FORMAT))
    log.addHandler(console)
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        logfile = logging.FileHandler(log_path, mode="w")
        logfile.setFormatter(logging.Formatter(*_FORMAT))
        log.addHandler(logfile)


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


def start_job(smk, seed: int, threads: int) -> None:
    """Common start of a workflow script: logging to the rule's log, then seeds and threads."""
    log_path = smk.log[0] if len(smk.log) else None
    configure_logging(log_path)
    set_determinism(seed, threads)
    log.info("rule %s, wildcards %s", smk.rule, dict(smk.wildcards.items()))


def run_script(smk, main, seed: int = 0, threads: int = 1) -> None:
    """Run `main()` with logging set up, as a Snakemake job's script.

    An error ends the job's process with exit status 1 (Snakemake marks the job failed and removes
    its outputs): its traceback goes to the rule's log file, and the terminal gets one clean line
    naming the rule, its wildcards and the message (`errors.failure`), the last the job prints.
    Python's own traceback would repeat the log's on the terminal, so the error is not re-raised.

    A rule that declares `resources: gpu=N` (N > 0) runs `main()` holding a local GPU slot
    (`latent_atlas.gpu`: its own device in CUDA_VISIBLE_DEVICES; nothing under SLURM or without GPU).
    The slot allocator reads the config's `gpu` section: machine settings, which change no result.
    """
    start_job(smk, seed, threads)
    gpus = int(getattr(smk.resources, "gpu", 0) or 0)
    try:
        with job_gpu_slot(gpus, smk.config.get("gpu"), label=f"rule {smk.rule}"):
            main()
    except Exception as err:
        log.error("%s", failure(smk.rule, smk.wildcards.items(), err), exc_info=err)
        sys.exit(1)


class Files(list):
    """Named files of a job, like Snakemake's `input`/`output`/`params`: `files.name`,
    `files["name"]`, `files[0]`, `files.keys()` (for jobs called from tests without Snakemake)."""

    def __init__(self, items: Mapping[str, Any] | list | None = None, **named: Any):
        named = {**(items if isinstance(items, Mapping) else {}), **named}
        super().__init__(items if isinstance(items, list) else named.values())
        self._names = dict(named)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_names"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        return self._names[key] if isinstance(key, str) else super().__getitem__(key)

    def keys(self):
        return self._names.keys()

    def items(self):
        return self._names.items()

    def get(self, key, default=None):
        return self._names.get(key, default)


@dataclass
class Job:
    """What a job function gets besides its settings: a rule job's files, wildcards and threads."""

    input: Any = field(default_factory=Files)
    output: Any = field(default_factory=Files)
    wildcards: Any = field(default_factory=Files)
    threads: int = 1
    rule: str = ""

    @classmethod
    def from_snakemake(cls, smk) -> "Job":
        return cls(input=smk.input, output=smk.output, wildcards=smk.wildcards, threads=int(smk.threads),
                   rule=smk.rule)


def job_function(target: str) -> Callable[..., None]:
    """The function a rule's `job` param names: "package.module:function"."""
    module, sep, name = target.partition(":")
    if not sep or not name:
        raise ValueError(f"job {target!r}: expected 'package.module:function'")
    return getattr(importlib.import_module(module), name)


def run_job(smk) -> None:
    """Run the job function rule `smk.rule` names with its settings (the body of run_job.py)."""
    settings = {name: value for name, value in smk.params.items() if name != "job"}
    # Rules without numeric_threads compute nothing whose bits depend on it: the job's threads do.
    seed, threads = int(settings.get("seed", 0)), int(settings.get("numeric_threads", smk.threads))
    run_script(smk, lambda: job_function(smk.params.job)(Job.from_snakemake(smk), **settings), seed, threads)
