"""Permutation importance of pixels and latent dimensions (Inglis & Parnell), exact and fast.

Pixel -> encoded dimension: shuffle pixel i across the N evaluation images (permutation k),
encode, and take the mean squared change of each encoded dimension j; V[i, j] is the mean over
the permutations, with their spread and a confidence interval. The direction of the effect is the
sign of the least-squares slope of z_j on x_i. Encoded dimension -> output, per class: shuffle
z_j across a class's samples, decode (autoencoders) or classify (classifiers), and take the mean
squared change of the output.

Every permutation is drawn from a stream keyed by (seed, pixel, permutation) alone
(`latent_atlas.importance.streams`), so results never depend on the block of pixels a job
computes, the number of jobs, the batch size or the device. The engine has one naive reference
loop (`method="naive"`) and fast paths that give the same numbers to float tolerance:

- rows whose pixel value did not change under the permutation are skipped (their output cannot
  change), and constant pixels are skipped entirely (their importance is exactly 0);
- a dense model's first layer is updated by a rank-1 term, pre' = pre + W[:, i] * (x_perm - x),
  instead of being recomputed (`first_linear_split` of `latent_atlas.models.networks`);
- when the rest of the encoder is identity, ReLU, or ReLU + Linear (+ ReLU) -- the paper's
  784 -> d encoder and one-hidden-layer networks -- a compiled kernel does the whole (pixel,
  permutation) pair in O(N * h) with float64 accumulation (`latent_atlas.importance.kernels`);
- a convolutional encoder recomputes only the window a pixel's change reaches, layer by layer,
  spliced into cached activations, and updates the first dense layer by a rank-k term
  (`method="local"`, `latent_atlas.importance.local`);
- otherwise many (pixel, permutation) pairs are batched per forward pass, in chunks of
  `batch_size` rows so memory stays bounded, on CUDA when present.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from latent_atlas.devices import batches, infer, model_device
from latent_atlas.importance.kernels import KernelPlan, kernel_importance, kernel_plan
from latent_atlas.importance.local import CACHE_BYTES, LocalStack, local_importance, local_stack
from latent_atlas.importance.memory import plan_block
from latent_atlas.importance.clusters import cluster_order, context_clusters, within_clusters
from latent_atlas.importance.groups import first_pixels
from latent_atlas.importance.inference import interval, standard_error
from latent_atlas.importance.streams import LATENT_STREAM, PIXEL_STREAM, fill_permutation, permutation
from latent_atlas.importance.tables import LatentImportance, PixelImportance

METHODS = ("auto", "naive", "rows", "rank1", "kernel", "local")


def summarise_permutations(values: np.ndarray, confidence: float = 0.95):
    """Mean, std (ddof=1) and t confidence interval over axis 1 of (P, K, d) values."""
    from scipy import stats

    k = values.shape[1]
    mean = values.mean(axis=1)
    if k > 1:
        std = values.std(axis=1, ddof=1)
        half = stats.t.ppf(0.5 + confidence / 2, k - 1) * std / math.sqrt(k)
    else:
        std = np.zeros_like(mean)
        half = np.zeros_like(mean)
    return mean, std, mean - half, mean + half


def slope_and_sign(x: np.ndarray, z: np.ndarray, threshold: float = 0.0):
    """Least-squares slope of each output on each pixel, and its thresholded sign.

    Parameters
    ----------
    x : ndarray of shape (N, P), pixel values (channel mean for colour images).
    z : ndarray of shape (N, d), outputs of the unpermuted images.
    threshold : slopes with |slope| <= threshold get sign 0 (constant pixels always get 0).

    Returns
    -------
    slope : ndarray of shape (P, d) float64; sign : ndarray of shape (P, d) int8.
    """
    if threshold < 0:
        raise ValueError(f"sign threshold must be >= 0, got {threshold}")
    x = np.asarray(x, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    xc = x - x.mean(axis=0)
    zc = z - z.mean(axis=0)
    var = (xc * xc).sum(axis=0)
    cov = xc.T @ zc
    scale = np.abs(x).max(axis=0) + 1.0
    constant = var <= (1e-12 * scale) ** 2 * len(x)
    slope = np.where(constant[:, None], 0.0, cov / np.where(constant, 1.0, var)[:, None])
    sign = np.where(np.abs(slope) > threshold, np.sign(slope), 0.0).astype(np.int8)
    return slope, sign


# --------------------------------------------------------------------------------------------
# Model adapters
# --------------------------------------------------------------------------------------------
OUTPUTS = ("latent", "features", "logits")


def output_function(model: nn.Module, output: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map image batch (B, C, H, W) -> (B, d) whose importance is measured.

    `latent`: an autoencoder's encode (VAE: the posterior mean); `features`: a classifier's
    penultimate features; `logits`: a classifier's class outputs.
    """
    kind = getattr(model, "kind", None)
    if output == "latent":
        if not hasattr(model, "encode"):
            raise ValueError(f"output 'latent' needs an autoencoder (model kind {kind!r})")
        return model.encode
    if output == "features":
        if not hasattr(model, "features"):
            raise ValueError(f"output 'features' needs a classifier (model kind {kind!r})")
        return model.features
    if output == "logits":
        if kind != "classifier":
            raise ValueError(f"output 'logits' needs a classifier (model kind {kind!r})")
        return model.forward
    raise ValueError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")


