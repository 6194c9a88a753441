"""Which jobs Snakemake would rerun on a finished run, for each of many configs (test_reruns.py).

    python tests/rerun_probe.py WORKDIR < configs.json > jobs.jsonl

Reads a JSON list of configs from stdin; for each, builds the workflow's DAG in WORKDIR as a dry
run would (Snakemake's API, in this one process: a Snakemake start per config would cost seconds
each) and writes one JSON line: every job of the DAG with its rule, wildcards and why it must run
(`own`: its params, code, input set or outputs; `upstream`: only because a job it reads from
runs; absent: it need not run). A config Snakemake refuses gives {"error": message}.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def jobs_to_run(workdir: Path, config: dict) -> list[dict]:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(cores=1),
                                config_settings=ConfigSettings(config=config), storage_settings=StorageSettings(),
                                snakefile=ROOT / "Snakefile", workdir=workdir)
        workflow.dag().execute_workflow(executor="dryrun")
        dag = workflow._workflow._dag  # the API runs the dry run but does not return its DAG
        needrun = set(dag.needrun_jobs(exclude_finished=False))
        out = []
        for job in dag.jobs:
            record = {"rule": job.rule.name, "wildcards": dict(job.wildcards_dict)}
            if job in needrun:
                r = dag.reason(job)
                own = (r.params_changed or r.code_changed or r.input_changed or r.software_stack_changed
                       or r.missing_output or r.incomplete_output or r.forced)
                record["run"] = "own" if own else "upstream"
            out.append(record)
        return out


def main() -> None:
    workdir = Path(sys.argv[1]).resolve()
    for config in json.load(sys.stdin):
        try:
            # Snakemake's dry-run report goes to its log handlers; keep stdout for our lines
            with contextlib.redirect_stdout(io.StringIO()):
                line = {"jobs": jobs_to_run(workdir, config)}
        except Exception as err:  # a config the workflow refuses: reported, and the test fails on it
            line = {"error": f"{type(err).__name__}: {err}"}
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
