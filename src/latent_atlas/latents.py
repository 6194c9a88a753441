"""What a trained model says about every sample: latents, hidden layers, predictions, reconstructions.

Files (docs/architecture.md):
- latents.parquet: `sample_id`, `split`, `label`, `label_name`, then `z0 .. z{d-1}` float32, one row
  per sample in dataset order (AE bottleneck, VAE posterior mean, classifier penultimate features).
- hidden.parquet (classifiers): the id columns, then one float32 column per hidden unit named
  `{layer}:{unit}` (conv layers: per channel, averaged over space after ReLU); rows: first the
  test split, then the train split, each in dataset order, at most `max_samples` rows.
  Metadata `layers` = [[name, units], ...] in network order.
- predictions.parquet (classifiers): id columns, `pred` int64, `p0 .. p{K-1}` float32 softmax.
- reconstructions.npz (autoencoders): `sample_id`, `label`, `original`, `reconstruction`
  (n, C, H, W) float32 and `class_names`, for the first k test samples of each class.
Every Parquet file carries key-value metadata: dataset, model, arch, config_hash, versions.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from .data import load_dataset
from .io import library_versions, read_parquet, write_npz, write_parquet
from .runtime import configure_torch, log

if TYPE_CHECKING:
    import torch

ID_COLUMNS = ["sample_id", "split", "label", "label_name"]
_Z = re.compile(r"z(\d+)")


def latent_columns(df: pd.DataFrame) -> list[str]:
    """The latent columns `z0 .. z{d-1}` of a latents frame, in dimension order."""
    cols = [c for c in df.columns if isinstance(c, str) and _Z.fullmatch(c)]
    return sorted(cols, key=lambda c: int(c[1:]))


def read_latents(path: str | os.PathLike) -> tuple[pd.DataFrame, np.ndarray]:
    """Read latents.parquet: the frame and its latent matrix Z of shape (n_samples, d), float32."""
    df = read_parquet(path)
    cols = latent_columns(df)
    if not cols:
        raise ValueError(f"{path}: no latent columns z0..z{{d-1}} found (columns: {list(df.columns)[:8]}...)")
    return df, df[cols].to_numpy(dtype=np.float32)


def id_frame(sample_id: np.ndarray, split: np.ndarray, labels: np.ndarray,
             class_names: Sequence[str]) -> pd.DataFrame:
    """The id columns shared by every per-sample table."""
    labels = np.asarray(labels, dtype=np.int64)
    return pd.DataFrame({
        "sample_id": np.asarray(sample_id, dtype=np.int64),
        "split": np.asarray(split).astype(str),
        "label": labels,
        "label_name": np.asarray(class_names, dtype=object)[labels].astype(str),
    })


def file_metadata(dataset: str, model_name: str, arch: str, config_hash: str,
                  **extra: Any) -> dict[str, Any]:
    return {"dataset": dataset, "model": model_name, "arch": arch, "config_hash": config_hash,
            "versions": library_versions(), **extra}


def _batches(images: np.ndarray, batch_size: int, model):
    """Batches of `images` as tensors on the model's device, with autograd off."""
    torch = configure_torch()
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            yield torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device)