def model_split(model: nn.Module, output: str):
    """`model.first_linear_split(output)` or None where the model has none (conv models)."""
    fn = getattr(model, "first_linear_split", None)
    if fn is None:
        return None
    try:
        return fn(output)
    except ValueError:
        return None


def model_stack(model: nn.Module, output: str, device=None) -> tuple[LocalStack | None, str]:
    """The `LocalStack` of a model's output (for `method="local"`) and "", or None and why not.

    The layers are `model.layer_sequence(output)` (the project's conv models), or an
    nn.Sequential's own layers for its single output; the stack must reproduce the output
    function on a probe batch (`local_stack`).
    """
    if hasattr(model, "layer_sequence"):
        try:
            layers = model.layer_sequence(output)
        except ValueError as err:
            return None, str(err)
        fn, shape = output_function(model, output), model.input_shape
    elif isinstance(model, nn.Sequential):
        layers, fn, shape = list(model), model, getattr(model, "input_shape", None)
    else:
        return None, f"{type(model).__name__} describes no layer sequence"
    if layers is None:
        refusal = getattr(model, "chain_refusal", None)
        why = refusal(output) if callable(refusal) else ""
        return None, why or f"{getattr(model, 'arch', type(model).__name__)} is not convolutional"
    try:
        return local_stack(layers, fn, shape, device), ""
    except ValueError as err:
        return None, str(err)


