"""A sensor series through the whole workflow: a CSV recording -> windows (store) -> conv1d_ae
(linear output, chosen for series data) -> latents -> the anomaly stage. A spike injected into
one channel of one test window scores in the top 1 % of the windows, and the window's error map
peaks at the injected channel and time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import run_snakemake
from latent_atlas.io import read_npz, read_parquet, read_parquet_metadata

RATE, WINDOW, STEPS = 50, 50, 24_000
SPIKE_CHANNEL, SPIKE_STEP = 1, 22_040  # in the test part (the last 20 % of the recording)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("series")
    rng = np.random.default_rng(0)
    t = np.arange(STEPS) / RATE
    channels = {"acc_x": np.sin(2 * np.pi * 1.0 * t), "acc_y": 0.5 * np.sin(2 * np.pi * 2.0 * t + 1),
                "acc_z": np.cos(2 * np.pi * 0.5 * t)}
    frame = pd.DataFrame({"time": t, **{k: v + rng.normal(0, 0.05, STEPS) for k, v in channels.items()}})
    frame.loc[SPIKE_STEP:SPIKE_STEP + 2, "acc_y"] += 4.0
    frame.to_csv(work / "walk.csv", index=False)
    cfg = {
        "seed": 0, "numeric_threads": 1,
        "datasets": {"walk": {"source": "series", "path": str(work / "walk.csv"),
                              "series": {"window": WINDOW, "time_column": "time"}}},
        "models": {"ae": {"dataset": "walk", "arch": "conv1d_ae",
                          "params": {"channels": [16, 32], "latent_dim": 8, "kernel_size": 5},
                          "train": {"epochs": 30, "batch_size": 32, "lr": 0.003}}},
        "geometry": {"models": []}, "explain": {"models": []}, "importance": {"models": []},
        "featureviz": {"models": []}, "atlas": {"models": []},
        "anomaly": {"models": ["ae"], "top_k": 4, "baselines": {"methods": ["ecod"], "inputs": ["latent"]}},
    }
    configfile = work / "config.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    run_snakemake(work, "--cores", "2", "results/figures/walk/ae/anomaly_top.png", configfile=configfile)
    return work


def test_the_injected_spike_is_the_top_anomaly_and_its_map_peaks_there(run):
    base = run / "results" / "walk" / "ae" / "anomaly"
    scores = read_parquet(base / "scores.parquet")
    samples = read_parquet(run / "results" / "data" / "walk" / "samples.parquet")
    start = samples.set_index("sample_id")["start_s"]
    spiked = int(samples.loc[(samples["start_s"] * RATE <= SPIKE_STEP)
                             & (samples["start_s"] * RATE + WINDOW > SPIKE_STEP + 2), "sample_id"].iat[0])
    assert samples.set_index("sample_id").loc[spiked, "split"] == "test"
    rank = (scores["score"] > scores.set_index("sample_id").loc[spiked, "score"]).sum()
    assert rank < 0.01 * len(scores), f"the spiked window ranks {rank + 1} of {len(scores)}"
    top, cells = read_parquet(base / "top.parquet"), read_npz(base / "top_cells.npz")
    assert int(top["sample_id"].iat[0]) == spiked
    channel, step = np.unravel_index(np.argmax(cells["error"][0, 0]), cells["error"].shape[2:])
    assert channel == SPIKE_CHANNEL
    assert SPIKE_STEP <= round(start[spiked] * RATE) + step <= SPIKE_STEP + 2
    meta = read_parquet_metadata(run / "results" / "data" / "walk" / "samples.parquet")
    assert meta["kind"] == "series" and meta["names"] == ["acc_x", "acc_y", "acc_z"]
    assert abs(meta["sample_rate"] - RATE) < 1e-6
    assert (run / "results" / "figures" / "walk" / "ae" / "anomaly_top.png").stat().st_size > 5000


def test_the_series_is_split_by_time_and_the_model_is_linear(run):
    import torch

    samples = read_parquet(run / "results" / "data" / "walk" / "samples.parquet")
    train, test = samples[samples["split"] == "train"], samples[samples["split"] == "test"]
    assert train["start_s"].max() + WINDOW / RATE <= test["start_s"].min()  # no window shares a step
    record = torch.load(run / "results" / "walk" / "ae" / "model.pt", weights_only=True)
    assert record["params"]["output"] == "linear" and record["input_shape"] == [1, 3, WINDOW]
