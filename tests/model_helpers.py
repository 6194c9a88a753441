"""Tiny synthetic data for the model-stage tests (test_models, test_training, test_latents)."""

from __future__ import annotations

import numpy as np

from latent_atlas.data.store import Dataset

# Small sizes of every arch, so each test trains in well under a second.
TINY_PARAMS = {
    "dense_ae": {"hidden": [16], "latent_dim": 4},
    "dense_vae": {"hidden": [16], "latent_dim": 2},
    "conv_ae": {"channels": [4, 4, 8, 8], "latent_dim": 4},
    "conv_vae": {"channels": [4, 4, 8, 8], "latent_dim": 2},
    "cnn_classifier": {"channels": [4, 8], "feature_dim": 16},
    "mlp_classifier": {"hidden": [24, 16]},
}


def tiny_dataset(n: int = 160, n_classes: int = 3, shape=(1, 16, 16), seed: int = 0,
                 test_fraction: float = 0.25) -> Dataset:
    """Images in [0, 1] whose class is a bright horizontal band at a class-specific height."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    labels = np.arange(n) % n_classes
    images = (rng.random((n, c, h, w)) * 0.3).astype(np.float32)
    band = max(h // n_classes, 1)
    for k in range(n_classes):
        images[labels == k, :, k * band:(k + 1) * band, :] += 0.6
    n_test = int(n * test_fraction)
    split = np.array(["train"] * (n - n_test) + ["test"] * n_test)
    return Dataset(np.clip(images, 0, 1), labels, [f"class{k}" for k in range(n_classes)], split,
                   np.arange(n, dtype=np.int64) + 1000, "tiny")
