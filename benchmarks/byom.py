"""Benchmark: what loading your own model costs a stage, against the same network trained here.

Not a test: run it by hand (`python benchmarks/byom.py [--quick]`); it prints a markdown table.
For the default config's conv_ae (32-64-128-256, 32-D) and cnn_classifier at 28x28, the native
model.pt and its three exports (state dict, torch.export, ONNX) are imported as the workflow
imports them (`import_model`), then each stage job runs on every model.pt side by side in one
process, interleaved, best of 3: `load_model` alone, the extraction job (load, latents of every
image, reconstructions or predictions and hidden layers, writes) and one importance block job.
"Ratio" is the job's wall time over the native model's. The state dict's model.pt is the native
one byte for byte, so its ratio measures only the noise of the timing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from latent_atlas.data.store import Dataset, save_dataset  # noqa: E402
from latent_atlas.importance import jobs as importance  # noqa: E402
from latent_atlas.importance.plan import plan  # noqa: E402
from latent_atlas.io import write_json  # noqa: E402
from latent_atlas.models import jobs  # noqa: E402
from latent_atlas.models.networks import build_model, load_model, save_model  # noqa: E402
from latent_atlas.runtime import Files, Job, set_determinism  # noqa: E402
from latent_atlas.schema import with_defaults  # noqa: E402
from model_helpers import export_model  # noqa: E402
from rule_settings import importance_settings  # noqa: E402


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2000 images, importance on 16 pixels")
    parser.add_argument("--only", help="only the model whose name contains this (conv_ae, cnn_classifier)")
    parser.add_argument("--block", default="0012", help="the importance block timed (0012: the last 16 pixels; "
                                                        "0006: 64 central pixels)")
    parser.add_argument("--full-block", action="store_true",
                        help="an importance block as the workflow runs it: 64 pixels, n_perm 4, every test image")
    parser.add_argument("--batchnorm", action="store_true",
                        help="only the user's BatchNorm CNN: its fast path against its rows path (issue 25)")
    args = parser.parse_args()
    if args.batchnorm:
        return batchnorm_cnn(args.quick)
    n = 2000 if args.quick else 10000
    set_determinism(0, 2)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="byom-bench-"))
    labels = np.arange(n) % 10
    data = str(tmp / "data")
    save_dataset(Dataset(rng.random((n, 1, 28, 28), dtype=np.float32), labels, [str(k) for k in range(10)],
                         np.where(np.arange(n) < n * 0.8, "train", "test"), np.arange(n, dtype=np.int64), "synthetic"),
                 data)
    if args.full_block:  # importance's defaults: blocks of 64 pixels, 4 permutations, the whole test split
        section = {"device": "cpu", "n_perm": 4, "block_size": 64, "max_samples": None}
    else:
        section = {"device": "cpu", "n_perm": 2, "block_size": 16 if args.quick else 32, "max_samples": 200}
    settings = with_defaults(section, "#/properties/importance", "importance")
    plan_file = str(tmp / "plan.json")
    write_json(plan(data, settings["block_size"]), plan_file)
    block = (f"importance block {args.block} of {settings['block_size']} pixels, n_perm {settings['n_perm']}, "
             f"{settings['max_samples'] or 'every'} test images")
    print(f"{n} synthetic 28x28 images, numeric_threads 2, torch {torch.__version__}; {block}; best of 3\n")
    print("| model | source | import job (s) | load_model (s) | extract job (s) | ratio | importance block (s) | path | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for arch, kind in (("conv_ae", "autoencoder"), ("cnn_classifier", "classifier")):
        if args.only and args.only not in arch:
            continue
        folder = tmp / arch
        folder.mkdir()
        model = build_model(arch, (1, 28, 28), 10, {"latent_dim": 32} if kind == "autoencoder" else {}).eval()
        save_model(model, folder / "native.pt", [str(k) for k in range(10)], dataset="synthetic", name=arch)
        paths, imports = {"native": folder / "native.pt"}, {"native": float("nan")}
        block_settings = importance_settings(importance.importance_block, settings, kind=kind, seed=0,
                                             numeric_threads=2)
        for fmt, source in export_model(model, folder).items():
            spec = {"dataset": "synthetic", "source": source}
            spec.update({"arch": arch, "params": model.params} if fmt == "state_dict" else {"kind": kind})
            out = folder / f"{fmt}.pt"
            job = Job(input=Files(data=data), output=Files(model=str(out)), wildcards=Files(model=arch))
            imports[fmt] = best_of(lambda: jobs.import_model(job, arch=spec.get("arch"), arch_params=spec.get("params"),
                                                             kind=spec.get("kind"), source=spec["source"]), 1)
            paths[fmt] = out
        extra = ({"reconstructions": "r.npz"} if kind == "autoencoder"
                 else {"predictions": "p.parquet", "hidden": "h.parquet"})
        timings: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(3):  # interleaved rounds: drift of the machine hits every source alike
            for name, path in paths.items():
                out = Files(latents=str(folder / f"{name}_latents.parquet"),
                            **{k: str(folder / f"{name}_{v}") for k, v in extra.items()})
                ext = Job(input=Files(data=data, model=str(path)), output=out, wildcards=Files(model=arch))
                block = Job(input=Files(data=data, model=str(path), plan=plan_file),
                            output=Files([str(folder / f"{name}_block.parquet")]),
                            wildcards=Files(dataset="synthetic", model=arch, block=args.block))
                timings[name].append((
                    best_of(lambda: load_model(path), 1),
                    best_of(lambda: jobs.extract_model(ext, numeric_threads=2, config_hash="h", settings={
                        "batch_size": 1024, "reconstructions_per_class": 4, "hidden_max_samples": 10000}), 1),
                    best_of(lambda: importance.importance_block(block, **block_settings), 1)))
        base = np.min(np.array(timings["native"]), axis=0)
        for name, rows in timings.items():
            load, ext, imp = np.min(np.array(rows), axis=0)
            loaded = load_model(paths[name])
            path = "local" if loaded.layer_sequence("latent" if kind == "autoencoder" else "features") is not None else "rows"
            print(f"| {arch} | {name} | {imports[name]:.2f} | {load:.3f} | {ext:.2f} | {ext / base[1]:.3f} | "
                  f"{imp:.2f} | {path} | {imp / base[2]:.3f} |")


def batchnorm_cnn(quick: bool) -> None:
    """A CNN as users train it (input normalisation in the graph, stride-2 Conv2d + BatchNorm2d +
    ReLU blocks, average pooling, a 64-D feature layer with BatchNorm1d; BatchNorm statistics
    randomised), exported with torch.export (and ONNX where the converter maps it), imported as
    the workflow does: one importance block of its features on the fast path `auto` takes against
    the rows path, interleaved, best of 3, with the largest difference of their values."""
    from latent_atlas.importance.engine import model_stack, pixel_importance
    from latent_atlas.models.loaded import import_record, model_from_record
    from model_helpers import UserCNN, randomise_batch_norms

    set_determinism(0, 2)
    torch.manual_seed(0)
    n, pixels = (500, np.arange(300, 316)) if quick else (1000, np.arange(64 * 6, 64 * 7))
    images = np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32)
    model = randomise_batch_norms(UserCNN(channels=1, size=28))
    tmp = Path(tempfile.mkdtemp(prefix="byom-bn-bench-"))
    sources = {}
    for fmt in ("torch_export", "onnx"):
        head = torch.nn.Linear(64, 10).eval()
        if fmt == "torch_export":
            batch = {0: torch.export.Dim("batch")}
            for name, module, shape in (("encoder", model, (1, 28, 28)), ("head", head, (64,))):
                program = torch.export.export(module, (torch.rand(4, *shape),), dynamic_shapes=(batch,))
                torch.export.save(program, tmp / f"{name}.pt2")
            sources[fmt] = {"encoder": str(tmp / "encoder.pt2"), "head": str(tmp / "head.pt2")}
        else:
            for name, module, shape in (("encoder", model, (1, 28, 28)), ("head", head, (64,))):
                torch.onnx.export(module, (torch.rand(4, *shape),), str(tmp / f"{name}.onnx"), dynamo=False,
                                  input_names=["input"], dynamic_axes={"input": {0: "batch"}})
            sources[fmt] = {"encoder": str(tmp / "encoder.onnx"), "head": str(tmp / "head.onnx")}
    print(f"{n} synthetic 28x28 images, {len(pixels)} pixels, n_perm 4, numeric_threads 2, torch {torch.__version__}; "
          f"best of 3\n")
    print("| source | fast path | fast (s) | rows (s) | speed-up | max rel. diff |")
    print("|---|---|---|---|---|---|")
    for fmt, files in sources.items():
        source = {"format": fmt, **files, "latent_output": 0, "logits_output": None, "input_name": None,
                  "input_range": None, "mean": None, "std": None}
        loaded = model_from_record(import_record("user", "classifier", source, images, 10,
                                                 [str(k) for k in range(10)], "synthetic"))
        stack, why = model_stack(loaded, "features")
        runs = {"fast": [], "rows": []}
        results = {}
        for _ in range(3):
            for name in runs:
                t = time.perf_counter()
                results[name] = pixel_importance(loaded.features, images, pixels, n_perm=4, seed=0,
                                                 stack=stack if name == "fast" else None,
                                                 method="auto" if name == "fast" else "rows", device="cpu")
                runs[name].append(time.perf_counter() - t)
        fast, rows = min(runs["fast"]), min(runs["rows"])
        a, b = results["fast"].per_permutation, results["rows"].per_permutation
        diff = float(np.abs(a - b).max() / np.abs(b).max())
        print(f"| {fmt} | {results['fast'].method}{'' if stack is not None else ' (' + why + ')'} | {fast:.2f} | "
              f"{rows:.2f} | {rows / fast:.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
