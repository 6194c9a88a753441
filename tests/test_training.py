"""Training: loss goes down, bitwise determinism, resume after a kill, divergence, the rule's files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from latent_atlas.data.store import save_dataset
from latent_atlas.io import read_json
from latent_atlas.models.checkpoint import CHECKPOINT_NAME
from latent_atlas.models.jobs import train
from latent_atlas.models.networks import build_model, load_model
from latent_atlas.models.training import (TrainingDiverged, evaluate, lr_at, split_train_validation,
                                          train_model, train_settings)
from latent_atlas.runtime import Files, Job, set_determinism
from model_helpers import TINY_PARAMS, tiny_dataset

ARCHS = sorted(TINY_PARAMS)
SETTINGS = {"epochs": 3, "batch_size": 16, "lr": 0.01}


@pytest.fixture(autouse=True)
def _deterministic():
    set_determinism(0, 1)


@pytest.fixture(scope="module")
def ds():
    return tiny_dataset()


def _train(ds, arch, settings=SETTINGS, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = build_model(arch, ds.input_shape, ds.n_classes, TINY_PARAMS[arch])
    return train_model(model, ds.images, ds.labels, ds.split, settings, seed=seed, progress=False, **kwargs)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


@pytest.mark.parametrize("arch", ARCHS)
def test_one_epoch_lowers_the_loss(ds, arch):
    torch.manual_seed(0)
    model = build_model(arch, ds.input_shape, ds.n_classes, TINY_PARAMS[arch])
    train = np.flatnonzero(ds.split == "train")
    images, labels = torch.from_numpy(ds.images), torch.from_numpy(ds.labels)
    before = evaluate(model, images, labels, train)["loss"]
    result = train_model(model, ds.images, ds.labels, ds.split,
                         {"epochs": 1, "batch_size": 8, "lr": 0.01, "validation_fraction": 0},
                         progress=False)
    after = evaluate(result.model.cpu(), images, labels, train)["loss"]
    assert after < before, (before, after)
    assert list(result.log["epoch"]) == [1]


@pytest.mark.parametrize("arch", ["conv_vae", "cnn_classifier", "dense_ae"])
def test_two_trainings_give_bitwise_identical_weights(ds, arch):
    a, b = _train(ds, arch), _train(ds, arch)
    assert _same_weights(a.model, b.model)
    assert a.metrics == b.metrics
    c = _train(ds, arch, seed=1)
    assert not _same_weights(a.model, c.model)


class _Killed(Exception):
    pass


def _kill_after(epoch):
    def hook(e):
        if e == epoch:
            raise _Killed
    return hook


@pytest.mark.parametrize("arch,settings", [
    ("conv_vae", SETTINGS),  # noise generator state must survive the kill
    ("mlp_classifier", {"epochs": 3, "batch_size": 16, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
                        "lr_schedule": [{"epoch": 2, "lr": 0.005}]}),
])
def test_resume_after_a_kill_equals_an_uninterrupted_run(ds, tmp_path, arch, settings):
    uninterrupted = _train(ds, arch, settings)
    with pytest.raises(_Killed):
        _train(ds, arch, settings, checkpoint_dir=tmp_path, on_epoch_end=_kill_after(0))
    assert (tmp_path / CHECKPOINT_NAME).exists()
    epochs_run = []
    resumed = _train(ds, arch, settings, checkpoint_dir=tmp_path, on_epoch_end=epochs_run.append)
    assert epochs_run == [1, 2]  # epoch 0 came from the checkpoint
    assert _same_weights(uninterrupted.model, resumed.model)
    cols = ["epoch", "lr", "train_loss", "val_loss"]
    pd.testing.assert_frame_equal(uninterrupted.log[cols], resumed.log[cols])
    assert uninterrupted.metrics == resumed.metrics


def test_a_checkpoint_of_another_config_is_not_resumed(ds, tmp_path):
    with pytest.raises(_Killed):
        _train(ds, "dense_ae", {**SETTINGS, "lr": 0.05}, checkpoint_dir=tmp_path, on_epoch_end=_kill_after(1))
    epochs_run = []
    result = _train(ds, "dense_ae", SETTINGS, checkpoint_dir=tmp_path, on_epoch_end=epochs_run.append)
    assert epochs_run == [0, 1, 2]
    assert _same_weights(result.model, _train(ds, "dense_ae", SETTINGS).model)


def test_a_checkpoint_of_another_thread_count_is_not_resumed(ds, tmp_path):
    set_determinism(0, 2)
    with pytest.raises(_Killed):
        _train(ds, "dense_ae", SETTINGS, checkpoint_dir=tmp_path, on_epoch_end=_kill_after(0))
    set_determinism(0, 1)
    epochs_run = []
    _train(ds, "dense_ae", SETTINGS, checkpoint_dir=tmp_path, on_epoch_end=epochs_run.append)
    assert epochs_run == [0, 1, 2]  # float sums depend on the thread count: start again


def test_a_diverging_loss_stops_with_a_helpful_message(ds):
    settings = {"epochs": 3, "batch_size": 16, "optimizer": "sgd", "lr": 1e9}
    with pytest.raises(TrainingDiverged, match=r"became (nan|inf) at epoch 1/3 .*lower learning rate.*1e\+08"):
        _train(ds, "mlp_classifier", settings, name="mlp")


def test_nan_inputs_are_caught(ds):
    images = ds.images.copy()
    images[np.flatnonzero(ds.split == "train")[5]] = np.nan
    torch.manual_seed(0)
    model = build_model("dense_ae", ds.input_shape, ds.n_classes, TINY_PARAMS["dense_ae"])
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1/2.*NaN"):
        train_model(model, images, ds.labels, ds.split, {"epochs": 2, "batch_size": 16},
                    name="dense_ae", progress=False)


def test_validation_split_is_seeded_and_disjoint():
    pool = np.arange(10, 110)
    train, val = split_train_validation(pool, 0.2, seed=3)
    assert len(val) == 20 and len(train) == 80
    assert not set(train) & set(val) and set(train) | set(val) == set(pool)
    again = split_train_validation(pool, 0.2, seed=3)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert not np.array_equal(val, split_train_validation(pool, 0.2, seed=4)[1])
    assert len(split_train_validation(pool, 0.2, seed=3, max_train_samples=30)[0]) == 30
    assert len(split_train_validation(pool, 0.0, seed=3)[1]) == 0


def test_lr_schedule():
    settings = {"lr": 0.1, "lr_schedule": [{"epoch": 2, "lr": 0.01}, {"epoch": 5, "lr": 0.001}]}
    assert [lr_at(e, settings) for e in range(7)] == [0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001]


def test_unknown_train_key_is_an_error(ds):
    with pytest.raises(ValueError, match="unknown keys.*'epoch'"):
        _train(ds, "dense_ae", {"epoch": 3})


def test_settings_take_the_schema_defaults():
    settings = train_settings({"epochs": 3})
    assert settings["epochs"] == 3 and settings["batch_size"] == 256 and settings["lr"] == 0.001
    assert settings["lr_schedule"] == [] and "max_train_samples" not in settings  # absent: every sample
    assert "flush_denormals" not in settings  # absent: off, so configs without it keep their bytes


def _denormals_flushed():
    return float(torch.tensor([1e-39]) * 2.0) == 0.0  # 2e-39 is a denormal float32


def test_flush_denormals_holds_during_training_only(ds):
    seen = []
    on = _train(ds, "dense_ae", {**SETTINGS, "flush_denormals": True},
                on_epoch_end=lambda e: seen.append(_denormals_flushed()))
    assert seen == [True] * SETTINGS["epochs"] and not _denormals_flushed()
    again = _train(ds, "dense_ae", {**SETTINGS, "flush_denormals": True})
    assert _same_weights(on.model, again.model)  # still deterministic
    seen.clear()
    _train(ds, "dense_ae", SETTINGS, on_epoch_end=lambda e: seen.append(_denormals_flushed()))
    assert seen == [False] * SETTINGS["epochs"]


@pytest.mark.parametrize("arch", ["conv_vae", "cnn_classifier"])
def test_the_train_job_writes_the_rule_outputs(tmp_path, ds, arch):
    data = tmp_path / "tiny"
    save_dataset(ds, data)
    out = {k: tmp_path / k for k in ("model.pt", "metrics.json", "train_log.tsv")}
    ckpt = tmp_path / "checkpoints"
    spec = {"arch": arch, "params": TINY_PARAMS[arch], "train": {"epochs": 2, "batch_size": 32}}
    train(Job(input=Files([str(data)]),
              output=Files(model=out["model.pt"], metrics=out["metrics.json"], train_log=out["train_log.tsv"]),
              wildcards=Files(model="m")),
          seed=0, numeric_threads=1, arch=arch, arch_params=spec["params"], training=spec["train"],
          checkpoint_dir=ckpt)
    model = load_model(out["model.pt"])
    assert model.arch == arch and model.class_names == ds.class_names
    torch.manual_seed(0)  # the job's run: seed 0, then build and train with the spec
    expected = train_model(build_model(arch, ds.input_shape, ds.n_classes, TINY_PARAMS[arch]), ds.images,
                           ds.labels, ds.split, spec["train"], seed=0, progress=False)
    assert _same_weights(model, expected.model)
    metrics = read_json(out["metrics.json"])
    assert metrics["epochs"] == 2 and metrics["device"] in ("cpu", "cuda") and metrics["n_params"] > 0
    expected = {"test_accuracy"} if arch == "cnn_classifier" else {"test_mse", "test_bce", "test_kl"}
    assert expected <= set(metrics) and np.isfinite(metrics["test_loss"])
    table = pd.read_csv(out["train_log.tsv"], sep="\t")
    columns = ["epoch", "lr", "train_loss", "val_loss"]
    if arch == "cnn_classifier":
        columns += ["train_accuracy", "val_accuracy"]
    assert list(table.columns) == columns + ["seconds"] and list(table["epoch"]) == [1, 2]
    assert not ckpt.exists()
