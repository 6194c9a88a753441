"""Pixel groups for permutation importance, and what a group's score means on the image grid.

Permuting one pixel alone makes images that never occur, and a single pixel's score understates a
region whose pixels carry the same information (issue 26). A *group* is a set of pixels that is
permuted jointly: the same permutation of the evaluation images for every pixel of the group, so
the permuted images keep the group's inside intact and only its relation to the rest is broken.

- `pixel`: every pixel its own group (the paper's per-pixel importance).
- `patch`: k x k squares at a stride s (s = k: a partition; s < k: overlapping squares). Squares
  at the right and bottom edges are clipped to the image, so every pixel belongs to a group.

A group's score is drawn on the image grid by `on_grid`: each pixel shows the mean score of the
groups that contain it (for a partition, its group's score).

A group's permutation k is its first (smallest) pixel's permutation k: the stream keyed by (seed,
pixel, k). So a group of one pixel is exactly that pixel (today's per-pixel tables, bit for bit),
and a group that adds pixels the model ignores scores exactly its first pixel's score. Distinct
groups of a partition, or of a patch layout (one top-left pixel each), never share a stream.

`naive_group_importance` is the reference loop for groups (as `engine._naive` is for pixels): per
group and permutation, every image's group pixels are replaced by those of the permuted image,
and the images are encoded again. The engine's fast paths and the stage's settings build on it
and on the groups' geometry and multiple testing (`benjamini_hochberg`) here.
"""

from __future__ import annotations

import numpy as np

GROUPINGS = ("pixel", "patch")


def _starts(size: int, k: int, stride: int) -> list[int]:
    """Start positions along an axis of length `size` so that windows of `k` at `stride` cover it."""
    starts = list(range(0, max(size - k, 0) + 1, stride))
    while starts[-1] + k < size:  # the remainder: one more (clipped) window
        starts.append(starts[-1] + stride)
    return starts


def patch_groups(height: int, width: int, size: int, stride: int | None = None) -> list[np.ndarray]:
    """k x k squares (`size` = k) at `stride` (default k: a partition), row-major, each as sorted
    flat pixel indices row * width + col; squares at the right and bottom edges are clipped."""
    stride = size if stride is None else stride
    if size < 1 or stride < 1:
        raise ValueError(f"patch size and stride must be >= 1, got size {size}, stride {stride}")
    if stride > size:
        raise ValueError(f"a patch stride ({stride}) larger than the patch ({size}) leaves pixels in no group")
    groups = []
    for r0 in _starts(height, size, stride):
        for c0 in _starts(width, size, stride):
            rows = np.arange(r0, min(r0 + size, height))
            cols = np.arange(c0, min(c0 + size, width))
            groups.append((rows[:, None] * width + cols[None, :]).ravel())
    return groups


def pixel_groups(height: int, width: int) -> list[np.ndarray]:
    """Every pixel its own group, in flat order."""
    return [np.array([i]) for i in range(height * width)]


def membership(groups: list[np.ndarray], n_pixels: int) -> np.ndarray:
    """(n_pixels, n_groups) float64 matrix: 1 where the pixel belongs to the group."""
    m = np.zeros((n_pixels, len(groups)))
    for g, pixels in enumerate(groups):
        m[pixels, g] = 1.0
    return m


def on_grid(values: np.ndarray, groups: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Group scores (G,) or (G, d) drawn on the image grid, (H, W) or (H, W, d): each pixel the
    mean over the groups that contain it (NaN for a pixel in none)."""
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(len(groups), -1)
    m = membership(groups, height * width)
    counts = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = (m @ flat) / counts[:, None]
    grid[counts == 0] = np.nan
    return grid.reshape((height, width) + values.shape[1:])


def first_pixels(groups: list[np.ndarray]) -> np.ndarray:
    """Each group's first (smallest) pixel, whose permutation stream the group uses; ValueError
    when two groups share one (their permutations would be the same)."""
    firsts = np.array([int(np.min(g)) for g in groups], dtype=np.int64)
    if len(np.unique(firsts)) != len(firsts):
        raise ValueError("two pixel groups share their first pixel, so they would share their permutations")
    return firsts


def naive_group_importance(model_fn, images, groups: list[np.ndarray], *, n_perm: int = 4, seed: int = 0,
                           batch_size: int = 8192, device=None) -> np.ndarray:
    """The reference loop of group permutation importance: (G, n_perm, d) float64, the mean over
    images of the squared change of each output when the group's pixels (all channels) are
    replaced, jointly, by those of the permuted images (permutation k of the group's first pixel).
    """
    import torch

    from latent_atlas.devices import infer, model_device
    from latent_atlas.importance.streams import permutation

    x = np.ascontiguousarray(np.asarray(images, dtype=np.float32))
    if x.ndim != 4 or len(x) < 2:
        raise ValueError(f"images must have shape (N, C, H, W) with N >= 2, got {x.shape}")
    n, c, h, w = x.shape
    device = torch.device(device) if device is not None else model_device(model_fn)
    z0 = torch.as_tensor(infer(model_fn, x, batch_size, device), device=device)
    out = np.zeros((len(groups), n_perm, z0.shape[1]))
    flat = x.reshape(n, c, h * w)
    for g, (pixels, first) in enumerate(zip(groups, first_pixels(groups))):
        pixels = np.asarray(pixels, dtype=np.int64)
        for k in range(n_perm):
            perm = permutation(seed, int(first), k, n)
            xp = flat.copy()
            xp[:, :, pixels] = flat[perm][:, :, pixels]
            z = torch.as_tensor(infer(model_fn, xp.reshape(n, c, h, w), batch_size, device), device=device)
            out[g, k] = ((z - z0).double() ** 2).mean(dim=0).cpu().numpy()
    return out


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