def choose_method(method: str, split, device: torch.device,
                  stack: LocalStack | None = None) -> tuple[str, KernelPlan | None]:
    """The path `pixel_importance` takes, and the kernel plan of the split's rest (or None).

    `method` itself when it applies to the model (a ValueError saying why when it does not);
    for "auto" the fastest that applies: the kernel on CPU (on CUDA only for identity rests,
    which need no forward pass at all), else rank-1 updates for dense models, else the local
    path for conv models with a `stack` (several times faster than rows on all three conv
    encoders of docs/benchmarks.md), else rows.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    plan = kernel_plan(split[1]) if split is not None else None
    if method == "auto":
        if split is None:
            method = "local" if stack is not None else "rows"
        elif plan is not None and (device.type == "cpu" or plan.identity):
            method = "kernel"
        else:
            method = "rank1"
    if method in ("rank1", "kernel") and split is None:
        raise ValueError(f"method {method!r} needs the model's first_linear_split (dense models)")
    if method == "kernel" and plan is None:
        raise ValueError("method 'kernel' needs rest = identity, ReLU or ReLU + Linear (+ ReLU)")
    if method == "local" and stack is None:
        raise ValueError("method 'local' needs a convolutional stack of supported layers (`model_stack`)")
    return method, plan


# --------------------------------------------------------------------------------------------
# Pixel -> output
# --------------------------------------------------------------------------------------------
def _as_images(images) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {x.shape}")
    if len(x) < 2:
        raise ValueError(f"permutation importance needs at least 2 images, got {len(x)}")
    return np.ascontiguousarray(x)


def _as_groups(pixels, groups, hw: int, h: int, w: int) -> list[np.ndarray]:
    """The groups to compute: `groups` as sorted int64 arrays, or each of `pixels` (default: all)
    alone."""
    if groups is None:
        pixels = np.arange(hw, dtype=np.int64) if pixels is None else np.asarray(pixels, dtype=np.int64)
        if pixels.ndim != 1 or (len(pixels) and (pixels.min() < 0 or pixels.max() >= hw)):
            raise ValueError(f"pixels must be flat indices in [0, {hw}) for images {h}x{w}")
        return [pixels[i:i + 1] for i in range(len(pixels))]
    if pixels is not None:
        raise ValueError("give pixels or groups, not both")
    out = []
    for i, g in enumerate(groups):
        g = np.unique(np.asarray(g, dtype=np.int64))
        if g.ndim != 1 or not len(g) or g[0] < 0 or g[-1] >= hw:
            raise ValueError(f"group {i} must hold flat pixel indices in [0, {hw}) for images {h}x{w}")
        out.append(g)
    return out


class GroupPermutations:
    """Permutation k of each group: its first pixel's stream (`streams`), or with `clusters` (a
    label array (N,) per group) that stream moved within the group's context clusters
    (`clusters.within_clusters`: conditional permutation)."""

    def __init__(self, firsts: np.ndarray, seed: int, n: int, clusters: list[np.ndarray] | None = None):
        self.firsts, self.seed, self.n, self.clusters = np.asarray(firsts, dtype=np.int64), int(seed), int(n), clusters
        self.orders = None if clusters is None else [cluster_order(labels) for labels in clusters]

    def __call__(self, g: int, k: int) -> np.ndarray:
        perm = np.empty(self.n, dtype=np.int64)
        fill_permutation(perm, self.seed, PIXEL_STREAM, int(self.firsts[g]), int(k))
        return perm if self.clusters is None else within_clusters(perm, self.clusters[g], self.orders[g])

    def block(self, g0: int, g1: int, n_perm: int) -> np.ndarray:
        """(g1 - g0, n_perm, N) int64."""
        return np.stack([np.stack([self(g, k) for k in range(n_perm)]) for g in range(g0, g1)])


def entry_indices(groups: list[np.ndarray], c: int, hw: int) -> tuple[np.ndarray, np.ndarray]:
    """(G, M) flat indices ch * hw + pixel of each group's entries (pixel-major, channels inside)
    into the images' (N, C * H * W) view, padded to the largest group's M with the group's first
    entry, and the (G, M) mask of real entries. The group columns are 0 at padded entries, so a
    padded entry always carries a zero change (it adds exactly 0 to its first entry)."""
    m = c * max(len(g) for g in groups)
    idx = np.empty((len(groups), m), dtype=np.int64)
    valid = np.zeros((len(groups), m), dtype=bool)
    for i, g in enumerate(groups):
        e = (g[:, None] + hw * np.arange(c)[None, :]).ravel()
        idx[i, :len(e)], idx[i, len(e):] = e, e[0]
        valid[i, :len(e)] = True
    return idx, valid


def pixel_importance(
    model_fn: Callable[[torch.Tensor], torch.Tensor],
    images: np.ndarray,
    pixels: Sequence[int] | None = None,
    *,
    groups: Sequence[np.ndarray] | None = None,
    conditional: dict | None = None,
    n_perm: int = 4,
    seed: int = 0,
    split=None,
    stack: LocalStack | None = None,
    method: str = "auto",
    batch_size: int = 8192,
    device: str | torch.device | None = None,
    sign_threshold: float = 0.0,
    confidence: float = 0.95,
    memory_mb: float | None = None,
) -> PixelImportance:
    """Permutation importance of pixels, or of groups of pixels, for each output of `model_fn`.

    Parameters
    ----------
    model_fn : callable mapping a float32 tensor (B, C, H, W) to (B, d) (e.g. `model.encode`);
        it must already live on `device`.
    images : ndarray of shape (N, C, H, W), the evaluation images (the test split).
    pixels : flat pixel indices row * W + col to compute, each alone (default: all H * W).
    groups : instead of pixels, groups of flat pixel indices (`importance.groups`), each permuted
        jointly: the same permutation of the images for all its pixels and channels.
    conditional : None (marginal permutations) or {"ring": r, "clusters": k}: permute each group
        within k-means clusters of its context ring (`clusters.context_clusters`).
    n_perm : permutations per group (the paper: 4).
    seed : base of the random streams; permutation k of a group depends on (seed, its first
        pixel, k) (and its context clusters) only.
    split : `(linear, rest)` from `model.first_linear_split(...)` enabling the rank-1 paths.
    stack : the `LocalStack` of a convolutional model (`model_stack`) enabling the local path.
    method : "naive" (re-encode every image per group and permutation: the reference),
        "rows" (only changed rows, batched), "rank1" (rank-k first layer, batched), "kernel"
        (compiled, CPU, identity/ReLU/ReLU+Linear rests), "local" (receptive-field windows,
        conv models) or "auto" (`choose_method`).
    batch_size : rows per forward pass (bounds memory).
    device : torch device (default: the device of the function's module, else CUDA when
        available, else CPU).
    sign_threshold : |slope| at or below which the sign is 0.
    confidence : level of the t interval over permutations and of the interval over images and
        permutations (`inference`).
    memory_mb : the job's peak memory to plan for (`importance.memory`): sizes the local path's
        cache chunks and the other paths' rows per pass (batch_size stays the upper bound); the
        plan is the result's `memory_plan`. None: chunks of `local.CACHE_BYTES`, rows of batch_size.

    Returns
    -------
    PixelImportance (its `groups` set when groups were given)
    """
    if n_perm < 1:
        raise ValueError(f"n_perm must be >= 1, got {n_perm}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x = _as_images(images)
    n, c, h, w = x.shape
    hw = h * w
    grouped = groups is not None
    groups = _as_groups(pixels, groups, hw, h, w)
    firsts = first_pixels(groups)
    device = torch.device(device) if device is not None else model_device(model_fn)
    xflat = x.reshape(n, c * hw)
    method, plan = choose_method(method, split, device, stack)
    idx, valid = entry_indices(groups, c, hw)
    # Group columns (N, M, G): entry m of group g (pixel-major, channels inside; padded entries
    # are 0 in every image, so they never change).
    gcols = xflat[:, idx.T]
    gcols[:, ~valid.T] = 0.0
    constant = np.all(gcols.max(axis=0) == gcols.min(axis=0), axis=0)
    active = np.flatnonzero(~constant)
    memory_plan, cache_bytes = None, CACHE_BYTES
    if memory_mb is not None:
        # Every image's terms (sum over permutations, both roles of the image), float32 (inference).
        held = 4 * len(active) * n * _output_width(model_fn, x[:1], device)
        memory_plan = plan_block(memory_mb, method, model_fn, (c, h, w), n, batch_size, stack, device,
                                 held_bytes=held)
        batch_size, cache_bytes = memory_plan.batch_size, memory_plan.cache_bytes or CACHE_BYTES
    clusters = None
    if conditional is not None and len(active):
        clusters = context_clusters(xflat.reshape(n, c, hw), [groups[a] for a in active], h, w,
                                    ring=int(conditional["ring"]), n_clusters=int(conditional["clusters"]), seed=seed)
    perms = GroupPermutations(firsts[active], seed, n, clusters)
    act_groups = [groups[a] for a in active]
    if method == "local" and len(active):
        # The local path's activation cache gives the unpermuted outputs too (the stack
        # reproduces model_fn), so the images go through the model once.
        local_values, local_terms, z0 = local_importance(stack, x, act_groups, perms, n_perm, batch_size, device,
                                                         return_base=True, cache_bytes=cache_bytes)
    else:
        z0 = infer(model_fn, x, batch_size, device)
    z0_t = torch.as_tensor(z0, device=device)
    d = z0.shape[1]
    values = np.zeros((len(groups), n_perm, d), dtype=np.float64)
    terms = np.zeros((len(groups), n, d), dtype=np.float32)
    if len(active):
        args = (x, gcols[:, :, active], idx[active], perms, n_perm, batch_size)
        if method == "naive":
            values[active], terms[active] = _naive(model_fn, *args, device, z0_t)
        elif method == "rows":
            values[active], terms[active] = _rows(model_fn, *args, device, z0_t)
        elif method == "rank1":
            values[active], terms[active] = _rank1(split, *args, device, z0_t)
        elif method == "local":
            values[active], terms[active] = local_values, local_terms
        else:
            values[active], terms[active] = kernel_importance(split[0], plan, x, gcols[:, :, active], idx[active],
                                                              perms, n_perm, batch_size)
    mean, std, lo, hi = summarise_permutations(values, confidence)
    se = standard_error(terms, mean, n_perm)
    low, high = interval(mean, se, confidence)
    if valid.all():
        xmean = gcols.mean(axis=1)
    else:
        xmean = (gcols * valid.T[None]).sum(axis=1) / valid.sum(axis=1)[None]
    slope, sign = slope_and_sign(xmean, z0.astype(np.float64), sign_threshold)
    return PixelImportance(firsts, values, mean, std, lo, hi, slope, sign, (c, h, w), method, memory_plan,
                           se=se, interval_low=low, interval_high=high, groups=groups if grouped else None,
                           conditional=conditional)


def _output_width(model_fn, probe: np.ndarray, device) -> int:
    """d, the width of the function's output (one probe image)."""
    return int(infer(model_fn, probe, 1, device).shape[1])


