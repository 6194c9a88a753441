"""How a rule's job runs: log to its Snakemake log file, fix threads and seeds, take a GPU slot,
then call the job function named after the rule.

Every rule's `script:` is `workflow/scripts/run_job.py`, which calls `run_job(snakemake)`. The job
function of rule `r` is the function `r` in one stage's `latent_atlas/<stage>/jobs.py` (found
without importing the other stages, so a job imports only what its own stage needs; `r` is the
name in the rule files, also where a workflow using latent-atlas as a module renamed the rule,
see `note_rule_names`); it takes a `Job`, whose fields are Snakemake's `input`, `output`,
`params`, `wildcards`, `config`, `threads`.
"""

from __future__ import annotations

import ast
import importlib
import json
import logging
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

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
    """What a job function gets: a rule job's files, settings and wildcards."""

    input: Any = field(default_factory=Files)
    output: Any = field(default_factory=Files)
    params: Any = field(default_factory=Files)
    wildcards: Any = field(default_factory=Files)
    config: Mapping[str, Any] = field(default_factory=dict)
    threads: int = 1
    rule: str = ""

    @classmethod
    def from_snakemake(cls, smk) -> "Job":
        return cls(input=smk.input, output=smk.output, params=smk.params, wildcards=smk.wildcards,
                   config=smk.config, threads=int(smk.threads), rule=smk.rule)


def _defined_names(path: Path) -> set[str]:
    """Top-level function and variable names of a module, read without importing it."""
    names = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def job_module(rule: str) -> str:
    """The module defining the job function of `rule`: `latent_atlas.<stage>.jobs` (exactly one)."""
    package = Path(__file__).parent
    found = sorted(p.parent.name for p in package.glob("*/jobs.py") if rule in _defined_names(p))
    if len(found) != 1:
        where = f"in several stages: {', '.join(found)}" if found else "in no latent_atlas/<stage>/jobs.py"
        raise LookupError(f"rule {rule!r}: its job function is defined {where}")
    return f"latent_atlas.{found[0]}.jobs"


# A workflow that uses latent-atlas as a module may rename its rules (`use rule * from
# latent_atlas as la_*` runs rule `train` as `la_train`); the Snakefile records each renamed
# rule's own name in this variable of the environment its jobs inherit (JSON, new -> own name).
RULE_NAMES_ENV = "LATENT_ATLAS_RULE_NAMES"


def note_rule_names(rules) -> None:
    """Record the rules that Snakemake runs under another name than the rule files give them.

    `rules` is the Snakefile's `rules` namespace: keyed by the names in the rule files, each entry's
    `.rule.name` the name Snakemake runs it as. Names recorded before (another module) are kept.
    """
    names = json.loads(os.environ.get(RULE_NAMES_ENV, "{}"))
    package = Path(__file__).parent
    for own in set().union(*(_defined_names(p) for p in package.glob("*/jobs.py"))):
        if rules.has(own) and getattr(rules, own).rule.name != own:
            names[getattr(rules, own).rule.name] = own
    if names:
        os.environ[RULE_NAMES_ENV] = json.dumps(names, sort_keys=True)


def job_function(rule: str) -> Callable[[Job], None]:
    """The job function of the rule Snakemake runs as `rule` (renamed or not)."""
    rule = json.loads(os.environ.get(RULE_NAMES_ENV, "{}")).get(rule, rule)
    return getattr(importlib.import_module(job_module(rule)), rule)


def run_job(smk) -> None:
    """Run rule `smk.rule`'s job function with the job's settings (the body of run_job.py)."""
    run_script(smk, lambda: job_function(smk.rule)(Job.from_snakemake(smk)))
