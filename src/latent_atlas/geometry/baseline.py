"""The cloud every geometry analysis measures, and the filled Gaussian it is compared with.

`Z` is an ndarray of shape (n_samples, d) of latent vectors. The baseline of a cloud is "a filled
Gaussian": samples of a normal distribution with the cloud's own mean and covariance, drawn with
the same count, so every statistic has a like-for-like reference.
"""

from __future__ import annotations

import numpy as np


def check_cloud(Z, name: str = "Z", min_samples: int = 2) -> np.ndarray:
    """`Z` as a float64 ndarray of shape (n_samples, d), with at least `min_samples` finite rows."""
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"{name} must have shape (n_samples, d); got shape {Z.shape}")
    if len(Z) < min_samples:
        raise ValueError(f"{name} needs at least {min_samples} samples; got {len(Z)}")
    if not np.isfinite(Z).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return Z


def gaussian_like(Z: np.ndarray, n: int | None = None, random_state: int = 0) -> np.ndarray:
    """Samples of N(mean(Z), cov(Z)): the "filled Gaussian" baseline of a cloud.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, d)
    n : int, optional
        Number of samples (default n_samples).
    random_state : int

    Returns
    -------
    ndarray of shape (n, d), float64.
    """
    Z = check_cloud(Z)
    n = len(Z) if n is None else int(n)
    mean = Z.mean(axis=0)
    cov = np.atleast_2d(np.cov(Z, rowvar=False))
    # eigh instead of Cholesky: a rank-deficient covariance (dead latent axes) stays valid.
    w, V = np.linalg.eigh(cov)
    root = V * np.sqrt(np.clip(w, 0.0, None))
    rng = np.random.default_rng(random_state)
    return mean + rng.standard_normal((n, Z.shape[1])) @ root.T
