"""Tables and sensor series at scale: peak memory and wall time of prepare_data -> train (1 epoch)
-> extract -> anomaly_scores on a table of N rows x 50 features and a series of M steps x 9
channels, read from each rule's Snakemake benchmark file (`s`, `max_rss`).

    python benchmarks/scale_tabular.py [--rows 1000000] [--steps 10000000] [--work DIR]
    python benchmarks/scale_tabular.py --prepare [--in-memory-tree DIR]   # flat in N?

`--prepare` instead measures prepare_data alone (the source read and the store written, in a fresh
process under /usr/bin/time) on the table and the series at a tenth of their sizes and at their
sizes, beside a checkout of the older whole-array readers when `--in-memory-tree` names one (e.g.
`git worktree add /tmp/old 65d8b96`): peak RSS flat in N is the goal.

The table is Parquet: 50 float64 features (a mixture of two Gaussian clusters, a few heavy-tailed
columns), a label column (the cluster) and no split column (a seeded stratified split). The series
is Parquet: a time column at 64 Hz and 9 channels (sines of several periods with noise), cut into
windows of 128 every 128 steps, the last 20 % of the time as test. Models: a dense AE 50-32-8 on
the table, a conv1d AE (32-64-64, 16-D) on the windows; the anomaly stage with its default
baselines (Isolation Forest, ECOD, kNN on raw inputs and latents, max_fit 20,000), the table's
cluster 1 as the anomalous class. The goal (issue: every job <= 2.5 GB peak RSS) is checked and
printed beside each row. Prints a markdown table (docs/benchmarks.md, "Tables and series at
scale").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
RULES = ["prepare_data", "train", "extract", "anomaly_scores"]
GOAL_MB = 2.5 * 1024


def write_parquet_batches(path: Path, rows: int, batch_rows: int, batch) -> None:
    """Write `rows` rows to `path` in row groups of `batch_rows`, `batch(start, n)` giving each
    group's columns (never the whole file in memory); kept when `path` already holds `rows` rows."""
    if path.is_file() and pq.ParquetFile(path).metadata.num_rows == rows:
        return
    writer = None
    for start in range(0, rows, batch_rows):
        table = pa.table(batch(start, min(batch_rows, rows - start)))
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    """rows x 50 features (a label column: the cluster), in row groups of 100,000."""
    rng = np.random.default_rng(seed)

    def batch(start: int, n: int) -> dict:
        label = (rng.random(n) < 0.1).astype(np.int64)
        x = rng.normal(size=(n, 50)) + 1.5 * label[:, None] * (np.arange(50) % 7 == 0)
        x[:, :3] = rng.standard_t(3, size=(n, 3))
        return {**{f"f{i:02d}": x[:, i] for i in range(50)}, "label": label}

    write_parquet_batches(path, rows, 100_000, batch)


def write_series(path: Path, steps: int, seed: int = 0) -> None:
    """steps x 9 channels at 64 Hz with a time column, in row groups of 1,000,000."""
    rng = np.random.default_rng(seed)

    def batch(start: int, n: int) -> dict:
        t = (start + np.arange(n)) / 64.0
        return {"time": t, **{f"ch{c}": np.sin(2 * np.pi * t / (0.5 + 0.3 * c)) + rng.normal(0, 0.1, n)
                              for c in range(9)}}

    write_parquet_batches(path, steps, 1_000_000, batch)


def config(table: Path, series: Path) -> dict:
    return {
        "seed": 0, "numeric_threads": 2,
        "datasets": {
            "table": {"source": "table", "path": str(table), "table": {"label_column": "label"}},
            "series": {"source": "series", "path": str(series),
                       "series": {"window": 128, "time_column": "time", "test_fraction": 0.2}},
        },
        "models": {
            "table_ae": {"dataset": "table", "arch": "dense_ae", "params": {"hidden": [32], "latent_dim": 8},
                         "train": {"epochs": 1, "batch_size": 1024, "lr": 0.002, "classes": [0]}},
            "series_ae": {"dataset": "series", "arch": "conv1d_ae",
                          "params": {"channels": [32, 64, 64], "latent_dim": 16},
                          "train": {"epochs": 1, "batch_size": 256, "lr": 0.002}},
        },
        "geometry": {"models": []}, "explain": {"models": []}, "importance": {"models": []},
        "featureviz": {"models": []}, "atlas": {"models": []},
        "anomaly": {"models": ["table_ae", "series_ae"]},
    }


