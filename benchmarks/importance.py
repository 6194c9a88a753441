"""Benchmark of the permutation-importance engine against the naive loop, and of the sharded rule.

Not a test: run it by hand (`python benchmarks/importance.py [--quick]`); it prints a markdown
table. For each encoder, the naive loop (re-encode all N images per pixel and permutation) and the
engine run in the same process on the same images, pixels and permutations, and their results are
compared. The naive loop is slow at full size, so it runs on an evenly spaced subset of pixels and
its cost per pixel is extrapolated to the whole image (its cost does not depend on the pixel); the
engine runs on every pixel for the paper's encoder (its cost does depend on the pixel: how many
images change) and, where that would take minutes, on the same subset as the naive loop. "Images/s" counts the images whose encoding
each method accounts for: pixels x permutations x N per second. Each timing is the best of 3 calls
(after a small warm-up call), for both contenders alike.

`--conv-only` times the convolutional encoders instead (a few minutes): the default config's
`cnn_classifier` and the 32-64-128-256 `conv_ae` at 28x28 on the 8 central pixels (nearly every
image's pixel changes), and the study's conv AE at 3x96x96 on synthetic images on 16 pixels (4
corners, 12 interior: `study_pixels`), and the 28x28 `conv_ae` again on 8 pixels spread evenly
over the image (2,000 images: the basis of the engine-vs-naive table's conv row), each with the
naive loop, `rows` and `local` on the same pixels.

`--groups` times issue 26's statistical test (a few minutes): 4x4 patch importance (49 groups)
against per-pixel importance (784 pixels) of the same model, images and permutations, each on the
path `auto` picks; conditional against marginal permutations (pixels and patches); and a block of
64 pixels with the intervals (every image's terms, the standard error) against the engine of commit
88eb1b5, the last without them (`git archive` into a temporary folder, run in its own process
beside this one's, alternated, best of 3).

The sharded rule is timed by running Snakemake on config/test.yaml (dense_ae, blocks of 64 of the
16x16 digits: 4 shards) with --cores 1 and then --cores 2 (upstream jobs are run first, untimed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from latent_atlas.devices import default_device  # noqa: E402
from latent_atlas.importance import engine as imp  # noqa: E402
from latent_atlas.models.networks import build_model  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def test_images(n: int) -> tuple[np.ndarray, str]:
    """The first n Fashion-MNIST test images (N, 1, 28, 28) in [0, 1], or a stand-in if absent."""
    if FASHION.exists():
        from latent_atlas.data.sources import read_idx

        x = read_idx(FASHION, "images")[:n]
        return (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), "Fashion-MNIST test"
    rng = np.random.default_rng(0)  # sparse images with exact zeros, like Fashion-MNIST
    x = rng.integers(0, 256, size=(n, 1, 28, 28)) * (rng.random((n, 1, 28, 28)) > 0.5) / 255.0
    return x.astype(np.float32), "synthetic (Fashion-MNIST not installed)"


REPEATS = 3


def timed(fn, repeats: int = REPEATS):
    """fn's result and its best wall time of `repeats` calls (the first call of a size also pays
    one-off costs: page faults of fresh arrays, numba's thread pool, torch's kernel choice)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def bench_model(name, model, images, n_perm, naive_pixels, engine_all, batch_size):
    n = len(images)
    hw = images.shape[2] * images.shape[3]
    split = imp.model_split(model, "latent")
    encode = model.encode
    subset = np.unique(np.linspace(0, hw - 1, naive_pixels).round().astype(int))
    # Warm up (numba compile, torch kernels) outside the timings.
    imp.pixel_importance(encode, images[:64], subset[:2], n_perm=1, split=split)
    naive, t_naive = timed(lambda: imp.pixel_importance(
        encode, images, subset, n_perm=n_perm, method="naive", batch_size=batch_size))
    fast_sub, _ = timed(lambda: imp.pixel_importance(
        encode, images, subset, n_perm=n_perm, split=split, batch_size=batch_size), repeats=1)
    scale = naive.per_permutation.max()
    err = float(np.abs(fast_sub.per_permutation - naive.per_permutation).max() / scale)
    if engine_all:
        fast, t_fast = timed(lambda: imp.pixel_importance(
            encode, images, None, n_perm=n_perm, split=split, batch_size=batch_size))
        fast_pixels = hw
    else:
        fast, t_fast = timed(lambda: imp.pixel_importance(
            encode, images, subset, n_perm=n_perm, split=split, batch_size=batch_size))
        fast_pixels = len(subset)
    naive_per_pixel = t_naive / len(subset)
    fast_per_pixel = t_fast / fast_pixels
    return {
        "model": name, "N": n, "method": fast.method,
        "naive_s": naive_per_pixel * hw, "naive_ips": len(subset) * n_perm * n / t_naive,
        "naive_note": f"{len(subset)} px measured, x{hw / len(subset):.0f}",
        "fast_s": fast_per_pixel * hw, "fast_ips": fast_pixels * n_perm * n / t_fast,
        "fast_note": "all px" if engine_all else f"{fast_pixels} px measured, x{hw / fast_pixels:.0f}",
        "ratio": naive_per_pixel / fast_per_pixel, "max_rel_diff": err,
    }


