"""Run the project's benchmarks and write docs/benchmarks.md.

Each benchmark measures its contenders side by side in one run and prints a markdown table of
ratios (this machine is shared and noisy: compare ratios, not absolute times across runs).

    python benchmarks/run.py            # full benchmarks (takes a while on 2 cores)
    python benchmarks/run.py --quick    # small versions, for a smoke check
    python benchmarks/run.py --default-results results   # also tabulate a finished default run

Sections: permutation-importance engine vs the naive loop (benchmarks/importance.py), openTSNE vs
scikit-learn t-SNE (benchmarks/tsne.py), and the test pipeline's wall time per stage from
Snakemake's `benchmark:` files of a fresh run of config/test.yaml.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
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
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = ap.parse_args()

    parts = [
        "# Benchmarks\n",
        f"Measured {dt.date.today().isoformat()} on {machine()} with `python benchmarks/run.py"
        f"{' --quick' if args.quick else ''}`. Ratios are measured side by side in one run.\n",
        "## Permutation importance: engine vs naive loop\n", run_benchmark("importance.py", args.quick),
        "\n## t-SNE: openTSNE vs scikit-learn\n", run_benchmark("tsne.py", args.quick),
    ]
    times, wall = test_pipeline_times(cores=2)
    parts += [f"\n## Test pipeline (config/test.yaml, --cores 2): {wall:.0f} s wall in all\n",
              "Sum of each rule's job wall times (jobs overlap, so the sum exceeds the wall time).\n",
              times.to_markdown(index=False, floatfmt=".1f"), "\n"]
    if args.default_results:
        dtimes = stage_times(args.default_results)
        parts += ["\n## Default config (config/config.yaml), per rule\n",
                  dtimes.to_markdown(index=False, floatfmt=".1f"), "\n"]
    args.out.write_text("\n".join(parts))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
