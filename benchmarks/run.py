"""Run the project's benchmarks and write docs/benchmarks.md.

Each benchmark measures its contenders side by side in one run and prints a markdown table of
ratios (this machine is shared and noisy: compare ratios, not absolute times across runs).

    python benchmarks/run.py            # full benchmarks (takes a while on 2 cores)
    python benchmarks/run.py --quick    # small versions, for a smoke check
    python benchmarks/run.py --default-results results   # also tabulate a finished default run

Sections: permutation-importance engine vs the naive loop (benchmarks/importance.py), openTSNE vs
scikit-learn t-SNE (benchmarks/tsne.py), the latent atlas page
(benchmarks/atlas.py), and the test pipeline's wall time per stage from
Snakemake's `benchmark:` files of a fresh run of config/test.yaml.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def run_benchmark(script: str, quick: bool) -> str:
    cmd = [sys.executable, str(ROOT / "benchmarks" / script)] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        return f"`{' '.join(cmd[1:])}` failed:\n\n```\n{proc.stderr[-2000:]}\n```\n"
    return proc.stdout


def stage_times(results: Path) -> pd.DataFrame:
    """Wall time per rule (summed over its jobs) from Snakemake's benchmark files under results/benchmarks."""
    rows = []
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(results / "benchmarks").parts[0]
        table = pd.read_csv(tsv, sep="\t")
        rows.append({"rule": rule, "jobs": 1, "seconds": float(table["s"].iloc[0]),
                     "max_rss_mb": float(table["max_rss"].iloc[0]) if "max_rss" in table else float("nan")})
    if not rows:
        return pd.DataFrame(columns=["rule", "jobs", "seconds", "max_rss_mb"])
    df = pd.DataFrame(rows).groupby("rule", as_index=False).agg(
        jobs=("jobs", "sum"), seconds=("seconds", "sum"), max_rss_mb=("max_rss_mb", "max"))
    df = df.sort_values("seconds", ascending=False)
    df["share"] = (df["seconds"] / df["seconds"].sum()).map("{:.1%}".format)
    return df


def rule_stages() -> dict[str, str]:
    """Each rule's stage: the workflow/rules/<stage>.smk file that defines it."""
    stages = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        if smk.stem.endswith("_functions"):
            continue
        text = smk.read_text()
        for name in re.findall(r"^(?:rule|checkpoint) (\w+):", text, flags=re.M):
            stages[name] = smk.stem
        for name in re.findall(r"^use rule \w+ as (\w+)", text, flags=re.M):
            stages[name] = smk.stem
    return stages


def former_rule_stage(rule: str) -> str:
    """The stage of a rule an older version of the workflow had (logs of earlier runs)."""
    for stage in ("geometry", "explain", "importance", "featureviz"):
        if stage in rule:
            return stage
    if rule.startswith(("train", "extract_", "plot_")):
        return "data" if rule == "plot_dataset_examples" else "models"
    return "other"


def log_job_times(log: Path) -> pd.DataFrame:
    """Start, end and wall seconds of every job in a Snakemake log (.snakemake/log/*.log).

    Every job is covered, also rules without a `benchmark:` file; the log's time stamps have a
    resolution of one second.
    """
    stamp, pending, starts, rows = None, None, {}, []
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$", line.strip())
        if m:
            stamp = dt.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            continue
        m = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):$", line.strip())
        if m:
            pending = m.group(1)
            continue
        m = re.match(r"\s+jobid: (\d+)$", line)
        if m and pending:
            starts[m.group(1)] = (pending, stamp)
            pending = None
            continue
        m = re.match(r"Finished jobid: (\d+)", line)
        if m and m.group(1) in starts:
            rule, start = starts.pop(m.group(1))
            rows.append({"rule": rule, "start": start, "end": stamp, "seconds": (stamp - start).total_seconds()})
    return pd.DataFrame(rows, columns=["rule", "start", "end", "seconds"])