def _add_terms(terms, pair, rows, src, sq, n_perm, n):
    """Add each changed row's squared change to the terms of both images of its pair: the row's
    own image and the image its group values came from (`inference`)."""
    g = pair // n_perm * n
    sq = sq.float()
    terms.index_add_(0, g + rows, sq)
    terms.index_add_(0, g + src, sq)


@torch.no_grad()
def _naive(model_fn, x, gcols, idx, perms, n_perm, batch_size, device, z0):
    """Reference: per group and permutation, replace the group's pixels of every image by those
    of the permuted image and encode all images again."""
    n = x.shape[0]
    xflat = x.reshape(n, -1)
    out = np.zeros((len(idx), n_perm, z0.shape[1]))
    terms = torch.zeros(len(idx) * n, z0.shape[1], device=device)
    every = torch.arange(n, device=device)
    for g, entries in enumerate(idx):
        for k in range(n_perm):
            perm = perms(g, k)
            xp = xflat.copy()
            xp[:, entries] = xflat[perm][:, entries]
            z = torch.as_tensor(infer(model_fn, xp.reshape(x.shape), batch_size, device), device=device)
            sq = (z - z0).double() ** 2
            out[g, k] = sq.mean(dim=0).cpu().numpy()
            _add_terms(terms, g * n_perm, every, torch.as_tensor(perm, device=device), sq, n_perm, n)
    return out, terms.view(len(idx), n, -1).cpu().numpy()


