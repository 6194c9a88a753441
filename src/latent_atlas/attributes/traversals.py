"""Walks through latent space: the codes a traversal decodes, and the real images nearest to them.

A traversal starts at a sample's code z and steps along a unit direction u: z + s * sigma_u * u for
each step s (in standard deviations of the latents along u, sigma_u = std of Z @ u over the
analysed samples; s = 0 is the sample's own code). The directions are an attribute's
(`probes.directions`), each latent axis (the dimensions of largest variance, the classic
per-dimension grid) and each principal component. The attribute-arithmetic panel adds the
attribute's mean difference to samples without it and subtracts it from samples with it.

An autoencoder decodes the codes. A model without a decoder (a classifier, a table of latents)
shows for each code the real image whose latent is nearest (Euclidean), which says what the model
puts there without inventing an image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    if n == 0:
        raise ValueError("a traversal direction is zero")
    return np.asarray(v, np.float64) / n


def walk(z0: np.ndarray, direction: np.ndarray, Z: np.ndarray, steps: Sequence[float]) -> np.ndarray:
    """Codes of shape (n_starts, n_steps, d), float32: z0 (n_starts, d) + s * sigma_u * u for each
    step s, u = `direction` normalised, sigma_u = the std of the analysed latents `Z` along u. A
    step of 0 gives z0's own values, bit for bit."""
    u = unit(direction)
    sigma = float((np.asarray(Z, np.float64) @ u).std())
    offsets = np.asarray(steps, np.float64)[:, None] * sigma * u[None, :]
    z0 = np.asarray(z0, np.float32)
    out = (z0[:, None, :].astype(np.float64) + offsets[None]).astype(np.float32)
    out[:, np.asarray(steps) == 0] = z0[:, None, :]
    return out


def largest_variance_axes(Z: np.ndarray, n: int) -> np.ndarray:
    """The `n` latent dimensions of largest variance, largest first (ties: lower index)."""
    var = np.asarray(Z, np.float64).var(axis=0)
    return np.lexsort((np.arange(len(var)), -var))[:n]


def principal_components(Z: np.ndarray, n: int) -> np.ndarray:
    """The first `n` principal axes of Z (n, d), rows of unit length, signs fixed so that each
    axis's largest |entry| is positive (deterministic)."""
    Z = np.asarray(Z, np.float64)
    _, _, vt = np.linalg.svd(Z - Z.mean(axis=0), full_matrices=False)
    vt = vt[:n]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    return vt * signs[:, None]


def nearest_rows(reference: np.ndarray, queries: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For each query (m, d), the row of `reference` (n, d) nearest in Euclidean distance (ties:
    the lower row). Reads the reference a chunk at a time (memory m x chunk)."""
    reference = np.asarray(reference, np.float64)
    queries = np.asarray(queries, np.float64)
    best = np.full(len(queries), np.inf)
    arg = np.zeros(len(queries), np.int64)
    qq = (queries ** 2).sum(axis=1)[:, None]
    for start in range(0, len(reference), chunk):
        block = reference[start:start + chunk]
        d2 = qq - 2 * queries @ block.T + (block ** 2).sum(axis=1)[None, :]
        j = d2.argmin(axis=1)
        val = d2[np.arange(len(queries)), j]
        better = val < best
        best[better], arg[better] = val[better], start + j[better]
    return arg
