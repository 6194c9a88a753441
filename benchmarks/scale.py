"""CelebA scale: peak memory and wall time of data -> train -> extract -> geometry on a
CelebA-shaped synthetic folder of N images, streaming store beside the whole-array (in-memory) path.

    python benchmarks/scale.py --n 20000 [--n 60000 ...] [--work DIR] [--in-memory-tree /path/to/main]

For each N it writes a folder in CelebA's own layout (178x218 RGB JPEGs, list_attr_celeba.txt,
list_eval_partition.txt; `latent_atlas.data.synthetic`), then runs Snakemake on a config shaped
like config/paper/celeba_geometry.yaml (conv AE 32-64-128-256, 256-D latents, 3x96x96, batch 128,
1 epoch) up to the geometry tables, and reads each rule's `s` and `max_rss` from Snakemake's
benchmark files. `--in-memory-tree` names a checkout of the code before the streaming store (e.g.
a `git worktree` of the commit before it): the same data, read there by `image_folder` (symlinks
to the same JPEGs, one folder per class; it has no `celeba` folder source) runs beside it, while
it fits in memory (`--in-memory-max`).

Side by side in this process (ratios, not absolute times: the machine is shared):
- training throughput, streaming batches from the store vs the same rows as one float32 array,
  alternating runs of `--throughput-samples` images;
- prepare_data (decode + write the store) with 1 vs 2 worker processes, on `--workers-samples` images.

`--projections` adds t-SNE and UMAP maps of the latents at 20,000, 80,000 and 165,000 points (the
study's sizes; those not above the dataset's size) through the geometry rules, timed the same way.
Prints a markdown report (docs/benchmarks.md, "Out-of-core datasets").

`--idx` instead measures prepare_data alone on idx (MNIST-format) folders: 48,000 96x96 images
(40,000 train + 8,000 test), plain and .gz, and an EMNIST-ByClass-sized .gz folder (697,932 +
116,323 28x28 images, prefix emnist-byclass-, as EMNIST ships). Each runs `write_store` (what the
prepare_data job runs, one process) then `load_dataset` in a fresh Python process under
/usr/bin/time, whose maximum resident set size is the peak (docs/benchmarks.md, "Streaming idx files").

`--tabular` runs the table and series cases (benchmarks/scale_tabular.py: a 1,000,000 x 50 table
and a 10,000,000 x 9 series through prepare_data -> train -> extract -> anomaly_scores, then
prepare_data alone at a tenth of their sizes and at their sizes; docs/benchmarks.md, "Tables and
series at scale").
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
MODEL = {"arch": "conv_ae", "params": {"channels": [32, 64, 128, 256], "latent_dim": 256},
         "train": {"epochs": 1, "batch_size": 128, "lr": 0.001}}
RULES = ["prepare_data", "train", "extract", "geometry_tables", "geometry_tsne", "geometry_umap"]
STUDY_SIZES = [20000, 80000, 165000]


def celeba_folder(work: Path, n: int) -> Path:
    from latent_atlas.data.synthetic import write_celeba_folder

    folder = work / f"celeba_{n}"
    partition = folder / "list_eval_partition.txt"
    if partition.is_file() and len(partition.read_text().splitlines()) == n:
        return folder
    t0 = time.perf_counter()
    write_celeba_folder(folder, n, seed=0, workers=os.cpu_count() or 1)
    print(f"# wrote {n:,} JPEGs to {folder} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return folder


def class_folders(celeba: Path, attribute: str = "Male") -> Path:
    """The same JPEGs as an image_folder source: one folder of symlinks per attribute value."""
    out = celeba.with_name(celeba.name + "_by_class")
    if out.is_dir():
        return out
    lines = (celeba / "list_attr_celeba.txt").read_text().splitlines()
    col = lines[1].split().index(attribute) + 1
    for d in ("0_not", "1_yes"):
        (out / d).mkdir(parents=True)
    for line in lines[2:]:
        parts = line.split()
        (out / ("1_yes" if parts[col] == "1" else "0_not") / parts[0]).symlink_to(celeba / "img_align_celeba" / parts[0])
    return out


def config(dataset: dict, n: int, projections: bool, max_train_samples: int | None) -> dict:
    model = {**MODEL, "dataset": "celeba", "train": dict(MODEL["train"])}
    if max_train_samples:
        model["train"]["max_train_samples"] = max_train_samples
    geometry = {"models": ["ae"]}
    sizes = [s for s in STUDY_SIZES if s <= n] if projections else []
    if sizes:
        geometry["projections"] = {"pca_components": [2], "tsne": {"sample_sizes": sizes}, "umap": {"sample_sizes": sizes}}
    return {"seed": 0, "numeric_threads": 2, "datasets": {"celeba": dataset}, "models": {"ae": model},
            "geometry": geometry}


def run_workflow(tree: Path, workdir: Path, cfg: dict, targets: list[str]) -> pd.DataFrame:
    """Snakemake of checkout `tree` on `cfg` in `workdir`; one row per benchmark file (rule, s, max_rss)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    cmd = [SNAKEMAKE, "--snakefile", str(tree / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", *targets]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (workdir / "snakemake.log").write_text(proc.stdout + proc.stderr)
    rows = []
    for tsv in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(workdir / "results" / "benchmarks").parts[0]
        if rule in RULES:
            t = pd.read_csv(tsv, sep="\t")
            rows.append({"rule": rule, "job": tsv.stem, "s": float(t["s"].iloc[0]),
                         "max_rss_mb": float(t["max_rss"].iloc[0])})
    df = pd.DataFrame(rows, columns=["rule", "job", "s", "max_rss_mb"])
    df.attrs["ok"], df.attrs["wall"] = proc.returncode == 0, wall
    if proc.returncode != 0:
        print(f"# {tree}: snakemake failed (see {workdir / 'snakemake.log'}):\n{proc.stderr[-1500:]}", file=sys.stderr)
    return df


def targets(projections_for: list[int]) -> list[str]:
    out = ["results/celeba/ae/latents.parquet", "results/celeba/ae/geometry/summary.parquet"]
    for n in projections_for:
        out += [f"results/celeba/ae/geometry/tsne_raw_n{n}.parquet", f"results/celeba/ae/geometry/umap_raw_n{n}.parquet"]
    return out


def throughput(store: Path, samples: int, repeats: int = 2) -> tuple[float, float]:
    """Images/s of one training epoch over `samples` training rows: streamed from the store, and
    from the same rows held as one float32 array; runs alternate. Returns (streaming, in-memory)."""
    import torch

    from latent_atlas.data.store import load_dataset
    from latent_atlas.models.networks import build_model
    from latent_atlas.models.training import train_model

    torch.set_num_threads(2)
    ds = load_dataset(store)
    rows = np.flatnonzero(ds.split == "train")[:samples]
    part = ds.subset(rows)
    held = np.asarray(part.images)
    rates = {"streaming": [], "in_memory": []}
    settings = {**MODEL["train"], "validation_fraction": 0.0}
    for _ in range(repeats):
        for name, images in (("streaming", part.images), ("in_memory", held)):
            torch.manual_seed(0)
            model = build_model("conv_ae", part.input_shape, 2, MODEL["params"])
            result = train_model(model, images, part.labels, part.split, settings, seed=0, progress=False,
                                 device="cpu")
            rates[name].append(len(rows) / float(result.log["seconds"].iloc[0]))
    return float(np.median(rates["streaming"])), float(np.median(rates["in_memory"]))


def decode_workers(folder: Path, work: Path, samples: int) -> dict[int, float]:
    """Seconds of write_store with 1 and 2 decoding processes on `samples` images (same bytes)."""
    from latent_atlas.data.build import write_store

    spec = {"source": "celeba", "path": str(folder), "color": "rgb", "center_crop": 140, "size": 96,
            "split": {"method": "source"}}
    in_folder = len((folder / "list_eval_partition.txt").read_text().splitlines())
    if samples < in_folder:
        spec["subsample"] = {"train": int(samples * 0.9), "test": samples - int(samples * 0.9)}
    seconds = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        write_store("celeba", spec, 0, work / f"workers{workers}", workers=workers)
        seconds[workers] = time.perf_counter() - t0
    same = all((work / "workers1" / f).read_bytes() == (work / "workers2" / f).read_bytes()
               for f in ("images.npy", "samples.parquet"))
    if not same:
        raise AssertionError("1 and 2 workers wrote different stores")
    return seconds


# name: (train images, test images, side in pixels, gzipped, file prefix, classes)
IDX_CASES = {
    "idx_96px": (40000, 8000, 96, False, "", 10),
    "idx_96px_gz": (40000, 8000, 96, True, "", 10),
    "emnist_byclass": (697932, 116323, 28, True, "emnist-byclass-", 62),
}


def write_idx_file(path: Path, shape: tuple[int, ...], chunks) -> None:
    """An idx file of unsigned bytes with header `shape`, its data the uint8 arrays `chunks`
    (written as they come; gzipped when the name ends in .gz)."""
    magic = 0x803 if len(shape) == 3 else 0x801
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in shape))
        for chunk in chunks:
            fh.write(np.ascontiguousarray(chunk, np.uint8).tobytes())