def _changed_rows(gcols, perms, n_perm):
    """Yield (pair index, rows, source rows, dx (rows, M)) of every (group, permutation) pair,
    group-major: the rows whose group values change, where they come from, and the change."""
    for g in range(gcols.shape[2]):
        col = gcols[:, :, g]
        for k in range(n_perm):
            perm = perms(g, k)
            dx = col[perm] - col
            rows = np.flatnonzero(np.any(dx != 0, axis=1))
            yield g * n_perm + k, rows, perm[rows], dx[rows]


def _chunks(gcols, perms, n_perm, batch_size):
    """Group the changed rows of all pairs into chunks of at most batch_size rows."""
    buf_pair, buf_rows, buf_src, buf_dx, size = [], [], [], [], 0
    for pair, rows, src, dx in _changed_rows(gcols, perms, n_perm):
        start = 0
        while start < len(rows):
            take = min(len(rows) - start, batch_size - size)
            buf_pair.append(np.full(take, pair, dtype=np.int64))
            buf_rows.append(rows[start:start + take])
            buf_src.append(src[start:start + take])
            buf_dx.append(dx[start:start + take])
            size += take
            start += take
            if size == batch_size:
                yield tuple(np.concatenate(b) for b in (buf_pair, buf_rows, buf_src, buf_dx))
                buf_pair, buf_rows, buf_src, buf_dx, size = [], [], [], [], 0
    if size:
        yield tuple(np.concatenate(b) for b in (buf_pair, buf_rows, buf_src, buf_dx))