def central_pixels(h, w, n_pixels):
    """The first `n_pixels` of the 3x3 block around the centre (row-major): where nearly every
    image's pixel changes, the hard case for row skipping."""
    centre = (h // 2) * w + w // 2
    return np.array([centre + dr * w + dc for dr in range(-1, 2) for dc in range(-1, 2)][:n_pixels])


def study_pixels(h, w):
    """16 pixels of a 96x96 image, mostly interior: the 4 corners and a 3x4 grid (rows 24, 47,
    72; columns 11, 36, 60, 85: both parities under the stride-2 convolutions)."""
    corners = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)]
    grid = [(r, c) for r in (24, 47, 72) for c in (11, 36, 60, 85)]
    return np.array(sorted(r * w + c for r, c in corners + grid))


def bench_conv(name, model, output, images, n_perm, pixels, batch_size=8192):
    """naive, rows and local side by side on the same pixels; best of 3 each."""
    n = len(images)
    fn = imp.output_function(model, output)
    stack, why = imp.model_stack(model, output)
    if stack is None:
        raise RuntimeError(f"{name}: no local stack ({why})")
    imp.pixel_importance(fn, images[:64], pixels[:1], n_perm=1, method="local", stack=stack)  # warm-up
    runs = {m: timed(lambda m=m: imp.pixel_importance(fn, images, pixels, n_perm=n_perm, method=m,
                                                      stack=stack, batch_size=batch_size))
            for m in ("naive", "rows", "local")}
    ref = runs["naive"][0].per_permutation
    work = len(pixels) * n_perm * n
    return {"model": name, "N": n, "pixels": len(pixels),
            **{f"{m}_ips": work / t for m, (_, t) in runs.items()},
            "rows_x": runs["naive"][1] / runs["rows"][1], "local_x": runs["naive"][1] / runs["local"][1],
            "max_rel_diff": float(max(np.abs(runs[m][0].per_permutation - ref).max()
                                      for m in ("rows", "local")) / ref.max())}


def conv_models():
    """The issue's three conv encoders with synthetic or Fashion-MNIST images."""
    torch.manual_seed(0)
    images, _ = test_images(500)
    spread_images, _ = test_images(2000)
    spread = np.unique(np.linspace(0, 28 * 28 - 1, 8).round().astype(int))  # the engine-vs-naive table's pixels
    rng = np.random.default_rng(1)
    colour = rng.random((200, 3, 96, 96)).astype(np.float32)
    central = central_pixels(28, 28, 8)
    return [
        ("cnn_classifier 28x28 (default), features", build_model("cnn_classifier", (1, 28, 28), 10), "features",
         images, central),
        ("conv_ae 32-64-128-256 28x28", build_model("conv_ae", (1, 28, 28), 10, {"latent_dim": 32}), "latent",
         images, central),
        ("study conv_ae 3x96x96, 256-D (synthetic)", build_model("conv_ae", (3, 96, 96), 10, {"latent_dim": 256}),
         "latent", colour, study_pixels(96, 96)),
        # The basis of the "3.9x" (rows): 8 pixels spread evenly over the image, 2,000 images.
        ("conv_ae 32-64-128-256 28x28, 8 pixels spread over the image",
         build_model("conv_ae", (1, 28, 28), 10, {"latent_dim": 32}), "latent", spread_images, spread),
    ]


