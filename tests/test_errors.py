"""Errors that read cleanly: a failed job's last line on the terminal names the rule, its wildcards
and the reason, with no traceback and no terminal control codes; its log file keeps the traceback once.

One Snakemake run (keep-going, one core, so jobs print in turn) fails one job per kind of error a
user meets: a file a library cannot read (a table pyarrow refuses), a pickle that would run code,
and a chained error (`raise ... from err`: an idx folder holding a file that is not gzip). No other
job of the run fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from conftest import run_snakemake
from model_helpers import pickled_call

from latent_atlas.errors import clean, failure, summary

TRACEBACK = "Traceback (most recent call last):"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and newline
# What Snakemake's scheduler prints while a job runs; the job's own lines are the others.
SCHEDULER = re.compile(r"Select jobs to execute\.\.\.|Execute \d+ jobs\.\.\.|\d+ of \d+ steps \(.*\) done|\[.*\]|")


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory) -> dict:
    """The run's working directory, terminal output (stdout + stderr), and each job's expected reason."""
    work = tmp_path_factory.mktemp("errors")
    (work / "junk.parquet").write_bytes(b"not a table")
    pickled_call(work / "evil.pt", eval, f"open({str(work / 'pwned')!r}, 'w').write('ran')")
    (work / "idx").mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (work / "idx" / name).write_bytes(b"not gzip")
    cfg = {"seed": 0, "numeric_threads": 1,
           "datasets": {"d": {"source": "sklearn_digits"}, "i": {"source": "idx", "path": str(work / "idx")}},
           "models": {"junk": {"dataset": "d", "source": {"format": "latents", "table": str(work / "junk.parquet")}},
                      "evil": {"dataset": "d", "arch": "conv_ae", "params": {"channels": [4, 4, 8, 8], "latent_dim": 4},
                               "source": {"format": "state_dict", "weights": str(work / "evil.pt")}}}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    targets = ["results/d/junk/latents.parquet", "results/d/evil/model.pt", "results/data/i/images.npy"]
    proc = run_snakemake(work, "--cores", "1", "--keep-going", *targets, configfile=work / "config.yaml",
                         timeout=300, check=False)
    assert proc.returncode != 0
    console = proc.stdout + proc.stderr
    assert not any((work / t).exists() for t in targets), console
    assert not (work / "pwned").exists()  # the pickle was refused, not run
    return {"work": work, "console": console, "reasons": {  # job: (rule and wildcards, the error's line as a regex)
        "import_latents/d/junk": ("rule import_latents (dataset=d, model=junk)", re.escape(
            f"ValueError: models.junk.source.table: cannot read {work / 'junk.parquet'} (ArrowInvalid: Could not "
            f"open Parquet input source '{work / 'junk.parquet'}': Parquet magic bytes not found in footer.")
            + r"[^\n]*\)"),
        "import_model/d/evil": ("rule import_model (dataset=d, model=evil)", re.escape(
            f"ValueError: models.evil.source.weights: {work / 'evil.pt'} holds a pickled global builtins.eval, "
            f"which is refused (only tensors and plain containers are read; save the weights with "
            f"torch.save(model.state_dict()))")),
        "prepare_data/i": ("rule prepare_data (dataset=i)", re.escape(
            f"DataError: cannot read idx file {work / 'idx'}/") + r"\S+-ubyte\.gz: Not a gzipped file \(b'no'\)"),
    }}


def _job_lines(console: str, log: str) -> list[str]:
    """What the job writing `log` printed: the lines after Snakemake's header of the job (indented
    fields, `log: ...` among them) up to Snakemake's report of its failure, less scheduler lines."""
    lines = console.splitlines()
    i = lines.index(f"    log: {log}")
    while lines[i].startswith("    "):
        i += 1
    end = lines.index("RuleException:", i)
    return [line for line in lines[i:end] if not SCHEDULER.fullmatch(line)]


@pytest.mark.parametrize("job, chained", [("import_latents/d/junk", 1), ("import_model/d/evil", 1),
                                          ("prepare_data/i", 2)])
def test_a_failed_job_ends_with_one_clean_line_and_logs_its_traceback_once(failed_run, job, chained):
    console = failed_run["console"]
    where, error = failed_run["reasons"][job]
    reason = f"{re.escape(where)} failed: {error}"
    rule = job.split("/")[0]
    log_path = f"results/logs/{job}.log"
    printed = _job_lines(console, log_path)
    assert re.fullmatch(rf"\S+ \S+ ERROR latent_atlas: {reason}", printed[-1]), printed
    assert len(printed) == 2, printed  # the job's start line, then its reason
    assert TRACEBACK not in console and not CONTROL.search(console)
    assert f"Error in rule {rule}:" in console  # Snakemake still reports the job as failed
    log = (failed_run["work"] / log_path).read_text()
    assert log.count(TRACEBACK) == chained  # once, with its cause for a chained error
    assert log.count("The above exception was the direct cause") == chained - 1
    assert len(re.findall(rf"ERROR latent_atlas: {reason}\n", log)) == 1
    assert re.search(rf"\n(?:[\w.]+\.)?{error}\n$", log), log[-600:]  # the traceback's last line
    assert "\x1b" not in log


def test_control_codes_and_line_breaks_are_taken_out_of_library_messages(tmp_path):
    refused = pickled_call(tmp_path / "evil.pt", eval, "1")
    with pytest.raises(Exception) as info:
        torch.load(refused, weights_only=True)
    raw = str(info.value)
    assert "\x1b[1m" in raw and "\n\t" in raw  # torch's own message: bold, several lines
    assert not CONTROL.search(clean(raw))
    assert "you have two options, do those steps only if you trust" in clean(raw)
    assert clean("a\x1b]8;;https://x\x07link\x1b]8;;\x07 \x9b2Jb\x1b(B\rc") == "alink bc"
    assert summary(RuntimeError("first \x1b[31mline\x1b[0m,\n\tstill first.\n\nadvice")) == \
        "RuntimeError: first line, still first."
    assert failure("import_model", [("dataset", "d"), ("model", "x")], ValueError("one\n\ttwo")) == \
        "rule import_model (dataset=d, model=x) failed: ValueError: one two"
    assert failure("figure_manifest", [], KeyError("k")) == "rule figure_manifest failed: KeyError: 'k'"
