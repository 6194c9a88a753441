"""What a trained model says about every sample: latents, hidden layers, predictions, reconstructions.

The `compute_*` functions run a model over images (N, C, H, W) in batches without gradients
(`devices.infer`, on the model's device); the `*_frame` functions lay the results out as the
tables that the extraction jobs (models.jobs) write:
- latents.parquet: `sample_id`, `split`, `label`, `label_name`, then `z0 .. z{d-1}` float32, one row
  per sample in dataset order (AE bottleneck, VAE posterior mean, classifier penultimate features).
- hidden.parquet (classifiers): the id columns, then one float32 column per hidden unit named
  `{layer}:{unit}` (conv layers: per channel, averaged over space after ReLU); rows `hidden_rows`:
  first the test split, then the train split, each in dataset order.
- predictions.parquet (classifiers): id columns, `pred` int64, `p0 .. p{K-1}` float32 softmax.
- reconstructions.npz (autoencoders): `reconstruction_arrays` for the first k test samples of each class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from latent_atlas.data.store import Dataset
from latent_atlas.devices import infer, model_device
from latent_atlas.latents import id_frame, latents_frame_of


def compute_latents(model: nn.Module, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Latent vectors of shape (n_samples, latent_dim), float32: `encode` for autoencoders (VAE:
    mean), `features` (penultimate ReLU layer) for classifiers."""
    model.eval()
    return infer(model.encode if model.kind == "autoencoder" else model.features, images, batch_size)


def compute_hidden(model: nn.Module, images: np.ndarray,
                   batch_size: int = 1024) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Every hidden layer's activations, concatenated: (n_samples, total_units) float32, and the
    layers as [(name, units), ...] in network order."""
    if model.kind != "classifier":
        raise ValueError(f"hidden layers are written for classifiers; {model.arch!r} is an autoencoder")
    if not len(images):
        raise ValueError("no samples to compute hidden activations for")
    model.eval()
    layers: list[tuple[str, int]] = []

    def every_layer(x: torch.Tensor) -> torch.Tensor:
        h = model.hidden(x)
        layers[:] = [(name, int(a.shape[1])) for name, a in h.items()]
        return torch.cat(list(h.values()), dim=1)

    return infer(every_layer, images, batch_size, device=model_device(model)), layers


def compute_predictions(model: nn.Module, images: np.ndarray,
                        batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class (n,) int64 and softmax probabilities (n, K) float32 of a classifier."""
    model.eval()
    probs = infer(lambda x: torch.softmax(model(x).float(), dim=1), images, batch_size,
                  device=model_device(model))
    return probs.argmax(axis=1).astype(np.int64), probs


def compute_reconstructions(model: nn.Module, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Reconstructions in [0, 1], same shape as `images` (VAE: decoded posterior mean)."""
    model.eval()
    return infer(model, images, batch_size)


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


def latents_frame(ds: Dataset, z: np.ndarray) -> pd.DataFrame:
    """id columns + z0..z{d-1} for every sample of `ds`; z : (n_samples, d)."""
    return latents_frame_of(id_frame(ds.sample_id, ds.split, ds.labels, ds.class_names), z)


def predictions_frame(ds: Dataset, pred: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """id columns, `pred` and p0..p{K-1} for every sample of `ds`; pred : (n,), probs : (n, K)."""
    df = id_frame(ds.sample_id, ds.split, ds.labels, ds.class_names)
    df["pred"] = pred
    return pd.concat([df, pd.DataFrame(probs, columns=[f"p{k}" for k in range(probs.shape[1])])], axis=1)


def hidden_frame(ds: Dataset, rows: np.ndarray, acts: np.ndarray,
                 layers: list[tuple[str, int]]) -> pd.DataFrame:
    """id columns of `ds`'s `rows`, then their activations `acts` (len(rows), total_units) in
    columns `{layer}:{unit}`."""
    names = [f"{name}:{unit}" for name, units in layers for unit in range(units)]
    ids = id_frame(ds.sample_id[rows], ds.split[rows], ds.labels[rows], ds.class_names)
    return pd.concat([ids, pd.DataFrame(acts, columns=names)], axis=1)


def reconstruction_arrays(ds: Dataset, model: nn.Module, per_class: int,
                          batch_size: int = 1024) -> dict[str, np.ndarray]:
    """reconstructions.npz's arrays: `sample_id` (n,), `label` (n,), `original` and
    `reconstruction` (n, C, H, W) float32, `class_names` (K,), for `reconstruction_subset`'s rows;
    plus the dataset's `axes_*` entries (physical axes, `data.store.ImageAxes`) where it has them."""
    if model.kind != "autoencoder":
        raise ValueError(f"reconstructions are written for autoencoders; {model.arch!r} is a classifier")
    rows = reconstruction_subset(ds.labels, ds.split, per_class)
    original = ds.images[rows].astype(np.float32)
    return {
        "sample_id": ds.sample_id[rows].astype(np.int64),
        "label": ds.labels[rows].astype(np.int64),
        "original": original,
        "reconstruction": compute_reconstructions(model, original, batch_size),
        "class_names": np.asarray(ds.class_names, dtype=str),
        **(ds.axes.arrays() if ds.axes is not None else {}),
    }
