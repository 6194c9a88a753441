"""Extraction (the extract jobs' files, and that they hold what the model computes) and the
figures of the models stage (what each draws)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from latent_atlas.data.store import save_dataset
from latent_atlas.io import read_npz, read_parquet, read_parquet_metadata
from latent_atlas.latents import latent_columns, read_latents
from latent_atlas.models.archs import AUTOENCODER_ARCHS, extract_settings
from latent_atlas.models.extract import compute_hidden
from latent_atlas.models.figures import (class_interleaved, confusion_matrix, plot_confusion_matrix,
                                         plot_latent_scatter, plot_reconstructions, plot_training_curves,
                                         plot_weight_tiles)
from latent_atlas.models.jobs import extract_model
from latent_atlas.models.networks import build_model, load_model, save_model
from latent_atlas.runtime import Files, Job
from model_helpers import TINY_PARAMS, tiny_dataset

SUFFIX = {"latents": "parquet", "predictions": "parquet", "hidden": "parquet", "reconstructions": "npz"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A saved tiny dataset and an (untrained) model file per arch."""
    root = tmp_path_factory.mktemp("latents")
    ds = tiny_dataset(n=120, n_classes=3)
    save_dataset(ds, root / "tiny")
    for arch, params in TINY_PARAMS.items():
        torch.manual_seed(0)
        params = {**params, "latent_dim": 12} if arch == "dense_ae" else params
        save_model(build_model(arch, ds.input_shape, ds.n_classes, params), root / f"{arch}.pt",
                   class_names=ds.class_names)
    return root, ds


def _extract(files, arch, out_dir, outputs, model_name="m", config_hash="h", **settings) -> Files:
    """Run the extract job of model file `arch` with these outputs and `extract` settings."""
    root, _ = files
    out = Files({name: out_dir / f"{name}.{SUFFIX[name]}" for name in outputs})
    extract_model(Job(input=Files(data=root / "tiny", model=root / f"{arch}.pt"), output=out,
                      wildcards=Files(model=model_name)),
                  numeric_threads=1, settings=extract_settings({"extract": settings}), config_hash=config_hash)
    return out


def _computed(files, arch, method, rows=slice(None)):
    """What the saved model `arch` computes with `method` on the dataset's `rows`, in one batch."""
    root, ds = files
    model = load_model(root / f"{arch}.pt")
    with torch.no_grad():
        return getattr(model, method)(torch.from_numpy(ds.images[rows]))


def test_latents_parquet_schema_and_metadata(files, tmp_path):
    _, ds = files
    out = _extract(files, "dense_ae", tmp_path, ["latents", "reconstructions"], model_name="ae",
                   config_hash="abc123").latents
    schema = pq.read_schema(out)
    assert schema.names[:4] == ["sample_id", "split", "label", "label_name"]
    assert str(schema.field("sample_id").type) == "int64" and str(schema.field("label").type) == "int64"
    assert str(schema.field("split").type) in ("string", "large_string")
    assert str(schema.field("label_name").type) in ("string", "large_string")
    assert schema.names[4:] == [f"z{i}" for i in range(12)]
    assert all(str(schema.field(f"z{i}").type) == "float" for i in range(12))
    meta = read_parquet_metadata(out)
    assert {"dataset", "model", "arch", "config_hash", "versions"} <= set(meta)
    assert (meta["dataset"], meta["model"], meta["arch"], meta["config_hash"]) == ("tiny", "ae", "dense_ae", "abc123")
    assert meta["latent_dim"] == 12 and "torch" in meta["versions"] and "numpy" in meta["versions"]
    latents = read_latents(out)
    ids = latents.ids
    assert len(ids) == len(ds) and latents.z.shape == (len(ds), 12) and latents.z.dtype == np.float32
    assert latent_columns(read_parquet(out)) == [f"z{i}" for i in range(12)]  # z10 after z9
    assert np.array_equal(ids["sample_id"], ds.sample_id) and list(ids["split"]) == list(ds.split)
    assert list(ids["label_name"]) == [ds.class_names[k] for k in ds.labels]
    assert latents.class_names == ds.class_names
    before = out.read_bytes()
    _extract(files, "dense_ae", tmp_path, ["latents", "reconstructions"], model_name="ae", config_hash="abc123")
    assert out.read_bytes() == before


