"""The attributes stage at CelebA's scale: time and peak memory of its jobs as N grows.

    python benchmarks/attributes.py [--n 20000 --n 80000 --n 182732] [--work DIR]

For each N it writes CelebA-shaped inputs: a latents table of N x 256 float32 (a few dimensions
carry a few of 40 correlated binary attributes, the rest noise; the split 89 % train like
CelebA's), the attribute table (sample_id, class, 40 int8 attributes) and a store of N tiny
images (the traversals read only the few they show). Then each job of the stage runs in its own
process with the stage's default settings, as the workflow runs it: attribute_probes,
disentanglement, attribute_traversals (nearest real images: a model without a decoder, which
searches all N latents), plot_attributes. Reported per job: wall seconds and peak RSS (the
process's ru_maxrss, torch not imported), and the ratio of each at N to the smallest N measured in
the same run (the machine is shared: ratios, not absolute times). The jobs read latents and
attributes, never the images but those shown: peak RSS should grow with the latents table only
(N x 256 x 4 bytes: 187 MB at 182,732), not with anything else.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
D, K = 256, 40

_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    from latent_atlas.runtime import Files, Job
    from latent_atlas.schema import defaults
    import latent_atlas.attributes.jobs as jobs

    work, name = Path(sys.argv[1]), sys.argv[2]
    s = defaults("#/properties/attributes")
    common = dict(latents=work / "latents.parquet", attributes=work / "attributes.parquet")
    out = work / "out"
    out.mkdir(exist_ok=True)
    wc = Files(dataset="d", model="m")
    t0 = time.perf_counter()
    if name == "attribute_probes":
        jobs.attribute_probes(Job(input=Files(**common), output=Files(**{k: out / f"{k}.parquet" for k in
                              ("probes", "directions", "angles", "dimensions")}), wildcards=wc),
                              seed=0, numeric_threads=1, names=None, split=s["split"], max_samples=s["max_samples"],
                              cv_folds=s["cv_folds"], mi_bins=s["mi_bins"], top_dimensions=s["top_dimensions"])
    elif name == "disentanglement":
        jobs.disentanglement(Job(input=Files(**common), output=Files(**{k: out / f"{k}.parquet" for k in
                             ("scores", "factors", "importance")}), wildcards=wc),
                             seed=0, numeric_threads=1, factors=None, max_samples=s["max_samples"],
                             mi_bins=s["mi_bins"], dci=s["dci"])
    elif name == "attribute_traversals":
        traversal = {k: v for k, v in s["traversal"].items() if k != "arithmetic"}
        jobs.attribute_traversals(Job(input=Files(**common, probes=out / "probes.parquet",
                                  directions=out / "directions.parquet", data=work / "store"),
                                  output=Files([out / "traversals.parquet"]), wildcards=wc),
                                  seed=0, numeric_threads=1, split=s["split"], max_samples=s["max_samples"],
                                  traversal=traversal, arithmetic=None, decode=False)
    else:
        figures = ("probes", "dimensions", "angles", "disentanglement", "traversals", "axes", "components",
                   "arithmetic")
        jobs.plot_attributes(Job(input=Files(probes=out / "probes.parquet", angles=out / "angles.parquet",
                             dimensions=out / "dimensions.parquet", factors=out / "factors.parquet",
                             importance=out / "importance.parquet", traversals=out / "traversals.parquet"),
                             output=Files(**{f: [out / f"{f}.png"] for f in figures}), wildcards=wc),
                             top_dimensions=s["top_dimensions"])
    print(json.dumps({"s": time.perf_counter() - t0,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "torch": "torch" in sys.modules}))
""")
JOBS = ["attribute_probes", "disentanglement", "attribute_traversals", "plot_attributes"]


def write_inputs(work: Path, n: int, seed: int = 0) -> None:
    """CelebA-shaped latents, attributes and a store of tiny images (written once per N)."""
    from latent_atlas.data.store import write_dataset
    from latent_atlas.io import write_parquet
    from latent_atlas.latents import file_metadata, id_frame, latents_frame_of

    if (work / "attributes.parquet").is_file():
        return
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # correlated binary attributes: thresholds of 8 shared factors plus noise
    shared = rng.normal(size=(n, 8)).astype(np.float32)
    mixing = rng.normal(size=(8, K)).astype(np.float32)
    logits = shared @ mixing + rng.normal(size=(n, K)).astype(np.float32) * 2
    attributes = (logits > np.quantile(logits, rng.uniform(0.5, 0.95, K), axis=0).diagonal()).astype(np.int8)
    z = rng.normal(size=(n, D)).astype(np.float32)
    z[:, :8] += shared
    ids = np.arange(n)
    split = np.where(ids < round(n * 162770 / 182732), "train", "test")
    labels = attributes[:, 20].astype(np.int64)
    frame = latents_frame_of(id_frame(ids, split, labels, ["not A20", "A20"]), z)
    write_parquet(frame, work / "latents.parquet", file_metadata("d", "m", "conv_ae", "bench"))
    names = [f"A{k}" for k in range(K)]
    table = pd.DataFrame({"sample_id": ids, "class": labels.astype(np.int8),
                          **{name: attributes[:, k] for k, name in enumerate(names)}})
    described = [{"name": "class", "origin": "class", "levels": ["not A20", "A20"]}] + [
        {"name": name, "origin": "source", "levels": None} for name in names]
    write_parquet(table, work / "attributes.parquet", {"dataset": "d", "attributes": described})
    chunks = ((np.arange(s, min(s + 8192, n))[:, None, None, None] % 256 * np.ones((1, 3, 8, 8))).astype(np.uint8)
              for s in range(0, n, 8192))
    write_dataset(work / "store", ids, split, labels, ["not A20", "A20"], "d", chunks)


def run_job(work: Path, name: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(work), name], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, action="append", help="samples; repeatable (default 20000, 80000, 182732)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/latent-atlas-attributes"))
    args = ap.parse_args()
    sizes = sorted(args.n or [20000, 80000, 182732])
    rows = []
    for n in sizes:
        work = args.work / f"n{n}"
        write_inputs(work, n)
        for name in JOBS:
            got = run_job(work, name)
            rows.append({"n": n, "job": name, **got})
            print(f"# N={n:,} {name}: {got['s']:.1f} s, {got['rss_mb']:.0f} MB", file=sys.stderr)
    table = pd.DataFrame(rows)
    base = table[table["n"] == sizes[0]].set_index("job")
    print(f"| job | N | s | peak RSS (MB) | s / s at {sizes[0]:,} | RSS / RSS at {sizes[0]:,} |")
    print("|---|---|---|---|---|---|")
    for r in table.itertuples():
        print(f"| {r.job} | {r.n:,} | {r.s:.1f} | {r.rss_mb:.0f} | {r.s / base.loc[r.job, 's']:.2f} | "
              f"{r.rss_mb / base.loc[r.job, 'rss_mb']:.2f} |")
    latents_mb = {n: n * D * 4 / 2**20 for n in sizes}
    print("\nlatents table as float32: " + ", ".join(f"{n:,}: {mb:.0f} MB" for n, mb in latents_mb.items()))


if __name__ == "__main__":
    main()