def _accumulate(acc, pair, diff):
    acc.index_add_(0, pair, diff.double().square())


@torch.no_grad()
def _rows(model_fn, x, gcols, idx, perms, n_perm, batch_size, device, z0):
    """Re-encode only the images whose group values changed, many pairs per forward pass."""
    n, c, h, w = x.shape
    xflat = torch.as_tensor(x.reshape(n, -1))
    idx_t = torch.as_tensor(idx)
    acc = torch.zeros(len(idx) * n_perm, z0.shape[1], dtype=torch.float64, device=device)
    terms = torch.zeros(len(idx) * n, z0.shape[1], device=device)
    for pair, rows, src, dx in _chunks(gcols, perms, n_perm, batch_size):
        pair_t = torch.as_tensor(pair)
        rows_t = torch.as_tensor(rows)
        xb = xflat[rows_t].clone()
        entries = idx_t[pair_t // n_perm]
        for m in range(idx.shape[1]):
            xb[torch.arange(len(rows)), entries[:, m]] += torch.as_tensor(dx[:, m])
        z = model_fn(xb.view(-1, c, h, w).to(device)).float()
        diff = z - z0[rows_t.to(device)]
        _accumulate(acc, pair_t.to(device), diff)
        _add_terms(terms, pair_t.to(device), rows_t.to(device), torch.as_tensor(src, device=device),
                   diff.double().square(), n_perm, n)
    return (acc / n).view(len(idx), n_perm, -1).cpu().numpy(), terms.view(len(idx), n, -1).cpu().numpy()


@torch.no_grad()
def _rank1(split, x, gcols, idx, perms, n_perm, batch_size, device, z0):
    """Rank-k update of the first dense layer's pre-activation (k: the group's entries); only
    changed rows; batched."""
    linear, rest = split
    n = x.shape[0]
    a0 = torch.as_tensor(infer(linear, x.reshape(n, -1), batch_size, device), device=device)
    weight = linear.weight.detach().float().to(device)  # (h, C*H*W)
    acc = torch.zeros(len(idx) * n_perm, z0.shape[1], dtype=torch.float64, device=device)
    terms = torch.zeros(len(idx) * n, z0.shape[1], device=device)
    idx_t = torch.as_tensor(idx, device=device)
    for pair, rows, src, dx in _chunks(gcols, perms, n_perm, batch_size):
        pair_t = torch.as_tensor(pair, device=device)
        rows_t = torch.as_tensor(rows, device=device)
        dx_t = torch.as_tensor(dx, device=device)
        entries = idx_t[pair_t // n_perm]
        pre = a0[rows_t]
        for m in range(idx.shape[1]):
            pre = pre + dx_t[:, m:m + 1] * weight[:, entries[:, m]].T
        diff = rest(pre).float() - z0[rows_t]
        _accumulate(acc, pair_t, diff)
        _add_terms(terms, pair_t, rows_t, torch.as_tensor(src, device=device), diff.double().square(), n_perm, n)
    return (acc / n).view(len(idx), n_perm, -1).cpu().numpy(), terms.view(len(idx), n, -1).cpu().numpy()


# --------------------------------------------------------------------------------------------
# Latent dimension -> output, per class
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def latent_importance(
    output_fn: Callable[[torch.Tensor], torch.Tensor],
    z: np.ndarray,
    labels: np.ndarray,
    *,
    n_perm: int = 4,
    seed: int = 0,
    batch_size: int = 8192,
    device: str | torch.device | None = None,
    confidence: float = 0.95,
) -> LatentImportance:
    """Importance of each encoded dimension for the output (reconstruction), per class.

    For class c, dimension j and permutation k, z_j is shuffled across the class's samples
    (stream keyed by (seed, c, j, k)), the codes are mapped by `output_fn` (an
    autoencoder's `decode`, or a classifier's head), and the mean squared difference to the
    unpermuted output, over samples and output elements, is recorded.

    Parameters
    ----------
    output_fn : callable (B, d) -> (B, ...) on `device`.
    z : ndarray of shape (N, d), codes of the evaluation samples.
    labels : ndarray of shape (N,), integer class labels.

    Returns
    -------
    LatentImportance with arrays of shape (K, d) for the K classes present (sorted).
    """
    if n_perm < 1:
        raise ValueError(f"n_perm must be >= 1, got {n_perm}")
    z = np.asarray(z, dtype=np.float32)
    labels = np.asarray(labels)
    if z.ndim != 2 or len(labels) != len(z):
        raise ValueError(f"z must be (N, d) and labels (N,), got {z.shape} and {labels.shape}")
    device = torch.device(device) if device is not None else model_device(output_fn)
    classes = np.unique(labels)
    d = z.shape[1]
    values = np.zeros((len(classes), d, n_perm))
    for ci, cls in enumerate(classes):
        zc = z[labels == cls]
        m = len(zc)
        if m < 2:
            continue
        base = torch.as_tensor(infer(output_fn, zc, batch_size, device), device=device).reshape(m, -1)
        # Pairs (j, k) in chunks of whole copies of the class so memory stays bounded.
        per_chunk = max(1, batch_size // m)
        pairs = [(j, k) for j in range(d) for k in range(n_perm)]
        for s in range(0, len(pairs), per_chunk):
            chunk = pairs[s:s + per_chunk]
            zb = np.tile(zc, (len(chunk), 1))
            for q, (j, k) in enumerate(chunk):
                perm = permutation(seed, int(cls), (j << 32) | k, m, stream=LATENT_STREAM)
                zb[q * m:(q + 1) * m, j] = zc[perm, j]
            # Outputs stay on the device: no round trip through host memory per chunk.
            out = torch.cat([output_fn(b).float() for b in batches(zb, batch_size, device)])
            out = out.reshape(len(chunk), m, -1)
            mse = ((out - base[None]).double() ** 2).mean(dim=(1, 2)).cpu().numpy()
            for q, (j, k) in enumerate(chunk):
                values[ci, j, k] = mse[q]
    mean, std, lo, hi = summarise_permutations(values.transpose(0, 2, 1), confidence)
    return LatentImportance(classes, values, mean, std, lo, hi)
