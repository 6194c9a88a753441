"""Training snapshots (`models.<name>.train.snapshots`): the weights after the listed epochs, kept
without changing training, resumed with the checkpoint, and named `<model>@<epoch>` as models of
their own in the config and the workflow."""

from __future__ import annotations


import pandas as pd
import pytest
import torch
import yaml

from conftest import TEST_CONFIG
from latent_atlas.config import ConfigError, check_config, model_entries
from latent_atlas.data.store import save_dataset
from latent_atlas.io import read_parquet_metadata
from latent_atlas.models.checkpoint import CHECKPOINT_NAME, snapshot_path
from latent_atlas.models.jobs import snapshot_model, train
from latent_atlas.models.networks import build_model, load_model
from latent_atlas.models.training import train_model
from latent_atlas.rules import model_config_hash
from latent_atlas.runtime import Files, Job, set_determinism
from latent_atlas.schema import fill_defaults, schema_node
from model_helpers import TINY_PARAMS, tiny_dataset
from test_reruns import probe

SETTINGS = {"epochs": 3, "batch_size": 16, "lr": 0.01}
RECORD = {"class_names": ["class0", "class1", "class2"], "dataset": "tiny", "name": "m"}


@pytest.fixture(autouse=True)
def _deterministic():
    set_determinism(0, 1)


@pytest.fixture(scope="module")
def ds():
    return tiny_dataset()


def _train(ds, arch, settings, **kwargs):
    torch.manual_seed(0)
    model = build_model(arch, ds.input_shape, ds.n_classes, TINY_PARAMS[arch])
    return train_model(model, ds.images, ds.labels, ds.split, settings, seed=0, progress=False, **kwargs)


