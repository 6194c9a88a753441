"""Pixel groups for permutation importance, and what a group's score means on the image grid.

Permuting one pixel alone makes images that never occur, and a single pixel's score understates a
region whose pixels carry the same information (issue 26). A *group* is a set of pixels that is
permuted jointly: the same permutation of the evaluation images for every pixel of the group, so
the permuted images keep the group's inside intact and only its relation to the rest is broken.

- `pixel`: every pixel its own group (the paper's per-pixel importance).
- `patch`: k x k squares at a stride s (s = k: a partition; s < k: overlapping squares). Squares
  at the right and bottom edges are clipped to the image, so every pixel belongs to a group.
- `superpixel`: SLIC segments (scikit-image) of the dataset's mean training image: regions of
  similar mean intensity, a partition of the image.

A group's score is drawn on the image grid by `on_grid`: each pixel shows the mean score of the
groups that contain it (for a partition, its group's score).

A group's permutation k is its first (smallest) pixel's permutation k: the stream keyed by (seed,
pixel, k). So a group of one pixel is exactly that pixel (today's per-pixel tables, bit for bit),
and a group that adds pixels the model ignores scores exactly its first pixel's score. Distinct
groups of a partition, or of a patch layout (one top-left pixel each), never share a stream.

**Conditional permutation** (`importance.permutation: conditional`). Permuting a group across all
images pairs its values with contexts they never occur in (Hooker, Mentch & Zhou 2021), and a
group whose information its neighbours also carry looks important although the model could read
it from them. Conditional permutation importance (Strobl et al. 2008 for forests; for images,
Zintgraf et al. 2017 sample a patch given the patch around it) replaces a group's values by those
of images with a similar context: here the images are clustered by k-means on the group's context
ring (every pixel within Chebyshev distance `ring` of the group, all channels), and the group's
permutation moves images only within their cluster (`clusters.within_clusters`, drawn from the group's
marginal stream). So the score measures what the group adds beyond its surroundings. Its cost is one
k-means per group (`clusters.context_clusters`: fitted on 500 images, then N x ring size x clusters
to assign every image), and the permutations change fewer pixel values; `ring` and `clusters`
trade how closely the context is matched against how many images share a cluster (a cluster of
one image cannot move). docs/benchmarks.md has the measured cost.
"""

from __future__ import annotations

import numpy as np

GROUPINGS = ("pixel", "patch", "superpixel")
PERMUTATIONS = ("marginal", "conditional")


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


def superpixel_groups(mean_image: np.ndarray, n_segments: int, compactness: float) -> list[np.ndarray]:
    """SLIC superpixels (scikit-image) of a mean image (C, H, W) with values in [0, 1], as sorted flat
    pixel indices, ordered by their first pixel. `n_segments` is SLIC's target count (it returns
    about that many connected segments); `compactness` trades colour closeness (small) against
    square, regular segments (large)."""
    from skimage.segmentation import slic

    img = np.asarray(mean_image, dtype=np.float64)
    if img.ndim != 3:
        raise ValueError(f"the mean image must have shape (C, H, W), got {img.shape}")
    if n_segments < 1 or compactness <= 0:
        raise ValueError(f"superpixels need n_segments >= 1 and compactness > 0, got {n_segments}, {compactness}")
    labels = slic(img.transpose(1, 2, 0), n_segments=int(n_segments), compactness=float(compactness),
                  channel_axis=-1, start_label=0, enforce_connectivity=True, convert2lab=False)
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    cuts = np.flatnonzero(np.diff(flat[order])) + 1
    groups = [np.sort(g) for g in np.split(order, cuts)]
    return sorted(groups, key=lambda g: int(g[0]))


def make_groups(grouping: str, height: int, width: int, *, patch_size: int | None = None,
                patch_stride: int | None = None, n_segments: int | None = None, compactness: float | None = None,
                mean_image=None) -> list[np.ndarray]:
    """The groups of a grouping (`importance.groups`): `pixel`, `patch` (patch_size, patch_stride)
    or `superpixel` (n_segments, compactness, on `mean_image` (C, H, W))."""
    if grouping == "pixel":
        return pixel_groups(height, width)
    if grouping == "patch":
        return patch_groups(height, width, patch_size, patch_stride)
    if grouping == "superpixel":
        if mean_image is None:
            raise ValueError("superpixel groups need the dataset's mean image")
        return superpixel_groups(mean_image, n_segments, compactness)
    raise ValueError(f"unknown grouping {grouping!r}; choose one of {', '.join(GROUPINGS)}")


def context_ring(group: np.ndarray, height: int, width: int, ring: int) -> np.ndarray:
    """The pixels within Chebyshev distance `ring` of the group and outside it (sorted flat
    indices): the context a conditional permutation matches on."""
    from scipy.ndimage import binary_dilation

    mask = np.zeros(height * width, dtype=bool)
    mask[np.asarray(group, dtype=np.int64)] = True
    mask = mask.reshape(height, width)
    grown = binary_dilation(mask, structure=np.ones((2 * ring + 1, 2 * ring + 1), dtype=bool)) if ring > 0 else mask
    return np.flatnonzero(grown & ~mask)


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