def print_conv_table(rows, n_perm, threads):
    print(f"\nConvolutional encoders, {n_perm} permutations, {threads} threads, "
          f"device {default_device()}; images/s = pixels x permutations x N / s, best of 3\n")
    print("| model | N | pixels | naive images/s | rows images/s | local images/s | rows speed-up | "
          "local speed-up | max rel. diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['N']} | {r['pixels']} | {r['naive_ips']:,.0f} | {r['rows_ips']:,.0f} | "
              f"{r['local_ips']:,.0f} | {r['rows_x']:.1f}x | {r['local_x']:.1f}x | {r['max_rel_diff']:.1e} |")


def snakemake_wall(cores: int, workdir: Path, forcerun: bool) -> float:
    import yaml

    cfg = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    cfg["importance"] = {"models": ["dense_ae"], "block_size": 64, "n_perm": 2}
    configfile = workdir / "bench.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    exe = str(Path(sys.executable).with_name("snakemake"))
    cmd = [exe, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", str(cores),
           "results/digits/dense_ae/importance/pixel_importance.parquet", "--quiet", "all"]
    if forcerun:
        cmd += ["--forcerun", "importance_block"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"snakemake failed:\n{proc.stderr[-4000:]}")
    return time.perf_counter() - t


MEMORY_PROBE = """
import sys, numpy as np, torch
from latent_atlas.importance.engine import model_stack, pixel_importance
from latent_atlas.importance.memory import peak_rss
from latent_atlas.models.networks import build_model
size, method, budget, n, threads = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
model = build_model("conv_ae", (3, size, size), 10, {"channels": [32, 64, 128, 256], "latent_dim": 256}).eval()
images = np.random.default_rng(0).random((n, 3, size, size), dtype=np.float32)
stack = model_stack(model, "latent")[0] if method == "local" else None
hw = size * size
pixels = np.arange(hw // 2 - 32, hw // 2 + 32) if method == "local" else np.arange(hw // 2 - 4, hw // 2 + 4)
r = pixel_importance(model.encode, images, pixels, n_perm=4, seed=0, stack=stack, method=method, device="cpu",
                     memory_mb=budget)
mp = r.memory_plan
print(mp.rss_mb, mp.predicted_peak_mb, peak_rss() / 2**20, mp.batch_size,
      (mp.cache_bytes or 0) / 2**20)
"""


def print_memory(threads: int, quick: bool = False) -> None:
    """importance.memory_mb on the 96x96 study AE (3x96x96, 32-64-128-256, 256-D) and the same
    network at 64x64: one block of central pixels, n_perm 4, on the local path (64 pixels, every
    image) and the rows path (8 pixels, 200 images: it re-encodes every changed image), each in a
    fresh process, its plan's predicted peak against the measured one (VmHWM)."""
    n = 500 if quick else 2000
    print(f"{n} synthetic images (rows path: 200), 64 central pixels (rows path: 8), n_perm 4, {threads} threads; "
          f"each case a fresh process\n")
    print("| image | path | memory_mb | held before (MB) | rows per pass | local cache (MB) | predicted peak (MB) | "
          "measured peak (MB) | predicted / measured |")
    print("|---|---|---|---|---|---|---|---|---|")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    for size in (64, 96):
        for method in ("local", "rows"):
            for budget in (1500, 2000):
                images = n if method == "local" else 200
                out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(size), method, str(budget), str(images),
                                      str(threads)], env=env, capture_output=True, text=True, check=True).stdout
                rss, predicted, peak, rows, cache = map(float, out.split())
                print(f"| 3x{size}x{size} | {method} | {budget} | {rss:.0f} | {rows:.0f} | {cache:.0f} | "
                      f"{predicted:.0f} | {peak:.0f} | {predicted / peak:.2f} |", flush=True)


GROUP_MODELS = [  # (name, arch, params, output, images)
    ("dense_ae 784->32 (paper)", "dense_ae", {"hidden": [], "latent_dim": 32}, "latent", 10000),
    ("conv_ae 16-32-64-128 (default config)", "conv_ae", {"channels": [16, 32, 64, 128], "latent_dim": 32},
     "latent", 1000),
    ("cnn_classifier 16-32 (default config), features", "cnn_classifier", {"channels": [16, 32], "feature_dim": 128},
     "features", 1000),
]
BEFORE_INTERVALS = "88eb1b5"


def _group_model(arch, params, output):
    torch.manual_seed(0)
    model = build_model(arch, (1, 28, 28), 10, params).eval()
    stack = imp.model_stack(model, output)[0] if imp.model_split(model, output) is None else None
    return imp.output_function(model, output), imp.model_split(model, output), stack