def _states(result_or_model):
    return {k: v.clone() for k, v in result_or_model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _log(result):
    return result.log.drop(columns="seconds")


@pytest.mark.parametrize("arch", ["conv_vae", "mlp_classifier"])
def test_snapshots_hold_the_listed_epochs_and_leave_training_as_it_was(ds, tmp_path, arch):
    torch.manual_seed(0)
    model = build_model(arch, ds.input_shape, ds.n_classes, TINY_PARAMS[arch])
    after = []  # the weights after each epoch of a run without snapshots
    plain = train_model(model, ds.images, ds.labels, ds.split, SETTINGS, seed=0, progress=False,
                        on_epoch_end=lambda epoch: after.append(_states(model)))
    stale = snapshot_path(tmp_path, 2)  # left by a killed run of another config
    stale.write_bytes(b"not this config's")
    kept = _train(ds, arch, {**SETTINGS, "snapshots": [1, 3]}, checkpoint_dir=tmp_path, record=RECORD)

    assert _same(plain.model.state_dict(), kept.model.state_dict())  # training is unchanged
    pd.testing.assert_frame_equal(_log(plain), _log(kept))
    assert plain.metrics == kept.metrics
    assert kept.snapshots == {1: snapshot_path(tmp_path, 1), 3: snapshot_path(tmp_path, 3)}
    assert sorted(p.name for p in tmp_path.glob("epoch_*.pt")) == ["epoch_1.pt", "epoch_3.pt"]
    for epoch, path in kept.snapshots.items():
        snapshot = load_model(path)
        assert _same(snapshot.state_dict(), after[epoch - 1])
        if epoch < SETTINGS["epochs"]:  # what a shorter training ends in (config/README.md says so)
            assert _same(snapshot.state_dict(), _train(ds, arch, {**SETTINGS, "epochs": epoch}).model.state_dict())
        assert snapshot.class_names == RECORD["class_names"] and snapshot.record_extra == {"dataset": "tiny",
                                                                                             "name": "m"}


def test_snapshots_need_a_checkpoint_folder(ds):
    with pytest.raises(ValueError, match="train.snapshots are kept in the checkpoint folder"):
        _train(ds, "dense_ae", {**SETTINGS, "snapshots": [1]})


class _Killed(Exception):
    pass


def test_a_resumed_training_keeps_the_snapshots_it_took(ds, tmp_path):
    settings = {**SETTINGS, "epochs": 4, "snapshots": [1, 2, 4]}
    whole = _train(ds, "conv_vae", settings, checkpoint_dir=tmp_path / "whole", record=RECORD)

    def kill_after_second(epoch):
        if epoch == 1:
            raise _Killed

    killed = tmp_path / "killed"
    with pytest.raises(_Killed):
        _train(ds, "conv_vae", settings, checkpoint_dir=killed, record=RECORD, on_epoch_end=kill_after_second)
    taken = {e: snapshot_path(killed, e).stat().st_mtime_ns for e in (1, 2)}
    assert (killed / CHECKPOINT_NAME).exists() and not snapshot_path(killed, 4).exists()
    epochs_run = []
    resumed = _train(ds, "conv_vae", settings, checkpoint_dir=killed, record=RECORD, on_epoch_end=epochs_run.append)
    assert epochs_run == [2, 3]  # epochs 1 and 2 (0-based 0, 1) and their snapshots came from the killed run
    assert {e: snapshot_path(killed, e).stat().st_mtime_ns for e in (1, 2)} == taken
    for epoch in (1, 2, 4):
        assert resumed.snapshots[epoch].read_bytes() == whole.snapshots[epoch].read_bytes()
    assert _same(whole.model.state_dict(), resumed.model.state_dict())


def test_the_train_job_writes_the_snapshots_and_the_last_is_model_pt(ds, tmp_path):
    data = tmp_path / "tiny"
    save_dataset(ds, data)
    out = tmp_path / "out"
    files = Files(model=out / "model.pt", metrics=out / "metrics.json", train_log=out / "train_log.tsv",
                  snapshots=out / "snapshots")
    checkpoints = tmp_path / "checkpoints"
    train(Job(input=Files([str(data)]), output=files, wildcards=Files(model="m")), seed=0, numeric_threads=1,
          arch="dense_ae", arch_params=TINY_PARAMS["dense_ae"], training={**SETTINGS, "snapshots": [2, 3]},
          checkpoint_dir=str(checkpoints))
    assert sorted(p.name for p in files.snapshots.iterdir()) == ["epoch_2.pt", "epoch_3.pt"]
    assert snapshot_path(files.snapshots, 3).read_bytes() == files.model.read_bytes()
    assert not checkpoints.exists()  # the checkpoint and the snapshots taken there are gone

    plain = tmp_path / "plain"  # the same training without snapshots: the same files
    train(Job(input=Files([str(data)]), wildcards=Files(model="m"),
              output=Files(model=plain / "model.pt", metrics=plain / "metrics.json",
                           train_log=plain / "train_log.tsv")),
          seed=0, numeric_threads=1, arch="dense_ae", arch_params=TINY_PARAMS["dense_ae"], training=SETTINGS,
          checkpoint_dir=str(tmp_path / "plain_checkpoints"))
    assert (plain / "model.pt").read_bytes() == files.model.read_bytes()
    assert (plain / "metrics.json").read_bytes() == files.metrics.read_bytes()
    columns = ["epoch", "lr", "train_loss", "val_loss"]  # `seconds` is the clock's
    pd.testing.assert_frame_equal(pd.read_csv(plain / "train_log.tsv", sep="\t")[columns],
                                  pd.read_csv(files.train_log, sep="\t")[columns])

    copied = tmp_path / "m@2" / "model.pt"
    snapshot_model(Job(input=Files(snapshots=files.snapshots), output=Files(model=copied)), epoch=2)
    assert copied.read_bytes() == snapshot_path(files.snapshots, 2).read_bytes()


# --- the config -------------------------------------------------------------------------------

def _config(snapshots=(2, 5)) -> dict:
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cfg["models"]["dense_ae"]["train"]["snapshots"] = list(snapshots)
    return cfg


def test_snapshot_names_resolve_to_their_models_entry():
    cfg = _config()
    entries = model_entries(cfg["models"])
    assert list(entries)[:3] == ["dense_ae", "dense_ae@2", "dense_ae@5"]
    assert entries["dense_ae"] is cfg["models"]["dense_ae"]
    assert entries["dense_ae@5"] == {**cfg["models"]["dense_ae"], "snapshot": {"of": "dense_ae", "epoch": 5}}
    assert "conv_ae@2" not in entries
    # latents of a snapshot: its model's hash and the epoch
    hashes = {name: model_config_hash(cfg, name) for name in ("dense_ae", "dense_ae@2", "dense_ae@5")}
    assert len(set(hashes.values())) == 3
    other = _config()
    other["models"]["dense_ae"]["train"]["lr"] = 0.001
    assert model_config_hash(other, "dense_ae@2") != hashes["dense_ae@2"]


@pytest.mark.parametrize("snapshots, message", [
    ([2, 11], r"models\.dense_ae\.train\.snapshots: \[11\] beyond the last epoch \(train\.epochs: 10\)"),
    ([5, 2], r"models\.dense_ae\.train\.snapshots: epochs must be strictly increasing, got \[5, 2\]"),
    ([2, 2], r"models\.dense_ae\.train\.snapshots: epochs must be strictly increasing, got \[2, 2\]"),
], ids=["beyond_epochs", "unsorted", "duplicate"])
def test_snapshot_epochs_are_checked(snapshots, message):
    with pytest.raises(ConfigError, match=message):
        check_config(_config(snapshots))


def test_snapshots_only_for_models_trained_here(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    cfg = _config()
    cfg["models"]["dense_ae"]["source"] = {"format": "state_dict", "weights": str(weights)}
    with pytest.raises(ConfigError, match=r"models\.dense_ae\.train\.snapshots: only for models trained here "
                                          r"\(this one's weights come from source\.format 'state_dict'\)"):
        check_config(cfg)


def test_a_models_list_names_snapshots_its_model_declares():
    cfg = _config((1, 5))
    cfg["geometry"]["models"] = ["dense_ae@5", "conv_vae"]
    cfg["atlas"]["models"] = ["dense_ae@1"]
    check_config(cfg)
    cfg["geometry"]["models"] = ["dense_ae@7"]
    with pytest.raises(ConfigError, match=r"geometry\.models\[0\]: 'dense_ae@7' is not a snapshot of dense_ae "
                                          r"\(its train\.snapshots: \[1, 5\]\)"):
        check_config(cfg)
    cfg["geometry"]["models"] = ["conv_vae", "conv_vae@5"]
    with pytest.raises(ConfigError, match=r"geometry\.models\[1\]: 'conv_vae@5' is not a snapshot of conv_vae "
                                          r"\(its train\.snapshots: none\)"):
        check_config(cfg)
    cfg["geometry"]["models"] = ["dense@5"]
    with pytest.raises(ConfigError, match=r"geometry\.models\[0\]: 'dense@5' is not a defined model"):
        check_config(cfg)
    cfg["geometry"]["models"] = ["conv_vae"]
    cfg["featureviz"]["models"] = ["dense_ae@5"]  # a snapshot runs what its model can
    with pytest.raises(ConfigError, match=r"featureviz\.models\[0\]: model 'dense_ae@5' cannot run featureviz"):
        check_config(cfg)


# --- the workflow -----------------------------------------------------------------------------

def test_a_snapshot_in_geometry_models_gets_its_own_jobs(tmp_path):
    """The dry run of the test config with dense_ae@5 in geometry.models: dense_ae trains with
    snapshots, dense_ae@5 is copied out, extracted and analysed; no snapshot trains or runs what
    no section names it for."""
    cfg = _config()
    cfg["geometry"]["models"] = ["conv_ae", "dense_ae@5"]
    (result,) = probe(tmp_path, [cfg])
    assert "error" not in result, result
    jobs = {(job["rule"], job["wildcards"].get("model")) for job in result["jobs"]}
    snapshot_rules = {rule for rule, model in jobs if model == "dense_ae@5"}
    assert snapshot_rules == {"snapshot_model", "extract_autoencoder", "geometry_tables", "geometry_tsne",
                              "geometry_umap", "geometry_random_points", "plot_geometry",
                              "plot_geometry_random_points"}
    assert ("train_with_snapshots", "dense_ae") in jobs and ("train", "dense_ae") not in jobs
    assert ("train", "conv_vae") in jobs
    assert not any(model == "dense_ae@2" for _, model in jobs)


@pytest.mark.slow
def test_a_snapshot_runs_as_a_model(e2e_run):
    """The test config's conv_ae keeps snapshots after epochs 5 and 15 (its last): conv_ae@15's
    model.pt is conv_ae's byte for byte, and conv_ae@5's latents carry its own name and hash."""
    results = e2e_run / "results" / "digits"
    assert (results / "conv_ae@15" / "model.pt").read_bytes() == (results / "conv_ae" / "model.pt").read_bytes()
    assert sorted(p.name for p in (results / "conv_ae" / "snapshots").glob("*.pt")) == ["epoch_15.pt", "epoch_5.pt"]
    metadata = read_parquet_metadata(results / "conv_ae@5" / "latents.parquet")
    assert metadata["model"] == "conv_ae@5"
    cfg = fill_defaults(yaml.safe_load(TEST_CONFIG.read_text()), schema_node("#"))
    assert metadata["config_hash"] == model_config_hash(cfg, "conv_ae@5") != model_config_hash(cfg, "conv_ae")
    assert not (results / "conv_ae" / "checkpoints").exists()