@pytest.mark.parametrize("arch", ["cnn_classifier", "mlp_classifier"])
def test_classifier_latents_are_the_features(files, tmp_path, arch):
    _, ds = files
    z = read_latents(_extract(files, arch, tmp_path, ["latents", "predictions"], batch_size=7).latents).z
    features = _computed(files, arch, "features").numpy()
    assert z.shape == features.shape == (len(ds), 16)  # not the logits (3 classes)
    np.testing.assert_allclose(z, features, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", AUTOENCODER_ARCHS)
def test_autoencoder_latents_are_the_encoding(files, tmp_path, arch):
    z = read_latents(_extract(files, arch, tmp_path, ["latents", "reconstructions"], batch_size=7).latents).z
    np.testing.assert_allclose(z, _computed(files, arch, "encode").numpy(), rtol=1e-5, atol=1e-6)


def test_hidden_parquet(files, tmp_path):
    _, ds = files
    out = _extract(files, "mlp_classifier", tmp_path, ["latents", "predictions", "hidden"],
                   hidden_max_samples=40, batch_size=7).hidden
    meta = read_parquet_metadata(out)
    assert meta["layers"] == [["fc1", 24], ["fc2", 16]]
    df = read_parquet(out)
    assert list(df.columns) == ["sample_id", "split", "label", "label_name"] + \
        [f"fc1:{u}" for u in range(24)] + [f"fc2:{u}" for u in range(16)]
    assert len(df) == 40 and (df["split"].iloc[:30] == "test").all() and (df["split"].iloc[30:] == "train").all()
    rows = np.r_[90:120, 0:10]  # the 30 test samples, then the first 10 of the train split
    assert np.array_equal(df["sample_id"], ds.sample_id[rows])
    assert all(df[c].dtype == np.float32 for c in df.columns[4:])
    expected = torch.cat(list(_computed(files, "mlp_classifier", "hidden", rows).values()), dim=1)
    np.testing.assert_allclose(df.iloc[:, 4:].to_numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    cnn = _extract(files, "cnn_classifier", tmp_path / "cnn", ["latents", "predictions", "hidden"],
                   hidden_max_samples=500).hidden
    assert len(read_parquet(cnn)) == len(ds)
    assert read_parquet_metadata(cnn)["layers"] == [["conv1", 4], ["conv2", 8], ["features", 16]]
    with pytest.raises(ValueError, match="classifiers"):
        compute_hidden(load_model(files[0] / "dense_ae.pt"), ds.images)


def test_predictions_parquet(files, tmp_path):
    _, ds = files
    out = _extract(files, "cnn_classifier", tmp_path, ["latents", "predictions"]).predictions
    df = read_parquet(out)
    assert list(df.columns[4:]) == ["pred", "p0", "p1", "p2"] and df["pred"].dtype == np.int64
    probs = df[["p0", "p1", "p2"]].to_numpy()
    expected = torch.softmax(_computed(files, "cnn_classifier", "forward"), dim=1).numpy()
    assert probs.dtype == np.float32 and np.allclose(probs, expected, atol=1e-6)
    assert np.array_equal(df["pred"], probs.argmax(axis=1))
    assert read_parquet_metadata(out)["class_names"] == ds.class_names


def test_reconstructions_npz(files, tmp_path):
    _, ds = files
    out = _extract(files, "conv_ae", tmp_path, ["latents", "reconstructions"], reconstructions_per_class=2)
    r = read_npz(out.reconstructions)
    assert r["original"].shape == r["reconstruction"].shape == (6, 1, 16, 16)
    assert list(r["label"]) == [0, 0, 1, 1, 2, 2] and list(r["class_names"]) == ds.class_names
    rows = np.searchsorted(ds.sample_id, r["sample_id"])
    assert (ds.split[rows] == "test").all() and np.array_equal(r["original"], ds.images[rows])
    np.testing.assert_allclose(r["reconstruction"], _computed(files, "conv_ae", "forward", rows).numpy(),
                               rtol=1e-5, atol=1e-6)


TRAIN_LOG = pd.DataFrame({"epoch": [1, 2, 3], "lr": [0.1, 0.1, 0.01], "train_loss": [1.0, 0.5, 0.4],
                          "val_loss": [0.9, 0.6, 0.5], "train_accuracy": [0.5, 0.7, 0.8],
                          "val_accuracy": [0.5, 0.6, 0.7], "seconds": [1, 1, 1]})


def test_training_curves_draw_each_column_and_the_lr_change():
    fig = plot_training_curves(TRAIN_LOG, "m")
    loss, accuracy = fig.axes
    assert fig._suptitle.get_text() == "m" and accuracy.get_ylabel() == "accuracy"
    assert [list(line.get_ydata()) for line in loss.lines[:2]] == [[1.0, 0.5, 0.4], [0.9, 0.6, 0.5]]
    assert [list(line.get_ydata()) for line in accuracy.lines[:2]] == [[0.5, 0.7, 0.8], [0.5, 0.6, 0.7]]
    assert list(loss.lines[2].get_xdata()) == [2.5, 2.5]  # the lr changes before epoch 3
    assert [t.get_text() for t in loss.texts] == ["lr 0.01"]
    autoencoder = plot_training_curves(TRAIN_LOG.drop(columns=["train_accuracy", "val_accuracy"]))
    assert len(autoencoder.axes) == 1 and autoencoder._suptitle is None


def test_reconstructions_draw_originals_reconstructions_and_errors():
    x = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2])
    fig = plot_reconstructions(x, x * 0.5, labels, ["a", "b", "c"])
    grid = np.array(fig.axes[:18]).reshape(3, 6)
    order = [0, 2, 4, 1, 3, 5]  # one of each class in turn
    for j, i in enumerate(order):
        assert np.array_equal(grid[0, j].images[0].get_array(), x[i, 0])
        assert np.array_equal(grid[1, j].images[0].get_array(), x[i, 0] * 0.5)
        assert np.allclose(grid[2, j].images[0].get_array(), np.abs(x[i, 0] * 0.5))
    assert [ax.get_title() for ax in grid[0]] == ["a", "b", "c", "a", "b", "c"]
    assert len(fig.axes) == 19  # and the error colour bar