def print_groups(threads: int, quick: bool) -> None:
    """Patch vs pixel, conditional vs marginal, and intervals vs none (module docstring)."""
    from latent_atlas.importance.groups import patch_groups

    patches = patch_groups(28, 28, 4)
    conditional = {"ring": 2, "clusters": 16}
    rows = []
    for name, arch, params, output, n in GROUP_MODELS:
        images, _ = test_images(n // 4 if quick else n)
        fn, split, stack = _group_model(arch, params, output)
        kw = dict(n_perm=4, seed=0, split=split, stack=stack)
        with torch.no_grad():
            imp.pixel_importance(fn, images[:64], [400], **kw)  # warm-up
            times = {}
            # As the stage runs them: per-pixel in 13 blocks of 64 pixels, the 49 patches in one block.
            pixel_blocks = [{"pixels": np.arange(b, min(b + 64, 784))} for b in range(0, 784, 64)]
            patch_block = [{"groups": patches}]
            for label, blocks, cond in (("pixel", pixel_blocks, None), ("patch", patch_block, None),
                                        ("pixel conditional", pixel_blocks, conditional),
                                        ("patch conditional", patch_block, conditional)):
                res, times[label] = timed(lambda: [imp.pixel_importance(fn, images, conditional=cond, **block, **kw)
                                                   for block in blocks],
                                          repeats=1 if "pixel" in label and arch != "dense_ae" else REPEATS)
                method = res[0].method
        rows.append((name, len(images), method, times))
        print(f"done: {name}", file=sys.stderr)
    print(f"\nPixel groups and conditional permutations, 4 permutations, {threads} threads, device "
          f"{default_device()}; wall s of the 13 blocks of 64 pixels or the block of 49 patches (per-pixel "
          f"runs of the conv models: one run, the others best of 3)\n")
    print("| model | N | path | pixels (784) | 4x4 patches (49) | patch speed-up | pixels conditional | "
          "conditional / marginal | patches conditional | conditional / marginal |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, n, method, t in rows:
        print(f"| {name} | {n} | {method} | {t['pixel']:.2f} | {t['patch']:.2f} | {t['pixel'] / t['patch']:.1f}x | "
              f"{t['pixel conditional']:.2f} | {t['pixel conditional'] / t['pixel']:.2f}x | "
              f"{t['patch conditional']:.2f} | {t['patch conditional'] / t['patch']:.2f}x |")
    print_interval_cost(threads, quick)


_BLOCK_SCRIPT = """
import sys, time, json, numpy as np, torch
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])
torch.set_num_threads(int(sys.argv[3]))
from importance import GROUP_MODELS, _group_model, test_images
from latent_atlas.importance import engine as imp
out = {}
for name, arch, params, output, n in GROUP_MODELS:
    images, _ = test_images(int(n * float(sys.argv[4])))
    fn, split, stack = _group_model(arch, params, output)
    pixels = np.arange(384, 448)  # a block of 64 central pixels
    with torch.no_grad():
        imp.pixel_importance(fn, images[:64], pixels[:1], n_perm=1, split=split, stack=stack)
        t = time.perf_counter()
        imp.pixel_importance(fn, images, pixels, n_perm=4, seed=0, split=split, stack=stack)
        out[name] = time.perf_counter() - t
print(json.dumps(out))
"""


def print_interval_cost(threads: int, quick: bool) -> None:
    """A block of 64 pixels with intervals (this tree) against without (BEFORE_INTERVALS), each in
    its own process, alternated, best of 3."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE_INTERVALS, "src"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        best = {"before": {}, "now": {}}
        for _ in range(REPEATS):
            for which, src in (("before", Path(tmp) / "src"), ("now", ROOT / "src")):
                proc = subprocess.run([sys.executable, "-c", _BLOCK_SCRIPT, str(src), str(ROOT / "benchmarks"),
                                       str(threads), "0.25" if quick else "1"], capture_output=True, text=True,
                                      check=True)
                for name, t in json.loads(proc.stdout.splitlines()[-1]).items():
                    best[which][name] = min(best[which].get(name, float("inf")), t)
    print(f"\nA block of 64 pixels with intervals and p-values' inputs (this tree) against the engine before "
          f"them ({BEFORE_INTERVALS}), 4 permutations, {threads} threads, best of 3, wall s\n")
    print("| model | before | with intervals | ratio |")
    print("|---|---|---|---|")
    for name in best["now"]:
        b, a = best["before"][name], best["now"][name]
        print(f"| {name} | {b:.2f} | {a:.2f} | {a / b:.2f}x |")
    from latent_atlas.importance.inference import declare

    rng = np.random.default_rng(0)
    imp_, se = rng.random((784, 32)), rng.random((784, 32)) * 0.1
    _, t = timed(lambda: declare(imp_, se, min_effect=0.01, fdr=0.05))
    print(f"\np-values and Benjamini-Hochberg over a 784 x 32 table (the gather job's part): {t * 1000:.1f} ms")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer images and pixels (about a minute)")
    ap.add_argument("--threads", type=int, default=2, help="torch / numba threads")
    ap.add_argument("--no-snakemake", action="store_true", help="skip the sharded-rule timing")
    ap.add_argument("--sharded-only", action="store_true", help="only the sharded-rule timing")
    ap.add_argument("--conv-only", action="store_true",
                    help="only the conv encoders' naive / rows / local table (a few minutes)")
    ap.add_argument("--only", help="engine-vs-naive table: only the encoders whose name contains this")
    ap.add_argument("--groups", action="store_true",
                    help="only pixel groups, conditional permutations and the intervals' cost (issue 26)")
    ap.add_argument("--memory", action="store_true",
                    help="only importance.memory_mb: the plan's predicted peak against the measured one")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory:
        return print_memory(args.threads, quick=args.quick)
    if args.groups:
        return print_groups(args.threads, args.quick)
    if args.conv_only:
        conv_rows = []
        for name, model, output, x, pixels in conv_models():
            with torch.no_grad():
                conv_rows.append(bench_conv(name, model.eval(), output, x, 4, pixels))
            print(f"done: {name}", file=sys.stderr)
        print_conv_table(conv_rows, 4, args.threads)
        return
    torch.manual_seed(0)
    n_dense = 2000 if args.quick else 10000
    n_conv = 500 if args.quick else 2000
    images, source = test_images(n_dense)
    n_perm = 4
    shape = (1, 28, 28)
    models = [
        ("784->32 (paper)", build_model("dense_ae", shape, 10, {"hidden": [], "latent_dim": 32}),
         images, 8 if args.quick else 16, True),
        ("784-512-256-128-32", build_model("dense_ae", shape, 10,
                                           {"hidden": [512, 256, 128], "latent_dim": 32}),
         images, 4 if args.quick else 16, False),
        ("conv_ae 32-64-128-256", build_model("conv_ae", shape, 10, {"latent_dim": 32}),
         images[:n_conv], 4 if args.quick else 8, False),
    ]
    rows = []
    models = [m for m in models if args.only is None or args.only in m[0]]
    for name, model, x, naive_pixels, engine_all in ([] if args.sharded_only else models):
        model.eval()
        with torch.no_grad():
            rows.append(bench_model(name, model, x, n_perm, naive_pixels, engine_all, 8192))
        print(f"done: {name}", file=sys.stderr)
    if rows:
        print_table(rows, n_perm, source, args.threads)
    if not args.no_snakemake:
        print_sharded()


def print_table(rows, n_perm, source, threads):
    print(f"\nPermutation importance, {n_perm} permutations, {source} images, "
          f"{threads} threads, device {default_device()}\n")
    print("| encoder | N | naive: wall s (784 px) | naive images/s | engine path | "
          "engine: wall s (784 px) | engine images/s | speed-up | max rel. diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['N']} | {r['naive_s']:.1f} ({r['naive_note']}) | "
              f"{r['naive_ips']:,.0f} | {r['method']} | {r['fast_s']:.2f} ({r['fast_note']}) | "
              f"{r['fast_ips']:,.0f} | {r['ratio']:.1f}x | {r['max_rel_diff']:.1e} |")


def print_sharded():
    with tempfile.TemporaryDirectory(prefix="importance-bench-") as tmp:
        work = Path(tmp)
        snakemake_wall(2, work, forcerun=False)  # data, training, plan: untimed
        one = snakemake_wall(1, work, forcerun=True)
        two = snakemake_wall(2, work, forcerun=True)
    print("\nSharded rule (config/test.yaml, dense_ae, 4 blocks of 64 pixels, shards + gather):\n")
    print("| parallel jobs | wall s |\n|---|---|")
    print(f"| 1 | {one:.1f} |\n| 2 | {two:.1f} |")


if __name__ == "__main__":
    main()