def run(work: Path, cfg: dict) -> pd.DataFrame:
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    targets = [f"results/{m['dataset']}/{name}/anomaly/scores.parquet" for name, m in cfg["models"].items()]
    t0 = time.perf_counter()
    subprocess.run([SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile",
                    str(work / "config.yaml"), "--cores", "2", *targets], check=True, cwd=ROOT,
                   env={"PYTHONPATH": str(ROOT / "src"), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"})
    print(f"# workflow: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    rows = []
    for tsv in sorted((work / "results" / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(work / "results" / "benchmarks").parts[0]
        if not any(rule.startswith(r) for r in RULES):
            continue
        b = pd.read_csv(tsv, sep="\t")
        rows.append({"rule": rule, "job": tsv.stem, "s": float(b["s"].iat[-1]), "max_rss_mb": float(b["max_rss"].iat[-1])})
    return pd.DataFrame(rows)


def prepare_peak(tree: Path, name: str, spec: dict, store: Path) -> tuple[float, float]:
    """(peak RSS in MiB, wall s) of prepare_data's work (write_store) on the dataset `spec`, with
    the code of the checkout `tree`, in a fresh process under /usr/bin/time."""
    code = ("import json, sys; from latent_atlas.data.build import write_store; "
            "write_store(sys.argv[1], json.loads(sys.argv[2]), 0, sys.argv[3], workers=1)")
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb %M", sys.executable, "-c", code, name,
                           json.dumps(spec), str(store)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(tree / "src"), "PATH": "/usr/bin:/bin"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"prepare_data of {name} failed:\n{proc.stderr[-1500:]}")
    return int(proc.stderr.strip().splitlines()[-1].split()[-1]) / 1024, wall


def prepare_report(work: Path, rows: int, steps: int, old_tree: Path | None) -> str:
    """Markdown table: prepare_data's peak RSS on the table and the series at a tenth of their sizes
    and at their sizes, the streaming readers beside `old_tree`'s (when given)."""
    lines = ["| data | size | file MB | path | wall s | peak RSS MiB |", "|---|---|---|---|---|---|"]
    trees = [("streaming", ROOT)] + ([("whole array", old_tree)] if old_tree else [])
    for kind, sizes in (("table", (rows // 10, rows)), ("series", (steps // 10, steps))):
        for n in sizes:
            path = work / f"{kind}_{n}.parquet"
            (write_table if kind == "table" else write_series)(path, n)
            spec = config(path, path)["datasets"][kind]
            for label, tree in trees:
                peak, wall = prepare_peak(tree, kind, spec, work / "stores" / f"{kind}_{n}_{label.replace(' ', '_')}")
                shape = f"{n:,} x 50" if kind == "table" else f"{n:,} x 9"
                lines.append(f"| {kind} | {shape} | {path.stat().st_size / 1e6:,.0f} | {label} | {wall:.0f} | {peak:,.0f} |")
                print(lines[-1], file=sys.stderr)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=10_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/latent-atlas-scale-tabular"))
    ap.add_argument("--prepare", action="store_true", help="only prepare_data's peak RSS at N/10 and N")
    ap.add_argument("--in-memory-tree", type=Path, help="with --prepare: a checkout of the whole-array readers")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.prepare:
        print(prepare_report(args.work, args.rows, args.steps, args.in_memory_tree))
        return
    table, series = args.work / f"table_{args.rows}.parquet", args.work / f"series_{args.steps}.parquet"
    write_table(table, args.rows)
    write_series(series, args.steps)
    result = run(args.work, config(table, series))
    print(f"| rule | job | s | peak RSS (MB) | <= 2.5 GB |\n|---|---|---|---|---|")
    for r in result.itertuples():
        print(f"| {r.rule} | {r.job} | {r.s:.1f} | {r.max_rss_mb:.0f} | {'yes' if r.max_rss_mb <= GOAL_MB else 'NO'} |")
    print(f"\ntable {args.rows:,} x 50 ({table.stat().st_size / 2**20:.0f} MB Parquet); "
          f"series {args.steps:,} x 9 ({series.stat().st_size / 2**20:.0f} MB Parquet)")


if __name__ == "__main__":
    main()