def idx_folder(work: Path, case: str) -> Path:
    """The idx folder of IDX_CASES[case]: MNIST-like images (4x4 blocks of random gray inside a
    black border: compressible, as real digits are) and random labels."""
    n_train, n_test, side, gz, prefix, classes = IDX_CASES[case]
    folder = work / case
    done = folder / "complete"
    if done.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    border = side // 7
    ext = ".gz" if gz else ""

    def images(n: int, chunk: int = 8192):
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            x = rng.integers(0, 256, (k, side // 4, side // 4), dtype=np.uint8).repeat(4, 1).repeat(4, 2)
            x[:, :border] = x[:, -border:] = x[:, :, :border] = x[:, :, -border:] = 0
            yield x

    t0 = time.perf_counter()
    for stem, n in (("train", n_train), ("t10k" if not prefix else "test", n_test)):
        write_idx_file(folder / f"{prefix}{stem}-images-idx3-ubyte{ext}", (n, side, side), images(n))
        write_idx_file(folder / f"{prefix}{stem}-labels-idx1-ubyte{ext}", (n,),
                       [rng.integers(0, classes, n, dtype=np.uint8)])
    done.write_text("")
    print(f"# wrote {case} ({n_train + n_test:,} images) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return folder


def idx_prepare_peak(folder: Path, store: Path) -> tuple[float, float]:
    """(peak RSS in MiB, wall s) of prepare_data's work on the idx folder `folder` (prefix found by
    the source), run in a fresh process under /usr/bin/time, writing the store to `store`."""
    code = ("import sys; from latent_atlas.data.build import write_store; "
            "from latent_atlas.data.store import load_dataset; "
            "write_store('idx', {'source': 'idx', 'path': sys.argv[1]}, 0, sys.argv[2], workers=1); "
            "load_dataset(sys.argv[2])")
    t0 = time.perf_counter()
    cmd = ["/usr/bin/time", "-f", "maxrss_kb %M", sys.executable, "-c", code, str(folder), str(store)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"prepare_data on {folder} failed:\n{proc.stderr[-1500:]}")
    kb = int(proc.stderr.strip().splitlines()[-1].split()[-1])
    return kb / 1024, wall


def idx_report(work: Path) -> str:
    """Markdown table of prepare_data's peak RSS on each IDX_CASES folder."""
    lines = ["| folder | images | pixels MB (10^6 B, uint8) | files MB | prepare_data wall s | peak RSS MiB |",
             "|---|---|---|---|---|---|"]
    for case, (n_train, n_test, side, gz, prefix, classes) in IDX_CASES.items():
        folder = idx_folder(work, case)
        peak, wall = idx_prepare_peak(folder, work / "stores" / case)
        files = sum(f.stat().st_size for f in folder.glob("*-ubyte*")) / 1e6
        n = n_train + n_test
        lines.append(f"| {case} ({side}x{side}{', .gz' if gz else ''}) | {n:,} | {n * side * side / 1e6:,.0f} | "
                     f"{files:,.0f} | {wall:.0f} | {peak:,.0f} |")
        print(lines[-1], file=sys.stderr)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, action="append", help="images (train + test); repeatable")
    ap.add_argument("--work", type=Path, default=Path("/tmp/latent-atlas-scale"))
    ap.add_argument("--in-memory-tree", type=Path, help="checkout of the whole-array code to run beside")
    ap.add_argument("--in-memory-max", type=int, default=20000, help="largest N the in-memory path is run for")
    ap.add_argument("--max-train-samples", type=int, help="cap the training epoch (train.max_train_samples)")
    ap.add_argument("--projections", action="store_true", help="also t-SNE and UMAP at the study's sizes")
    ap.add_argument("--throughput-samples", type=int, default=2048)
    ap.add_argument("--workers-samples", type=int, default=4000)
    ap.add_argument("--no-ratios", action="store_true",
                    help="skip the side-by-side throughput and decode-worker ratios (run them on a quiet machine)")
    ap.add_argument("--ratios-only", action="store_true",
                    help="only the side-by-side ratios, on the store and folder of the first --n (from an earlier run)")
    ap.add_argument("--idx", action="store_true",
                    help="only prepare_data's peak memory on idx folders (IDX_CASES), written under --work")
    ap.add_argument("--tabular", action="store_true",
                    help="the table and series cases instead (benchmarks/scale_tabular.py: 1,000,000 x 50 "
                         "table, 10,000,000 x 9 series, prepare_data -> train -> extract -> anomaly_scores; "
                         "then prepare_data alone at a tenth of the sizes and at the sizes)")
    args = ap.parse_args()
    if args.idx:
        print(idx_report(args.work))
        return
    if args.tabular:
        for extra in ([], ["--prepare"]):
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale_tabular.py"),
                            "--work", str(args.work / "tabular"), *extra], check=True)
        return
    ns = args.n or [20000]
    rows, notes = [], []
    for n in ([] if args.ratios_only else ns):
        folder = celeba_folder(args.work, n)
        stream_dir = args.work / f"stream_{n}"
        dataset = {"source": "celeba", "path": str(folder), "color": "rgb", "center_crop": 140, "size": 96,
                   "split": {"method": "source"}}
        cfg = config(dataset, n, args.projections, args.max_train_samples)
        sizes = cfg["geometry"].get("projections", {}).get("tsne", {}).get("sample_sizes", [])
        df = run_workflow(ROOT, stream_dir, cfg, targets(sizes))
        rows += [{"N": n, "path": "streaming", **r} for r in df.to_dict("records")]
        notes.append(f"N = {n:,} streaming: snakemake {'ok' if df.attrs['ok'] else 'FAILED'}, {df.attrs['wall']:.0f} s")
        if args.in_memory_tree and n <= args.in_memory_max:
            old = {"source": "image_folder", "path": str(class_folders(folder)), "color": "rgb", "center_crop": 140,
                   "size": 96}
            df = run_workflow(args.in_memory_tree, args.work / f"memory_{n}",
                              config(old, n, False, args.max_train_samples), targets([]))
            rows += [{"N": n, "path": "in-memory", **r} for r in df.to_dict("records")]
            notes.append(f"N = {n:,} in-memory: snakemake {'ok' if df.attrs['ok'] else 'FAILED'}, {df.attrs['wall']:.0f} s")
        print("\n".join(notes[-2:]), file=sys.stderr)
    lines = ["### Peak memory and wall time per rule (Snakemake benchmark files)", "",
             "| N | path | rule | job | wall s | max RSS MB | MB per 1k images |", "|---|---|---|---|---|---|---|"]
    if args.ratios_only:
        lines = []
    for r in rows:
        lines.append(f"| {r['N']:,} | {r['path']} | {r['rule']} | {r['job']} | {r['s']:.0f} | {r['max_rss_mb']:.0f} | "
                     f"{r['max_rss_mb'] / r['N'] * 1000:.1f} |")
    lines += ["", *[f"- {note}" for note in notes], ""]
    store = args.work / f"stream_{ns[0]}" / "results" / "data" / "celeba"
    if (store / "images.npy").is_file() and not args.no_ratios:
        stream, memory = throughput(store, args.throughput_samples)
        lines += ["### Training throughput, side by side (one process, alternating runs, median of 2)", "",
                  "| path | images/s |", "|---|---|", f"| streaming from the store | {stream:.1f} |",
                  f"| one float32 array in memory | {memory:.1f} |", "",
                  f"streaming / in-memory = **{stream / memory:.2f}** ({args.throughput_samples:,} training images "
                  f"of N = {ns[0]:,}, conv AE 32-64-128-256, batch 128, 2 threads)", ""]
        seconds = decode_workers(celeba_folder(args.work, ns[0]), args.work / "workers", args.workers_samples)
        lines += ["### prepare_data: decoding processes (same bytes written)", "",
                  "| workers | seconds |", "|---|---|", *[f"| {w} | {s:.1f} |" for w, s in seconds.items()], "",
                  f"1 worker / 2 workers = **{seconds[1] / seconds[2]:.2f}x** "
                  f"({min(args.workers_samples, ns[0]):,} JPEGs)", ""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
