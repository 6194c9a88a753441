"""Benchmark: training the FSDD case study's deep dense AE with and without `train.flush_denormals`.

Not a test: run it by hand on a prepared FSDD dataset file (the `prepare_data` output of
config/examples/fsdd.yaml):

    python benchmarks/denormals.py results/data/fsdd [--epochs 30] [--threads 1]

The 1024-512-450-384-256-192-128-96-64-32 autoencoder is trained as the `train` job trains it
(batch 64, Adam, lr 0.001), once keeping denormal floats and once flushing them, and after each
run the share of Adam's first and second moments that are denormal is counted. Then, side by side
in this process, interleaved, 4 rounds each: 36 training steps (one epoch's worth) from the state the
run without flushing ended in, once as it is and once with denormals flushed. The ratio of the
medians is what flushing saves per step once the moments have decayed into denormals.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from latent_atlas.runtime import configure_torch, set_determinism  # noqa: E402

HIDDEN = [512, 450, 384, 256, 192, 128, 96, 64]


def _denormal_counts(torch, optimizer) -> tuple[int, int, int]:
    tiny, first, second, total = torch.finfo(torch.float32).tiny, 0, 0, 0
    for state in optimizer.state.values():
        for key, v in state.items():
            if v.dim():
                n = int(((v.abs() < tiny) & (v != 0)).sum())
                first += n if key == "exp_avg" else 0
                second += n if key == "exp_avg_sq" else 0
                total += v.numel() if key == "exp_avg" else 0
    return first, second, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="the FSDD dataset store (results/data/fsdd)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    set_determinism(0, args.threads)
    torch = configure_torch()
    from latent_atlas.data.store import load_dataset
    from latent_atlas.models import training
    from latent_atlas.models.networks import build_model

    ds = load_dataset(args.data)
    optimizers = []
    original = training.make_optimizer

    def keep(model, settings):  # the optimiser the run builds, to count its moments afterwards
        optimizers.append(original(model, settings))
        return optimizers[-1]

    training.make_optimizer = keep
    rows, runs = [], {}
    for flush in (False, True):
        torch.manual_seed(0)
        model = build_model("dense_ae", ds.images.shape[1:], len(ds.class_names),
                            {"hidden": HIDDEN, "latent_dim": 32})
        settings = {"epochs": args.epochs, "batch_size": 64, "lr": 0.001}
        if flush:
            settings["flush_denormals"] = True
        t0 = time.perf_counter()
        result = training.train_model(model, ds.images, ds.labels, ds.split, settings, seed=0, progress=False)
        wall = time.perf_counter() - t0
        first, second, total = _denormal_counts(torch, optimizers[-1])
        runs[flush] = (result.model, optimizers[-1])
        last = result.log["seconds"].to_numpy()[-10:]
        rows.append(f"| {'flushed' if flush else 'kept'} | {wall:.1f} | {np.median(last):.2f} | "
                    f"{first / total:.1%} | {second / total:.2%} | {result.metrics['final_val_loss']:.5f} | "
                    f"{result.metrics['test_loss']:.5f} |")
    training.make_optimizer = original

    model, optimizer = runs[False]
    x = torch.from_numpy(ds.images[ds.split == "train"][: 64 * 36])
    y = torch.zeros(64, dtype=torch.long)

    def steps(flush: bool) -> float:
        m = copy.deepcopy(model).train()
        opt = torch.optim.Adam(m.parameters(), lr=0.001)
        opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        with training.flushed_denormals(flush):
            t = time.perf_counter()
            for i in range(36):
                loss, _ = training.batch_loss(m, x[i * 64:(i + 1) * 64], y, 1.0, None)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return (time.perf_counter() - t) / 36 * 1000

    times = {False: [], True: []}
    for _ in range(4):
        for flush in (False, True):
            times[flush].append(steps(flush))
    kept, flushed = np.median(times[False]), np.median(times[True])
    print(f"FSDD dense AE 1024-...-32, batch 64, {args.epochs} epochs, {args.threads} thread(s), "
          f"{int((ds.split == 'train').sum())} recordings in the train split (10 % of them for validation)\n")
    print("| denormals | train wall s | median s/epoch (last 10) | exp_avg denormal | exp_avg_sq denormal "
          "| final val loss | test loss |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nSide by side, 36 steps from the end state of the run that kept them, 4 rounds interleaved: "
          f"kept {kept:.1f} ms/step ({', '.join(f'{t:.1f}' for t in times[False])}), "
          f"flushed {flushed:.1f} ms/step ({', '.join(f'{t:.1f}' for t in times[True])}): "
          f"{kept / flushed:.2f}x")


if __name__ == "__main__":
    main()
