"""Uncertainty and significance of permutation importance (torch-free: the gather job stays light).

Two sources of randomness make an importance score uncertain: the permutations drawn, and the
finite set of N evaluation images the score is averaged over. The t interval over the K
permutations (`engine.summarise_permutations`, columns ci_low/ci_high) counts only the first; a
fixed encoder's importance is a property of the image distribution, so the second matters as much
(with 4 permutations it usually dominates).

**Standard error over images and permutations.** For a group g and output j, permutation k
gives per-image terms c_n(k) = (z_nj(group of image pi_k(n)) - z_nj)^2, and the score is their mean
over n and k. Each term involves two images, n and pi_k(n): the score is, up to permutation noise,
a U-statistic of order 2 over the images, whose first-order (Hajek) projection puts on image n
half the terms it takes part in,

    u_n = (1 / 2K) sum_k [c_n(k) + c_{pi_k^-1(n)}(k)],   mean_n u_n = score.

The influence of image n on the score is 2 (u_n - score) (order 2), so the variance of the score
over draws of the image set is estimated by 4 sum_n (u_n - score)^2 / (N (N - 1)). This is the
variance the bootstrap over images converges to (the infinitesimal jackknife; an image drawn m
times weights its pairs by m), computed in closed form from the accumulated u_n, so it costs no
resampling; a resampling bootstrap with B replicates could not give p-values below 1 / (B + 1),
too coarse for a false discovery rate over thousands of scores. The permutation noise also enters
u_n, so the same number counts it too (conservatively: about twice its share, for finite K). The
interval is score +- z se (normal quantile at the confidence level). Tests check it against a
resampling bootstrap and its coverage against a closed form (a linear encoder).

**p-values and discoveries.** H0 for a score: importance <= delta, where delta =
`importance.min_effect` x the largest score of its map (the same output dimension over all groups):
a score is "declared" only if it is credibly more than a small fraction of what the map's strongest
pixel does. The one-sided p-value is 1 - Phi((score - delta) / se), and Benjamini-Hochberg at
`importance.fdr` over every (group, dimension) score of an output table controls the expected share
of false discoveries among the declared. A group the model ignores (or that is constant) scores
exactly 0 with se 0 and p = 1: never declared.

Why this null fits: the encoder is fixed and deterministic, so the only question is whether the
score's population value exceeds delta; images are the sampling unit. The classifier-side
alternative, PIMP (Altmann et al. 2010), permutes the target and retrains to build a null of
importances under no association; an encoder has no target to permute and is not retrained here
(a retrained autoencoder is a different map, not a draw from a null), so it does not transfer.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def standard_error(terms: np.ndarray, importance: np.ndarray, n_perm: int) -> np.ndarray:
    """Standard error over images and permutations, (G, d) float64.

    terms : ndarray (G, N, d), sum over permutations of every term an image takes part in
        (c_n(k) + c_{pi_k^-1(n)}(k)); importance : (G, d), the scores (mean over images and
        permutations)."""
    terms = np.asarray(terms, dtype=np.float64)
    n = terms.shape[1]
    u = terms / (2.0 * n_perm)
    dev = u - np.asarray(importance, dtype=np.float64)[:, None, :]
    return np.sqrt(4.0 * np.einsum("gnd,gnd->gd", dev, dev) / (n * (n - 1)))


def interval(importance: np.ndarray, se: np.ndarray, confidence: float):
    """(low, high): importance -+ the normal quantile at `confidence` times se."""
    half = stats.norm.ppf(0.5 + confidence / 2) * np.asarray(se)
    return importance - half, importance + half


def p_values(importance: np.ndarray, se: np.ndarray, delta) -> np.ndarray:
    """One-sided p-values of H0: importance <= delta (normal approximation); where se is 0 the
    score is exact: p = 0 above delta, 1 at or below it."""
    importance = np.asarray(importance, dtype=np.float64)
    se = np.asarray(se, dtype=np.float64)
    diff = importance - np.asarray(delta, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = stats.norm.sf(diff / se)
    return np.where(se > 0, p, np.where(diff > 0, 0.0, 1.0))


def benjamini_hochberg(pvalues, q: float = 0.05) -> np.ndarray:
    """The Benjamini-Hochberg discoveries at false discovery rate `q`: a boolean mask of the shape
    of `pvalues` (any shape; NaN p-values are never discovered and do not count as tests).

    Reject the k smallest p-values, where k is the largest rank with p_(k) <= k q / m.
    """
    if not 0 < q < 1:
        raise ValueError(f"the false discovery rate must be in (0, 1), got {q}")
    p = np.asarray(pvalues, dtype=np.float64)
    flat = p.ravel()
    tested = np.flatnonzero(~np.isnan(flat))
    mask = np.zeros(flat.shape, dtype=bool)
    m = len(tested)
    if m == 0:
        return mask.reshape(p.shape)
    order = tested[np.argsort(flat[tested], kind="stable")]
    below = flat[order] <= q * np.arange(1, m + 1) / m
    if below.any():
        k = np.flatnonzero(below)[-1] + 1
        mask[order[:k]] = True
    return mask.reshape(p.shape)


def declare(importance: np.ndarray, se: np.ndarray, *, min_effect: float, fdr: float):
    """delta (d,), p-values and discoveries (G, d) of a whole output table (every group of every
    block): delta_j = min_effect x max_g importance[g, j]; BH over all (group, dimension) scores."""
    if not 0 <= min_effect < 1:
        raise ValueError(f"importance.min_effect must be in [0, 1), got {min_effect}")
    importance = np.asarray(importance, dtype=np.float64)
    delta = min_effect * importance.max(axis=0) if len(importance) else np.zeros(importance.shape[1:])
    p = p_values(importance, se, delta[None, :])
    return delta, p, benjamini_hochberg(p, fdr)