def compute_latents(model: "torch.nn.Module", images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Latent vectors of shape (n_samples, latent_dim), float32: `encode` for autoencoders (VAE:
    mean), `features` (penultimate ReLU layer) for classifiers."""
    model.eval()
    fn = model.encode if model.kind == "autoencoder" else model.features
    out = [fn(x).float().cpu().numpy() for x in _batches(images, batch_size, model)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, model.latent_dim), np.float32)


def compute_hidden(model: "torch.nn.Module", images: np.ndarray,
                   batch_size: int = 1024) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Every hidden layer's activations, concatenated: (n_samples, total_units) float32, and the
    layers as [(name, units), ...] in network order."""
    if model.kind != "classifier":
        raise ValueError(f"hidden layers are written for classifiers; {model.arch!r} is an autoencoder")
    model.eval()
    chunks, layers = [], None
    for x in _batches(images, batch_size, model):
        h = model.hidden(x)
        layers = [(name, int(a.shape[1])) for name, a in h.items()]
        chunks.append(np.concatenate([a.float().cpu().numpy() for a in h.values()], axis=1))
    if layers is None:
        raise ValueError("no samples to compute hidden activations for")
    return np.concatenate(chunks).astype(np.float32), layers


def compute_predictions(model: "torch.nn.Module", images: np.ndarray,
                        batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class (n,) int64 and softmax probabilities (n, K) float32 of a classifier."""
    model.eval()
    probs = [configure_torch().softmax(model(x).float(), dim=1).cpu().numpy()
             for x in _batches(images, batch_size, model)]
    p = np.concatenate(probs).astype(np.float32)
    return p.argmax(axis=1).astype(np.int64), p


def compute_reconstructions(model: "torch.nn.Module", images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Reconstructions in [0, 1], same shape as `images` (VAE: decoded posterior mean)."""
    model.eval()
    out = [model(x).float().cpu().numpy() for x in _batches(images, batch_size, model)]
    return np.concatenate(out).astype(np.float32)


def hidden_rows(split: np.ndarray, max_samples: int) -> np.ndarray:
    """Rows of the hidden-layer table: the test split, then the train split (dataset order each),
    at most `max_samples`."""
    split = np.asarray(split).astype(str)
    order = np.concatenate([np.flatnonzero(split == "test"), np.flatnonzero(split != "test")])
    return order[:max_samples]


def reconstruction_subset(labels: np.ndarray, split: np.ndarray, per_class: int) -> np.ndarray:
    """Row indices of the first `per_class` test samples of each class, grouped by class."""
    labels, split = np.asarray(labels), np.asarray(split).astype(str)
    rows = [np.flatnonzero((labels == c) & (split == "test"))[:per_class] for c in np.unique(labels)]
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)


def latents_frame(ds, z: np.ndarray) -> pd.DataFrame:
    """id columns + z0..z{d-1} for every sample of dataset `ds`."""
    ids = id_frame(ds.sample_id, ds.split, ds.labels, ds.class_names)
    zs = pd.DataFrame(z.astype(np.float32), columns=[f"z{i}" for i in range(z.shape[1])])
    return pd.concat([ids, zs], axis=1)


def _load(data_path, model_path):
    """The dataset and the model; one extraction job writes several files from one load."""
    stamp = tuple((str(p), os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in (data_path, model_path))
    if _LOADED.get("stamp") != stamp:
        _LOADED.clear()
        _LOADED.update(stamp=stamp, value=_load_uncached(data_path, model_path))
    return _LOADED["value"]


_LOADED: dict[str, Any] = {}


def _load_uncached(data_path, model_path):
    from .models import load_model  # imports torch: only the extraction jobs pay for it

    ds = load_dataset(data_path)
    model = load_model(model_path)
    if tuple(ds.images.shape[1:]) != tuple(model.input_shape):
        raise ValueError(f"{model_path} expects inputs {tuple(model.input_shape)}, "
                         f"{data_path} holds {tuple(ds.images.shape[1:])}")
    return ds, model


def write_latents(data_path, model_path, out_path, *, model_name: str, config_hash: str,
                  batch_size: int = 1024) -> pd.DataFrame:
    """latents.parquet (rule extract_*) for every sample of the dataset."""
    ds, model = _load(data_path, model_path)
    df = latents_frame(ds, compute_latents(model, ds.images, batch_size))
    write_parquet(df, out_path, file_metadata(ds.name, model_name, model.arch, config_hash,
                                              latent_dim=model.latent_dim))
    log.info("%s: wrote %d x %d latents to %s", model_name, len(df), model.latent_dim, out_path)
    return df


def write_predictions(data_path, model_path, out_path, *, model_name: str, config_hash: str,
                      batch_size: int = 1024) -> pd.DataFrame:
    """predictions.parquet (rule extract_classifier) (pred, p0..p{K-1}) for every sample."""
    ds, model = _load(data_path, model_path)
    pred, probs = compute_predictions(model, ds.images, batch_size)
    df = id_frame(ds.sample_id, ds.split, ds.labels, ds.class_names)
    df["pred"] = pred
    df = pd.concat([df, pd.DataFrame(probs, columns=[f"p{k}" for k in range(probs.shape[1])])], axis=1)
    write_parquet(df, out_path, file_metadata(ds.name, model_name, model.arch, config_hash,
                                              class_names=list(ds.class_names)))
    test = df["split"] == "test"
    log.info("%s: test accuracy %.4f from %s", model_name,
             float((df.loc[test, "pred"] == df.loc[test, "label"]).mean()), out_path)
    return df


def write_hidden(data_path, model_path, out_path, *, model_name: str, config_hash: str,
                 max_samples: int = 10000, batch_size: int = 1024) -> pd.DataFrame:
    """hidden.parquet (rule extract_classifier) with every hidden unit of a classifier."""
    ds, model = _load(data_path, model_path)
    rows = hidden_rows(ds.split, max_samples)
    acts, layers = compute_hidden(model, ds.images[rows], batch_size)
    names = [f"{name}:{unit}" for name, units in layers for unit in range(units)]
    ids = id_frame(ds.sample_id[rows], ds.split[rows], ds.labels[rows], ds.class_names)
    df = pd.concat([ids, pd.DataFrame(acts, columns=names)], axis=1)
    write_parquet(df, out_path, file_metadata(ds.name, model_name, model.arch, config_hash,
                                              layers=[[n, u] for n, u in layers]))
    log.info("%s: wrote %d rows x %d hidden units (%s) to %s", model_name, len(df), len(names),
             ", ".join(f"{n} {u}" for n, u in layers), out_path)
    return df


def write_reconstructions(data_path, model_path, out_path, *, per_class: int = 4,
                          batch_size: int = 1024) -> dict[str, np.ndarray]:
    """reconstructions.npz (rule extract_autoencoder): originals and reconstructions of a fixed test subset."""
    ds, model = _load(data_path, model_path)
    if model.kind != "autoencoder":
        raise ValueError(f"reconstructions are written for autoencoders; {model.arch!r} is a classifier")
    rows = reconstruction_subset(ds.labels, ds.split, per_class)
    original = ds.images[rows].astype(np.float32)
    arrays = {
        "sample_id": ds.sample_id[rows].astype(np.int64),
        "label": ds.labels[rows].astype(np.int64),
        "original": original,
        "reconstruction": compute_reconstructions(model, original, batch_size),
        "class_names": np.asarray(ds.class_names, dtype=str),
    }
    write_npz(out_path, **arrays)
    return arrays


def class_names_of(df: pd.DataFrame) -> list[str]:
    """Class names in label order from a per-sample table's `label` and `label_name` columns
    (classes absent from the table are named by their number)."""
    pairs = df[["label", "label_name"]].drop_duplicates().sort_values("label")
    names = dict(zip(pairs["label"].astype(int), pairs["label_name"].astype(str)))
    return [names.get(k, str(k)) for k in range(max(names) + 1)] if names else []
