"""GPU check (issue 29): a sensor series with an injected spike -> store -> conv1d_ae trained on
CUDA and on the CPU (same seed) -> latents -> anomaly scores. Prints, per device, the training
device, the final losses, the ROC AUCs and the spiked window's rank, and how the two agree."""
import json, os, subprocess, sys, time
from pathlib import Path
import numpy as np
import pandas as pd

RATE, WINDOW, STEPS = 50, 50, 24_000
SPIKE_CHANNEL, SPIKE_STEP = 1, 22_040

def run(device: str) -> dict:
    import torch
    from latent_atlas.data.jobs import prepare_data
    from latent_atlas.models import jobs
    from latent_atlas.anomaly.jobs import anomaly_scores
    from latent_atlas.io import read_parquet, read_npz
    from latent_atlas.runtime import Files, Job, set_determinism
    from latent_atlas.schema import with_defaults
    work = Path(f"/tmp/gpu_{device}"); work.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(STEPS) / RATE
    ch = {"acc_x": np.sin(2*np.pi*t), "acc_y": 0.5*np.sin(4*np.pi*t+1), "acc_z": np.cos(np.pi*t)}
    frame = pd.DataFrame({"time": t, **{k: v + rng.normal(0, 0.05, STEPS) for k, v in ch.items()}})
    frame.loc[SPIKE_STEP:SPIKE_STEP + 2, "acc_y"] += 4.0
    # half the recording marked: anomaly where a second pattern is added (labelled, for ROC)
    frame["anom"] = 0
    for s in range(0, STEPS, 1000):
        if (s // 1000) % 5 == 4:
            frame.loc[s:s + 200, "acc_x"] += 3 * np.sin(2*np.pi*7*t[s:s + 201]); frame.loc[s:s + 200, "anom"] = 1
    frame.to_csv(work / "walk.csv", index=False)
    spec = {"source": "series", "path": str(work / "walk.csv"),
            "series": {"window": WINDOW, "time_column": "time", "anomaly_column": "anom"}}
    store = [str(work / "data/images.npy"), str(work / "data/samples.parquet")]
    prepare_data(Job(output=Files(images=store[0], samples=store[1]), wildcards=Files(dataset="walk")), seed=0, spec=spec)
    set_determinism(0, 4)
    train = with_defaults({"epochs": 30, "batch_size": 32, "lr": 0.003, "classes": ["normal"]}, "#/$defs/train", "train")
    t0 = time.perf_counter()
    jobs.train(Job(input=Files([store[0]]), output=Files(model=str(work/"model.pt"), metrics=str(work/"m.json"),
               train_log=str(work/"log.tsv")), wildcards=Files(model="ae")), seed=0, numeric_threads=4,
               arch="conv1d_ae", arch_params={"channels": [16, 32], "latent_dim": 8, "kernel_size": 5},
               training=train, checkpoint_dir=str(work/"ckpt"))
    train_s = time.perf_counter() - t0
    jobs.extract_model(Job(input=Files(data=store, model=str(work/"model.pt")),
                           output=Files(latents=str(work/"latents.parquet"), reconstructions=str(work/"rec.npz")),
                           wildcards=Files(model="ae")), numeric_threads=4, config_hash="h",
                       settings=with_defaults({}, "#/$defs/model/properties/extract", "extract"))
    out = Files(**{k: str(work / f"{k}.{'npz' if k == 'cells' else 'parquet'}") for k in ("scores", "summary", "curves", "top", "cells")})
    anomaly_scores(Job(input=Files(data=store, model=str(work/"model.pt"), latents=str(work/"latents.parquet")), output=out,
                       wildcards=Files(dataset="walk", model="ae")), seed=0, numeric_threads=4, normal_classes=None,
                   normal_attributes=None, validation={"classes": ["normal"], "validation_fraction": train["validation_fraction"],
                   "max_train_samples": None}, error="standardised", fpr=0.05, top_k=4, batch_size=256,
                   baselines={"methods": ["ecod", "iforest"], "inputs": ["raw", "latent"], "max_fit": 5000, "k": 5})
    scores, summary = read_parquet(out.scores), read_parquet(out.summary)
    samples = read_parquet(store[1])
    spiked = int(samples.loc[(samples["start_s"]*RATE <= SPIKE_STEP) & (samples["start_s"]*RATE + WINDOW > SPIKE_STEP + 2), "sample_id"].iat[0])
    s = scores.set_index("sample_id")["score"]
    cells = read_npz(out.cells)
    top = read_parquet(out.top)
    log = pd.read_csv(work/"log.tsv", sep="\t")
    return {"device": str(jobs.default_device()) if hasattr(jobs, "default_device") else device,
            "cuda": torch.cuda.is_available(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
            "train_s": train_s, "final_train_loss": float(log["train_loss"].iat[-1]), "final_val_loss": float(log["val_loss"].iat[-1]),
            "auc": {f"{m}_{i}": float(a) for m, i, a in zip(summary["method"], summary["input"], summary["roc_auc"])},
            "spike_rank": int((s > s[spiked]).sum()) + 1, "n": len(s), "top1_is_spike": int(top["sample_id"].iat[0]) == spiked,
            "top1_peak": [int(v) for v in np.unravel_index(np.argmax(cells["error"][0, 0]), cells["error"].shape[2:])],
            "scores": s.to_numpy().tolist()}

if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(run(sys.argv[1]))); sys.exit()
    res = {}
    for dev, env in (("cuda", {}), ("cpu", {"CUDA_VISIBLE_DEVICES": ""})):
        r = subprocess.run([sys.executable, __file__, dev], env={**os.environ, **env}, capture_output=True, text=True)
        if r.returncode: print(r.stderr[-4000:]); sys.exit(1)
        res[dev] = json.loads(r.stdout.strip().splitlines()[-1])
    for dev, r in res.items():
        print(dev, {k: v for k, v in r.items() if k != "scores"})
    a, b = np.array(res["cuda"]["scores"]), np.array(res["cpu"]["scores"])
    from scipy.stats import spearmanr
    print("score rank correlation cuda vs cpu:", spearmanr(a, b).statistic, " max rel diff:", float(np.max(np.abs(a-b)/np.abs(b))))