def stage_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per stage: jobs, the span from its first job's start to its last job's end, and the sum of
    its jobs' wall times (jobs of a stage run side by side and beside other stages' jobs)."""
    stages = rule_stages()
    jobs = jobs[jobs["rule"] != "all"]
    jobs = jobs.assign(stage=jobs["rule"].map(lambda r: stages.get(r) or former_rule_stage(r)))
    table = jobs.groupby("stage", sort=False).agg(jobs=("rule", "size"), first_start=("start", "min"),
                                                  last_end=("end", "max"), job_seconds=("seconds", "sum"))
    table["span_s"] = (table["last_end"] - table["first_start"]).dt.total_seconds()
    t0 = jobs["start"].min()
    table["starts_at_s"] = (table["first_start"] - t0).dt.total_seconds()
    table = table.sort_values("first_start").reset_index()
    return table[["stage", "jobs", "starts_at_s", "span_s", "job_seconds"]]


def default_run_section(results: Path, log: Path | None) -> list[str]:
    """Tables of a finished default run: per stage and per rule from the Snakemake log (every job),
    and Snakemake's `benchmark:` files (CPU-heavy rules, with peak memory)."""
    parts = ["\n## Default config (config/config.yaml), `make run`\n"]
    if log is not None:
        jobs = log_job_times(log)
        wall = (jobs["end"].max() - jobs["start"].min()).total_seconds()
        parts += [f"From `{log.name}`: {len(jobs)} jobs, {wall / 60:.1f} min from the first job's start to "
                  "the last job's end, 2 cores. Stages overlap: a stage's span runs from its first job's "
                  "start to its last job's end; job seconds sum its jobs' wall times.\n",
                  stage_table(jobs).to_markdown(index=False, floatfmt=".0f"), "\n",
                  "Per rule (sum of job wall times):\n",
                  jobs.groupby("rule").agg(jobs=("rule", "size"), seconds=("seconds", "sum"))
                  .sort_values("seconds", ascending=False).reset_index().to_markdown(index=False, floatfmt=".0f"),
                  "\n"]
    parts += ["From Snakemake's `benchmark:` files (rules that declare one):\n",
              stage_times(results).to_markdown(index=False, floatfmt=".1f"), "\n"]
    return parts


def test_pipeline_times(cores: int) -> tuple[pd.DataFrame, float]:
    with tempfile.TemporaryDirectory(prefix="latent-atlas-bench-") as tmp:
        cmd = [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", tmp,
               "--configfile", str(ROOT / "config" / "test.yaml"), "--cores", str(cores), "--quiet"]
        start = dt.datetime.now()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = (dt.datetime.now() - start).total_seconds()
        return stage_times(Path(tmp) / "results"), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small versions of each benchmark")
    ap.add_argument("--default-results", type=Path, help="results/ of a finished default run to tabulate")
    ap.add_argument("--default-log", type=Path,
                    help="that run's Snakemake log (.snakemake/log/...snakemake.log): per-stage times")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = ap.parse_args()

    parts = [
        "# Benchmarks\n",
        f"Measured {dt.date.today().isoformat()} on {machine()} with `python benchmarks/run.py"
        f"{' --quick' if args.quick else ''}`. Ratios are measured side by side in one run.\n",
        "## Permutation importance: engine vs naive loop\n", run_benchmark("importance.py", args.quick),
        "\n## t-SNE: openTSNE vs scikit-learn\n", run_benchmark("tsne.py", args.quick),
        "\n## Latent atlas page at 70,000 points\n", run_benchmark("atlas.py", args.quick),
    ]
    times, wall = test_pipeline_times(cores=2)
    parts += [f"\n## Test pipeline (config/test.yaml, --cores 2): {wall:.0f} s wall in all\n",
              "Sum of each rule's job wall times (jobs overlap, so the sum exceeds the wall time).\n",
              times.to_markdown(index=False, floatfmt=".1f"), "\n"]
    if args.default_results:
        parts += default_run_section(args.default_results, args.default_log)
    args.out.write_text("\n".join(parts))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