def test_confusion_matrix_draws_row_shares():
    fig = plot_confusion_matrix(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0]), ["a", "b", "c"])
    ax = fig.axes[0]
    assert np.allclose(ax.images[0].get_array(), [[50, 50, 0], [0, 100, 0], [50, 0, 50]])
    assert ax.get_title() == "accuracy 66.67% (n = 6)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]


def test_latent_scatter_draws_every_point_by_class():
    z = np.random.default_rng(0).normal(size=(6, 2))
    fig = plot_latent_scatter(z, np.array([0, 0, 1, 1, 2, 2]), ["a", "b", "c"])
    ax = fig.axes[0]
    drawn = np.concatenate([c.get_offsets() for c in ax.collections])
    assert sorted(map(tuple, drawn)) == sorted(map(tuple, z))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="2-D"):
        plot_latent_scatter(np.zeros((6, 3)), np.zeros(6, int), ["a"])


def test_weight_tiles_draw_one_tile_per_unit():
    w = np.random.default_rng(0).normal(size=(10, 3, 8, 8))
    fig = plot_weight_tiles(w, max_units=9)
    tiles = [ax for ax in fig.axes if ax.images]
    assert len(tiles) == 9 and [ax.get_title() for ax in tiles] == [str(u) for u in range(9)]
    assert all(np.allclose(ax.images[0].get_array(), w[u].mean(axis=0)) for u, ax in enumerate(tiles))


def test_confusion_matrix_and_column_order():
    cm = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert list(class_interleaved(np.array([0, 0, 1, 1, 2]), 4)) == [0, 2, 4, 1]


@pytest.mark.slow
def test_workflow_writes_the_model_files(e2e_run, root):
    """The test config's run: every model's files and figures, with sensible contents."""
    import yaml

    from latent_atlas.models.archs import arch_kind, is_dense, latent_size
    from latent_atlas.io import read_json

    config = yaml.safe_load((root / "config" / "test.yaml").read_text())
    for name, spec in config["models"].items():
        d = e2e_run / "results" / spec["dataset"] / name
        figs = e2e_run / "results" / "figures" / spec["dataset"] / name
        metrics = read_json(d / "metrics.json")
        assert np.isfinite(metrics["test_loss"]) and metrics["epochs"] == spec["train"]["epochs"]
        z = read_latents(d / "latents.parquet").z
        assert z.shape[1] == latent_size(spec["arch"], spec["params"]) and np.isfinite(z).all()
        assert read_parquet_metadata(d / "latents.parquet")["model"] == name
        assert (figs / "model_training_curves.png").exists()
        if arch_kind(spec["arch"]) == "classifier":
            assert metrics["test_accuracy"] > 0.5, (name, metrics)
            assert (d / "predictions.parquet").exists() and (d / "hidden.parquet").exists()
            assert (figs / "model_confusion_matrix.png").exists()
        else:
            assert metrics["test_mse"] < 0.1, (name, metrics)
            assert (d / "reconstructions.npz").exists() and (figs / "model_reconstructions.png").exists()
        assert (figs / "model_first_layer_weights.png").exists() == is_dense(spec["arch"])
        assert not (d / "checkpoints" / "last.pt").exists()
