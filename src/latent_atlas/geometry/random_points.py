"""Decoding latent points drawn at random, and how plausible the decoded images are.

If the latents lie on thin filaments, points drawn from a filled distribution (N(0, I), a fitted
Gaussian, the bounding box) land in voids and decode to implausible images, while small offsets
of real latents stay plausible. Plausibility is the RMS pixel distance to the nearest training
image and, where a classifier is given, its confidence.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from latent_atlas.devices import infer, model_device
from latent_atlas.geometry.baseline import check_cloud, gaussian_like


def random_latents(Z: np.ndarray, n: int, offset_scale: float,
                   random_state: int = 0) -> dict[str, np.ndarray]:
    """Latent vectors to decode, one set per way of drawing them, each (n, d) float32.

    Sets: `standard_normal` N(0, I); `fitted_gaussian` N(mean, cov) of the latents Z (n_samples, d);
    `bounding_box` uniform in the latents' per-axis [min, max]; `offsets` real latents plus
    N(0, (offset_scale * std_axis)^2) noise; `real` the real latents themselves (reference).
    """
    Z = check_cloud(Z)
    rng = np.random.default_rng(random_state)
    d = Z.shape[1]
    real = Z[np.sort(rng.choice(len(Z), size=min(n, len(Z)), replace=False))]
    sets = {
        "standard_normal": rng.standard_normal((n, d)),
        "fitted_gaussian": gaussian_like(Z, n=n, random_state=random_state + 1),
        "bounding_box": rng.uniform(Z.min(axis=0), Z.max(axis=0), size=(n, d)),
        "offsets": real + rng.standard_normal(real.shape) * offset_scale * Z.std(axis=0),
        "real": real,
    }
    return {k: v.astype(np.float32) for k, v in sets.items()}


def nearest_image_distance(images: np.ndarray, reference, batch: int = 256,
                           reference_chunk: int = 4096) -> np.ndarray:
    """RMS pixel distance of each image (m, ...) to its nearest reference image (N, ...): (m,).

    Pixel values in [0, 1]; 0 = an exact copy of a training image. `reference` is an ndarray or
    the store's `StoredImages`: it is read `reference_chunk` rows at a time, so it is never held whole.
    """
    A = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
    if int(np.prod(reference.shape[1:])) != A.shape[1]:
        raise ValueError(f"images have {A.shape[1]} pixels, reference images {int(np.prod(reference.shape[1:]))}")
    best = np.full(len(A), np.inf, np.float32)  # squared distance to the nearest reference so far
    for r in range(0, len(reference), reference_chunk):
        B = np.asarray(reference[r:r + reference_chunk], dtype=np.float32).reshape(-1, A.shape[1])
        b2 = (B * B).sum(axis=1)
        for s in range(0, len(A), batch):
            a = A[s:s + batch]
            d2 = (a * a).sum(axis=1)[:, None] - 2 * a @ B.T + b2[None, :]
            best[s:s + batch] = np.minimum(best[s:s + batch], d2.min(axis=1))
    return (np.sqrt(np.clip(best, 0, None) / A.shape[1])).astype(np.float64)


def plausibility_table(sets: Mapping[str, np.ndarray], nn_distance: Mapping[str, np.ndarray],
                       confidence: Mapping[str, np.ndarray] | None = None,
                       predicted: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One row per decoded image: `set`, `index`, `nn_distance`, and where a classifier was given
    `confidence` (max softmax probability) and `predicted` (class)."""
    frames = []
    for name in sets:
        f = pd.DataFrame({"set": name, "index": np.arange(len(sets[name]), dtype=np.int64),
                          "nn_distance": nn_distance[name]})
        if confidence is not None:
            f["confidence"] = confidence[name]
            f["predicted"] = predicted[name].astype(np.int64)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def decode_random_points(model, Z: np.ndarray, reference_images: np.ndarray, n: int, offset_scale: float,
                         classifier=None, random_state: int = 0,
                         batch_size: int = 256) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Decode latents drawn in five ways (`random_latents`) and score how plausible the images are.

    Parameters
    ----------
    model : autoencoder with `decode(z) -> (B, C, H, W)` in [0, 1] (models contract), eval mode;
        it decodes on the device of its parameters.
    Z : ndarray of shape (n_samples, d): this model's latents.
    reference_images : ndarray of shape (N, C, H, W) in [0, 1]
        Training images; plausibility = RMS pixel distance to the nearest of them.
    n : int
        Images per set.
    offset_scale : float
        See `random_latents`.
    classifier : optional classifier with `forward(x) -> logits` on the same dataset; adds its
        max softmax probability (`confidence`) and `predicted` class per image.

    Returns
    -------
    images : dict set -> float32 (n, C, H, W)
    scores : DataFrame from `plausibility_table`.
    """
    sets = random_latents(Z, n, offset_scale, random_state)
    images = {k: infer(model.decode, z, batch_size) for k, z in sets.items()}
    nn = {k: nearest_image_distance(v, reference_images) for k, v in images.items()}
    conf = pred = None
    if classifier is not None:
        import torch

        def probabilities(x):
            return torch.softmax(classifier(x), dim=1)

        probs = {k: infer(probabilities, v, batch_size, device=model_device(classifier))
                 for k, v in images.items()}
        conf = {k: p.max(axis=1) for k, p in probs.items()}
        pred = {k: p.argmax(axis=1) for k, p in probs.items()}
    return images, plausibility_table(images, nn, conf, pred)
