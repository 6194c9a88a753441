"""Extraction files (schema, metadata, rows) and the figures of the models stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from latent_atlas.data import save_dataset
from latent_atlas.io import read_npz, read_parquet_metadata
from latent_atlas.latents import (class_names_of, latent_columns, read_latents, write_hidden,
                                  write_latents, write_predictions, write_reconstructions)
from latent_atlas.model_figures import (class_interleaved, confusion_matrix, plot_confusion_matrix,
                                        plot_latent_scatter, plot_reconstructions, plot_training_curves,
                                        plot_weight_tiles)
from latent_atlas.models import build_model, save_model
from latent_atlas.plotting import save_figure
from model_helpers import TINY_PARAMS, tiny_dataset


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A saved tiny dataset and an (untrained) model file per arch."""
    root = tmp_path_factory.mktemp("latents")
    ds = tiny_dataset(n=120, n_classes=3)
    save_dataset(ds, root / "tiny.npz")
    for arch, params in TINY_PARAMS.items():
        torch.manual_seed(0)
        params = {**params, "latent_dim": 12} if arch == "dense_ae" else params
        save_model(build_model(arch, ds.input_shape, ds.n_classes, params), root / f"{arch}.pt",
                   class_names=ds.class_names)
    return root, ds


def test_latents_parquet_schema_and_metadata(files, tmp_path):
    root, ds = files
    out = tmp_path / "latents.parquet"
    write_latents(root / "tiny.npz", root / "dense_ae.pt", out, model_name="ae", config_hash="abc123")
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
    assert "torch" in meta["versions"] and "numpy" in meta["versions"]
    df, z = read_latents(out)
    assert len(df) == len(ds) and z.shape == (len(ds), 12) and z.dtype == np.float32
    assert latent_columns(df) == [f"z{i}" for i in range(12)]  # z10 after z9
    assert np.array_equal(df["sample_id"], ds.sample_id) and list(df["split"]) == list(ds.split)
    assert list(df["label_name"]) == [ds.class_names[k] for k in ds.labels]
    assert class_names_of(df) == ds.class_names
    before = out.read_bytes()
    write_latents(root / "tiny.npz", root / "dense_ae.pt", out, model_name="ae", config_hash="abc123")
    assert out.read_bytes() == before


@pytest.mark.parametrize("arch", ["cnn_classifier", "mlp_classifier", "conv_vae"])
def test_classifier_latents_are_the_features(files, tmp_path, arch):
    root, ds = files
    df = write_latents(root / "tiny.npz", root / f"{arch}.pt", tmp_path / "l.parquet", model_name="m",
                       config_hash="h")
    expected = {"cnn_classifier": 16, "mlp_classifier": 16, "conv_vae": 2}[arch]
    assert len(latent_columns(df)) == expected


def test_hidden_parquet(files, tmp_path):
    root, ds = files
    out = tmp_path / "hidden.parquet"
    df = write_hidden(root / "tiny.npz", root / "mlp_classifier.pt", out, model_name="mlp",
                      config_hash="h", max_samples=40, batch_size=7)
    meta = read_parquet_metadata(out)
    assert meta["layers"] == [["fc1", 24], ["fc2", 16]]
    assert list(df.columns) == ["sample_id", "split", "label", "label_name"] + \
        [f"fc1:{u}" for u in range(24)] + [f"fc2:{u}" for u in range(16)]
    assert len(df) == 40 and (df["split"].iloc[:30] == "test").all() and (df["split"].iloc[30:] == "train").all()
    assert all(df[c].dtype == np.float32 for c in df.columns[4:]) and (df.iloc[:, 4:] >= 0).all().all()
    cnn = write_hidden(root / "tiny.npz", root / "cnn_classifier.pt", tmp_path / "h2.parquet",
                       model_name="cnn", config_hash="h", max_samples=500)
    assert len(cnn) == len(ds)
    assert read_parquet_metadata(tmp_path / "h2.parquet")["layers"] == [["conv1", 4], ["conv2", 8], ["features", 16]]
    with pytest.raises(ValueError, match="classifiers"):
        write_hidden(root / "tiny.npz", root / "dense_ae.pt", tmp_path / "x.parquet", model_name="ae", config_hash="h")


def test_predictions_parquet(files, tmp_path):
    root, ds = files
    df = write_predictions(root / "tiny.npz", root / "cnn_classifier.pt", tmp_path / "p.parquet",
                           model_name="cnn", config_hash="h")
    assert list(df.columns[4:]) == ["pred", "p0", "p1", "p2"] and df["pred"].dtype == np.int64
    probs = df[["p0", "p1", "p2"]].to_numpy()
    assert probs.dtype == np.float32 and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(df["pred"], probs.argmax(axis=1))
    assert read_parquet_metadata(tmp_path / "p.parquet")["class_names"] == ds.class_names


def test_reconstructions_npz(files, tmp_path):
    root, ds = files
    write_reconstructions(root / "tiny.npz", root / "conv_ae.pt", tmp_path / "r.npz", per_class=2)
    r = read_npz(tmp_path / "r.npz")
    assert r["original"].shape == r["reconstruction"].shape == (6, 1, 16, 16)
    assert list(r["label"]) == [0, 0, 1, 1, 2, 2] and list(r["class_names"]) == ds.class_names
    test_ids = set(ds.sample_id[ds.split == "test"])
    assert set(r["sample_id"]) <= test_ids
    assert r["reconstruction"].min() >= 0 and r["reconstruction"].max() <= 1


def test_figures_draw(tmp_path):
    rng = np.random.default_rng(0)
    log = pd.DataFrame({"epoch": [1, 2, 3], "lr": [0.1, 0.1, 0.01], "train_loss": [1.0, 0.5, 0.4],
                        "val_loss": [0.9, 0.6, 0.5], "train_accuracy": [0.5, 0.7, 0.8],
                        "val_accuracy": [0.5, 0.6, 0.7], "seconds": [1, 1, 1]})
    x = rng.random((6, 1, 8, 8)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2])
    figures = {
        "curves": plot_training_curves(log, "m"),
        "curves_ae": plot_training_curves(log.drop(columns=["train_accuracy", "val_accuracy"])),
        "recon": plot_reconstructions(x, x * 0.5, labels, ["a", "b", "c"]),
        "confusion": plot_confusion_matrix(labels, np.array([0, 1, 1, 1, 2, 0]), ["a", "b", "c"]),
        "scatter": plot_latent_scatter(rng.normal(size=(6, 2)), labels, ["a", "b", "c"]),
        "tiles": plot_weight_tiles(rng.normal(size=(10, 1, 8, 8))),
    }
    for name, fig in figures.items():
        save_figure(fig, tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_confusion_matrix_and_column_order():
    cm = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert list(class_interleaved(np.array([0, 0, 1, 1, 2]), 4)) == [0, 2, 4, 1]


@pytest.mark.slow
def test_workflow_writes_the_model_files(e2e_run, root):
    """The test config's run: every model's files and figures, with sensible contents."""
    import yaml

    from latent_atlas.archs import arch_kind, is_dense, latent_size
    from latent_atlas.io import read_json

    config = yaml.safe_load((root / "config" / "test.yaml").read_text())
    for name, spec in config["models"].items():
        d = e2e_run / "results" / spec["dataset"] / name
        figs = e2e_run / "results" / "figures" / spec["dataset"] / name
        metrics = read_json(d / "metrics.json")
        assert np.isfinite(metrics["test_loss"]) and metrics["epochs"] == spec["train"]["epochs"]
        df, z = read_latents(d / "latents.parquet")
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
