"""Permutation importance of pixels and latent dimensions (Inglis & Parnell), exact and fast.

Pixel -> encoded dimension: shuffle pixel i across the N evaluation images (permutation k),
encode, and take the mean squared change of each encoded dimension j; V[i, j] is the mean over
the permutations, with their spread and a confidence interval. The direction of the effect is the
sign of the least-squares slope of z_j on x_i. Encoded dimension -> output, per class: shuffle
z_j across a class's samples, decode (autoencoders) or classify (classifiers), and take the mean
squared change of the output.

Every permutation is drawn from a stream keyed by (seed, pixel, permutation) alone (`permutation`),
so results never depend on the block of pixels a job computes, the number of jobs, the batch size
or the device. The engine has one naive reference loop (`method="naive"`) and fast paths that
give the same numbers to float tolerance:

- rows whose pixel value did not change under the permutation are skipped (their output cannot
  change), and constant pixels are skipped entirely (their importance is exactly 0);
- a dense model's first layer is updated by a rank-1 term, pre' = pre + W[:, i] * (x_perm - x),
  instead of being recomputed (`first_linear_split` of `latent_atlas.models`);
- when the rest of the encoder is identity, ReLU, or ReLU + Linear (+ ReLU) -- the paper's
  784 -> d encoder and one-hidden-layer networks -- a compiled kernel does the whole (pixel,
  permutation) pair in O(N * h) with float64 accumulation; with the identity the change is
  W[j, i] * (x_perm - x) exactly, so V[i, j] = W[j, i]^2 * mean((x_perm - x)^2);
- otherwise many (pixel, permutation) pairs are batched per forward pass, in chunks of
  `batch_size` rows so memory stays bounded, on CUDA when present.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numba
import numpy as np
import pandas as pd
import torch
from torch import nn

log = logging.getLogger("latent_atlas")

# Stream tags keep the pixel and the latent permutations independent for the same seed.
PIXEL_STREAM = 1
LATENT_STREAM = 2

METHODS = ("auto", "naive", "rows", "rank1", "kernel")

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


# --------------------------------------------------------------------------------------------
# Random streams
# --------------------------------------------------------------------------------------------
@numba.njit(cache=True, inline="always")
def _splitmix64(x):
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True)
def _fill_permutation(out, seed, tag, a, b):
    """Fisher-Yates shuffle of 0..n-1 into `out`, from a stream keyed by (seed, tag, a, b)."""
    n = out.shape[0]
    for i in range(n):
        out[i] = i
    state = _splitmix64(np.uint64(seed))
    state = _splitmix64(state ^ np.uint64(tag))
    state = _splitmix64(state ^ np.uint64(a))
    state = _splitmix64(state ^ np.uint64(b))
    for i in range(n - 1, 0, -1):
        state = state + np.uint64(0x9E3779B97F4A7C15)
        r = _splitmix64(state)
        u = np.float64(r >> np.uint64(11)) * (1.0 / 9007199254740992.0)
        j = np.int64(u * (i + 1))
        tmp = out[i]
        out[i] = out[j]
        out[j] = tmp


def permutation(seed: int, a: int, b: int, n: int, stream: int = PIXEL_STREAM) -> np.ndarray:
    """The permutation of range(n) keyed by (seed, stream, a, b): for pixels a = pixel, b = k.

    Returns an int64 array of shape (n,). The same key gives the same permutation everywhere.
    """
    if seed < 0 or a < 0 or b < 0:
        raise ValueError(f"permutation keys must be non-negative, got seed={seed}, a={a}, b={b}")
    out = np.empty(int(n), dtype=np.int64)
    _fill_permutation(out, int(seed), int(stream), int(a), int(b))
    return out


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
@dataclass
class PixelImportance:
    """Pixel -> output importance of a set of pixels.

    Attributes
    ----------
    pixels : ndarray of shape (P,), flat pixel index row * W + col (all channels shuffled together).
    per_permutation : ndarray of shape (P, K, d), mean squared change of each output per permutation.
    importance, std, ci_low, ci_high : ndarrays of shape (P, d): mean over the K permutations,
        their standard deviation (ddof=1; 0 for K=1) and a t confidence interval of the mean.
    slope : ndarray of shape (P, d), least-squares slope of output j on pixel i (0 if constant).
    sign : ndarray of shape (P, d) int8 in {-1, 0, 1}: sign of the slope where |slope| > threshold.
    image_shape : (C, H, W).
    method : the path that computed it.
    """

    pixels: np.ndarray
    per_permutation: np.ndarray
    importance: np.ndarray
    std: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    slope: np.ndarray
    sign: np.ndarray
    image_shape: tuple[int, int, int]
    method: str

    @property
    def directional(self) -> np.ndarray:
        return self.sign * self.importance


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


def _flatten_modules(module) -> list[nn.Module] | None:
    """The leaf modules of a (nested) nn.Sequential without Identities, or None if opaque."""
    if isinstance(module, nn.Identity):
        return []
    if isinstance(module, nn.Sequential):
        out: list[nn.Module] = []
        for m in module:
            sub = _flatten_modules(m)
            if sub is None:
                return None
            out += sub
        return out
    if isinstance(module, (nn.ReLU, nn.Linear)):
        return [module]
    return None


@dataclass
class _KernelPlan:
    """What the compiled kernel needs: rest = [relu?] or [relu, Linear(h->d), relu?]."""

    relu1: bool
    second: nn.Linear | None
    relu2: bool


def kernel_plan(rest) -> _KernelPlan | None:
    """Describe `rest` for the compiled kernel, or None if it is not identity/ReLU/ReLU+Linear."""
    mods = _flatten_modules(rest) if isinstance(rest, nn.Module) else None
    if mods is None:
        return None
    names = ["relu" if isinstance(m, nn.ReLU) else "linear" for m in mods]
    if names == []:
        return _KernelPlan(False, None, False)
    if names == ["relu"]:
        return _KernelPlan(True, None, False)
    if names in (["relu", "linear"], ["relu", "linear", "relu"]):
        return _KernelPlan(True, mods[1], len(names) == 3)
    return None


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------
def _device_of(fn) -> torch.device:
    """Where `fn` computes: the device of its module's parameters (a module, or a bound method
    such as `model.encode`), else the default device."""
    module = getattr(fn, "__self__", fn)
    if isinstance(module, nn.Module):
        for p in module.parameters():
            return p.device
    return default_device()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _as_images(images) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {x.shape}")
    if len(x) < 2:
        raise ValueError(f"permutation importance needs at least 2 images, got {len(x)}")
    return np.ascontiguousarray(x)


@torch.no_grad()
def _apply_batched(fn, x: np.ndarray | torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """fn over x in chunks of batch_size rows, on `device`; returns a float32 tensor there."""
    outs = []
    for s in range(0, len(x), batch_size):
        xb = torch.as_tensor(x[s:s + batch_size]).to(device)
        outs.append(fn(xb).float())
    return torch.cat(outs)


def pixel_importance(
    model_fn: Callable[[torch.Tensor], torch.Tensor],
    images: np.ndarray,
    pixels: Sequence[int] | None = None,
    *,
    n_perm: int = 4,
    seed: int = 0,
    split=None,
    method: str = "auto",
    batch_size: int = 8192,
    device: str | torch.device | None = None,
    sign_threshold: float = 0.0,
    confidence: float = 0.95,
) -> PixelImportance:
    """Permutation importance of pixels for each output dimension of `model_fn`.

    Parameters
    ----------
    model_fn : callable mapping a float32 tensor (B, C, H, W) to (B, d) (e.g. `model.encode`);
        it must already live on `device`.
    images : ndarray of shape (N, C, H, W), the evaluation images (the test split).
    pixels : flat pixel indices row * W + col to compute (default: all H * W).
    n_perm : permutations per pixel (the paper: 4).
    seed : base of the random streams; permutation k of pixel i depends on (seed, i, k) only.
    split : `(linear, rest)` from `model.first_linear_split(...)` enabling the rank-1 paths.
    method : "naive" (re-encode every image per pixel and permutation: the reference),
        "rows" (only changed rows, batched), "rank1" (rank-1 first layer, batched), "kernel"
        (compiled, CPU, identity/ReLU/ReLU+Linear rests) or "auto" (the fastest that applies).
    batch_size : rows per forward pass (bounds memory).
    device : torch device (default: the device of the function's module, else CUDA when
        available, else CPU).
    sign_threshold : |slope| at or below which the sign is 0.
    confidence : level of the t confidence interval of the mean over permutations.

    Returns
    -------
    PixelImportance
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if n_perm < 1:
        raise ValueError(f"n_perm must be >= 1, got {n_perm}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x = _as_images(images)
    n, c, h, w = x.shape
    hw = h * w
    pixels = np.arange(hw, dtype=np.int64) if pixels is None else np.asarray(pixels, dtype=np.int64)
    if pixels.ndim != 1 or (len(pixels) and (pixels.min() < 0 or pixels.max() >= hw)):
        raise ValueError(f"pixels must be flat indices in [0, {hw}) for images {h}x{w}")
    device = torch.device(device) if device is not None else _device_of(model_fn)
    xflat = x.reshape(n, c * hw)
    plan = kernel_plan(split[1]) if split is not None else None
    if method == "auto":
        if split is None:
            method = "rows"
        elif plan is not None and (device.type == "cpu" or (plan.second is None and not plan.relu1)):
            method = "kernel"
        else:
            method = "rank1"
    if method in ("rank1", "kernel") and split is None:
        raise ValueError(f"method {method!r} needs the model's first_linear_split (dense models)")
    if method == "kernel" and plan is None:
        raise ValueError("method 'kernel' needs rest = identity, ReLU or ReLU + Linear (+ ReLU)")

    z0 = _apply_batched(model_fn, x, batch_size, device)
    d = z0.shape[1]
    # Pixel columns (N, C, P) in image order: channel c of pixel i sits at c * hw + i.
    cols = np.stack([xflat[:, ch * hw + pixels] for ch in range(c)], axis=1)
    constant = np.all(cols.max(axis=0) == cols.min(axis=0), axis=0)
    active = np.flatnonzero(~constant)
    values = np.zeros((len(pixels), n_perm, d), dtype=np.float64)
    if len(active):
        args = (x, cols[:, :, active], pixels[active], n_perm, seed, batch_size, device, z0)
        if method == "naive":
            values[active] = _naive(model_fn, *args)
        elif method == "rows":
            values[active] = _rows(model_fn, *args)
        elif method == "rank1":
            values[active] = _rank1(split, *args)
        else:
            values[active] = _kernel(split, plan, *args)
    mean, std, lo, hi = summarise_permutations(values, confidence)
    slope, sign = slope_and_sign(cols.mean(axis=1), z0.double().cpu().numpy(), sign_threshold)
    return PixelImportance(pixels, values, mean, std, lo, hi, slope, sign, (c, h, w), method)


@torch.no_grad()
def _naive(model_fn, x, cols, pixels, n_perm, seed, batch_size, device, z0):
    """Reference: for each pixel and permutation, shuffle the pixel in all N images, re-encode."""
    n, c, h, w = x.shape
    out = np.zeros((len(pixels), n_perm, z0.shape[1]))
    for p, pix in enumerate(pixels):
        r, col = divmod(int(pix), w)
        for k in range(n_perm):
            perm = permutation(seed, int(pix), k, n)
            xp = x.copy()
            xp[:, :, r, col] = x[perm, :, r, col]
            z = _apply_batched(model_fn, xp, batch_size, device)
            out[p, k] = ((z - z0).double() ** 2).mean(dim=0).cpu().numpy()
    return out


def _changed_rows(cols, pixels, n_perm, seed):
    """Yield (pair index, rows, dx (rows, C)) of every (pixel, permutation) pair, pixel-major."""
    n = cols.shape[0]
    perm = np.empty(n, dtype=np.int64)
    for p, pix in enumerate(pixels):
        col = cols[:, :, p]
        for k in range(n_perm):
            _fill_permutation(perm, seed, PIXEL_STREAM, int(pix), k)
            dx = col[perm] - col
            rows = np.flatnonzero(np.any(dx != 0, axis=1))
            yield p * n_perm + k, rows, dx[rows]


def _chunks(cols, pixels, n_perm, seed, batch_size):
    """Group the changed rows of all pairs into chunks of at most batch_size rows."""
    buf_pair, buf_rows, buf_dx, size = [], [], [], 0
    for pair, rows, dx in _changed_rows(cols, pixels, n_perm, seed):
        start = 0
        while start < len(rows):
            take = min(len(rows) - start, batch_size - size)
            buf_pair.append(np.full(take, pair, dtype=np.int64))
            buf_rows.append(rows[start:start + take])
            buf_dx.append(dx[start:start + take])
            size += take
            start += take
            if size == batch_size:
                yield np.concatenate(buf_pair), np.concatenate(buf_rows), np.concatenate(buf_dx)
                buf_pair, buf_rows, buf_dx, size = [], [], [], 0
    if size:
        yield np.concatenate(buf_pair), np.concatenate(buf_rows), np.concatenate(buf_dx)


def _accumulate(acc, pair, diff):
    acc.index_add_(0, pair, diff.double().square())


@torch.no_grad()
def _rows(model_fn, x, cols, pixels, n_perm, seed, batch_size, device, z0):
    """Re-encode only the images whose pixel changed, many pairs per forward pass."""
    n, c, h, w = x.shape
    hw = h * w
    xflat = torch.as_tensor(x.reshape(n, c * hw))
    acc = torch.zeros(len(pixels) * n_perm, z0.shape[1], dtype=torch.float64, device=device)
    for pair, rows, dx in _chunks(cols, pixels, n_perm, seed, batch_size):
        pair_t = torch.as_tensor(pair)
        rows_t = torch.as_tensor(rows)
        xb = xflat[rows_t].clone()
        pix = torch.as_tensor(pixels)[pair_t // n_perm]
        for ch in range(c):
            xb[torch.arange(len(rows)), ch * hw + pix] += torch.as_tensor(dx[:, ch])
        z = model_fn(xb.view(-1, c, h, w).to(device)).float()
        _accumulate(acc, pair_t.to(device), z - z0[rows_t.to(device)])
    return (acc / n).view(len(pixels), n_perm, -1).cpu().numpy()


@torch.no_grad()
def _first_layer(linear: nn.Linear, x: np.ndarray, batch_size: int, device):
    n = len(x)
    return _apply_batched(linear, x.reshape(n, -1), batch_size, device)


@torch.no_grad()
def _rank1(split, x, cols, pixels, n_perm, seed, batch_size, device, z0):
    """Rank-1 update of the first dense layer's pre-activation; only changed rows; batched."""
    linear, rest = split
    n, c, h, w = x.shape
    hw = h * w
    a0 = _first_layer(linear, x, batch_size, device)
    weight = linear.weight.detach().float().to(device)  # (h, C*H*W)
    acc = torch.zeros(len(pixels) * n_perm, z0.shape[1], dtype=torch.float64, device=device)
    pixels_t = torch.as_tensor(pixels, device=device)
    for pair, rows, dx in _chunks(cols, pixels, n_perm, seed, batch_size):
        pair_t = torch.as_tensor(pair, device=device)
        rows_t = torch.as_tensor(rows, device=device)
        dx_t = torch.as_tensor(dx, device=device)
        pix = pixels_t[pair_t // n_perm]
        pre = a0[rows_t]
        for ch in range(c):
            pre = pre + dx_t[:, ch:ch + 1] * weight[:, ch * hw + pix].T
        _accumulate(acc, pair_t, rest(pre).float() - z0[rows_t])
    return (acc / n).view(len(pixels), n_perm, -1).cpu().numpy()


@numba.njit(parallel=True, cache=True)
def _kernel_linear(cols, wcols, seed, pixels, n_perm, out):
    """Identity rest: z' - z = sum_ch dx_ch * W[:, (ch, pixel)] exactly, so
    out[p, k, j] = (1/N) sum_ch,ch2 w_chj w_ch2j G[ch, ch2], with G the Gram matrix of the pixel's
    changes over the rows: O(N) per pixel and permutation, without the per-row work of the ReLU
    rests (`_kernel_pairs`).

    cols (P, C, N) pixel values; wcols (P, C, d) first-layer weight columns. All float64.
    """
    n_pix, c, n = cols.shape
    d = out.shape[2]
    for t in numba.prange(n_pix * n_perm):
        p = t // n_perm
        k = t % n_perm
        perm = np.empty(n, dtype=np.int64)
        _fill_permutation(perm, seed, 1, pixels[p], k)
        gram = np.zeros((c, c))
        if c == 1:
            col = cols[p, 0]
            g = 0.0
            for i in range(n):
                dx = col[perm[i]] - col[i]
                g += dx * dx
            gram[0, 0] = g
        else:
            dx = np.empty(c)
            for i in range(n):
                m = perm[i]
                for ch in range(c):
                    dx[ch] = cols[p, ch, m] - cols[p, ch, i]
                for ch in range(c):
                    for ch2 in range(c):
                        gram[ch, ch2] += dx[ch] * dx[ch2]
        for j in range(d):
            s = 0.0
            for ch in range(c):
                for ch2 in range(c):
                    s += wcols[p, ch, j] * wcols[p, ch2, j] * gram[ch, ch2]
            out[p, k, j] = s / n


@numba.njit(parallel=True, cache=True)
def _kernel_pairs(cols, wcols, a0, h0, second, pre2, z2, relu1, relu2, use_second, seed,
                  pixels, n_perm, out):
    """out[p, k, j] = mean_n (z'_nj - z_nj)^2 for rest = ReLU, then optionally (second, relu2?)
    (identity rests: `_kernel_linear`).

    cols (P, C, N) pixel values; wcols (P, C, h) first-layer weight columns; a0 (N, h) base
    pre-activations; h0 (N, h) = relu1(a0); second (h, d) transposed weight of the second layer;
    pre2 (N, d) its base pre-activation and z2 (N, d) = relu2(pre2). All float64.
    """
    n_pix, c, n = cols.shape
    hdim = a0.shape[1]
    d = out.shape[2]
    for t in numba.prange(n_pix * n_perm):
        p = t // n_perm
        k = t % n_perm
        perm = np.empty(n, dtype=np.int64)
        _fill_permutation(perm, seed, 1, pixels[p], k)
        acc = np.zeros(d)
        dx = np.empty(c)
        e = np.empty(hdim)
        dz = np.empty(d)
        for i in range(n):
            m = perm[i]
            changed = False
            for ch in range(c):
                dx[ch] = cols[p, ch, m] - cols[p, ch, i]
                if dx[ch] != 0.0:
                    changed = True
            if not changed:
                continue
            for u in range(hdim):
                e[u] = 0.0
            for ch in range(c):
                dxc = dx[ch]
                for u in range(hdim):
                    e[u] += dxc * wcols[p, ch, u]
            if relu1:
                for u in range(hdim):
                    v = a0[i, u] + e[u]
                    e[u] = (v if v > 0.0 else 0.0) - h0[i, u]
            if not use_second:
                for u in range(hdim):
                    acc[u] += e[u] * e[u]
                continue
            for j in range(d):
                dz[j] = 0.0
            for u in range(hdim):
                if e[u] != 0.0:
                    eu = e[u]
                    for j in range(d):
                        dz[j] += eu * second[u, j]
            for j in range(d):
                if relu2:
                    v = pre2[i, j] + dz[j]
                    diff = (v if v > 0.0 else 0.0) - z2[i, j]
                else:
                    diff = dz[j]
                acc[j] += diff * diff
        for j in range(d):
            out[p, k, j] = acc[j] / n


@torch.no_grad()
def _kernel(split, plan, x, cols, pixels, n_perm, seed, batch_size, device, z0):
    """Compiled CPU kernel for identity / ReLU / ReLU + Linear (+ ReLU) rests, float64."""
    linear, _ = split
    n, c, h, w = x.shape
    hw = h * w
    weight = linear.weight.detach().double().cpu().numpy()
    wcols = np.stack([weight[:, ch * hw + pixels].T for ch in range(c)], axis=1)
    cols64 = np.ascontiguousarray(cols.transpose(2, 1, 0), dtype=np.float64)
    if not plan.relu1 and plan.second is None:  # identity rest: no pre-activations needed
        out = np.zeros((len(pixels), n_perm, weight.shape[0]))
        _kernel_linear(cols64, np.ascontiguousarray(wcols), int(seed), pixels.astype(np.int64), n_perm, out)
        return out
    a0 = _first_layer(linear, x, batch_size, linear.weight.device).double().cpu().numpy()
    h0 = np.maximum(a0, 0.0) if plan.relu1 else a0
    if plan.second is not None:
        second = plan.second.weight.detach().double().cpu().numpy().T.copy()
        bias = plan.second.bias.detach().double().cpu().numpy()
        pre2 = h0 @ second + bias
        z2 = np.maximum(pre2, 0.0) if plan.relu2 else pre2
        d = second.shape[1]
    else:
        second = pre2 = z2 = np.zeros((1, 1))
        d = a0.shape[1]
    out = np.zeros((len(pixels), n_perm, d))
    _kernel_pairs(cols64, np.ascontiguousarray(wcols),
                  np.ascontiguousarray(a0), np.ascontiguousarray(h0), np.ascontiguousarray(second),
                  np.ascontiguousarray(pre2), np.ascontiguousarray(z2), plan.relu1, plan.relu2,
                  plan.second is not None, int(seed), pixels.astype(np.int64), n_perm, out)
    return out


# --------------------------------------------------------------------------------------------
# Latent dimension -> output, per class
# --------------------------------------------------------------------------------------------
@dataclass
class LatentImportance:
    """Encoded dimension -> output importance per class.

    Attributes
    ----------
    classes : ndarray of shape (K,), class labels.
    per_permutation : ndarray of shape (K, d, n_perm).
    importance, std, ci_low, ci_high : ndarrays of shape (K, d).
    """

    classes: np.ndarray
    per_permutation: np.ndarray
    importance: np.ndarray
    std: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray


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
    device = torch.device(device) if device is not None else _device_of(output_fn)
    classes = np.unique(labels)
    d = z.shape[1]
    values = np.zeros((len(classes), d, n_perm))
    for ci, cls in enumerate(classes):
        zc = z[labels == cls]
        m = len(zc)
        if m < 2:
            continue
        base = _apply_batched(output_fn, zc, batch_size, device).reshape(m, -1)
        zc_t = torch.as_tensor(zc, device=device)
        # Pairs (j, k) in chunks of whole copies of the class so memory stays bounded.
        per_chunk = max(1, batch_size // m)
        pairs = [(j, k) for j in range(d) for k in range(n_perm)]
        for s in range(0, len(pairs), per_chunk):
            chunk = pairs[s:s + per_chunk]
            zb = zc_t.repeat(len(chunk), 1)
            for q, (j, k) in enumerate(chunk):
                perm = permutation(seed, int(cls), (j << 32) | k, m, stream=LATENT_STREAM)
                zb[q * m:(q + 1) * m, j] = zc_t[torch.as_tensor(perm, device=device), j]
            out = _apply_batched(output_fn, zb, batch_size, device).reshape(len(chunk), m, -1)
            mse = ((out - base[None]).double() ** 2).mean(dim=(1, 2)).cpu().numpy()
            for q, (j, k) in enumerate(chunk):
                values[ci, j, k] = mse[q]
    mean, std, lo, hi = summarise_permutations(values.transpose(0, 2, 1), confidence)
    return LatentImportance(classes, values, mean, std, lo, hi)


# --------------------------------------------------------------------------------------------
# Blocks, frames and file helpers
# --------------------------------------------------------------------------------------------
def pixel_blocks(n_pixels: int, block_size: int) -> list[np.ndarray]:
    """Consecutive blocks of flat pixel indices: ceil(n_pixels / block_size) of them."""
    if block_size < 1:
        raise ValueError(f"importance.block_size must be >= 1, got {block_size}")
    return [np.arange(s, min(s + block_size, n_pixels)) for s in range(0, n_pixels, block_size)]


def pixel_frame(result: PixelImportance, output: str = "latent") -> pd.DataFrame:
    """Long table: one row per pixel and output dimension.

    Columns: output, pixel, row, col, dim, importance, std, ci_low, ci_high, slope, sign,
    directional (= sign * importance).
    """
    p, d = result.importance.shape
    w = result.image_shape[2]
    pix = np.repeat(result.pixels, d)
    return pd.DataFrame({
        "output": pd.Series([output] * (p * d), dtype="string") if p * d else pd.Series([], dtype="string"),
        "pixel": pix.astype(np.int64),
        "row": (pix // w).astype(np.int64),
        "col": (pix % w).astype(np.int64),
        "dim": np.tile(np.arange(d, dtype=np.int64), p),
        "importance": result.importance.ravel(),
        "std": result.std.ravel(),
        "ci_low": result.ci_low.ravel(),
        "ci_high": result.ci_high.ravel(),
        "slope": result.slope.ravel(),
        "sign": result.sign.ravel().astype(np.int8),
        "directional": result.directional.ravel().astype(np.float64),
    })


def latent_frame(result: LatentImportance, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Long table: one row per class and encoded dimension (class, class_name, dim, importance, std,
    ci_low, ci_high, rank), rank 1 = most important dimension of the class."""
    k, d = result.importance.shape
    names = [str(class_names[int(c)]) if class_names is not None and int(c) < len(class_names)
             else str(int(c)) for c in result.classes]
    order = np.argsort(-result.importance, axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[np.arange(k)[:, None], order] = np.arange(1, d + 1)[None, :]
    return pd.DataFrame({
        "class": np.repeat(result.classes.astype(np.int64), d),
        "class_name": pd.Series(np.repeat(names, d), dtype="string"),
        "dim": np.tile(np.arange(d, dtype=np.int64), k),
        "importance": result.importance.ravel(),
        "std": result.std.ravel(),
        "ci_low": result.ci_low.ravel(),
        "ci_high": result.ci_high.ravel(),
        "rank": rank.ravel().astype(np.int64),
    })


# --------------------------------------------------------------------------------------------
# Workflow entry points: files in, tables out
# --------------------------------------------------------------------------------------------
DEFAULTS = {
    "n_perm": 4, "block_size": 64, "batch_size": 8192, "max_samples": None, "method": "auto",
    "device": "auto", "sign_threshold": 0.0, "confidence": 0.95, "classifier_logits": True,
}


def settings_of(section: dict | None) -> dict:
    """The `importance:` config section with defaults filled in."""
    return {**DEFAULTS, **(section or {})}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return default_device()
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("importance.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def primary_output(model) -> str:
    return "latent" if model.kind == "autoencoder" else "features"


def evaluation_set(data_path, max_samples: int | None, seed: int):
    """Test-split images (N, C, H, W), labels (N,) and class names; a seeded subset if asked."""
    from .data import load_dataset

    ds = load_dataset(data_path).test()
    if len(ds) < 2:
        raise ValueError(f"{data_path}: the test split has {len(ds)} images; importance needs >= 2")
    idx = np.arange(len(ds))
    if max_samples is not None and max_samples < len(ds):
        rng = np.random.default_rng([int(seed), LATENT_STREAM + 1])
        idx = np.sort(rng.choice(len(ds), size=int(max_samples), replace=False))
    return ds.images[idx], ds.labels[idx], list(ds.class_names)


def block_importance(data_path, model_path, block: int, settings: dict, seed: int) -> pd.DataFrame:
    """Pixel importance of one block of pixels of a model (one shard), as a long table."""
    from .models import load_model

    s = settings_of(settings)
    device = resolve_device(s["device"])
    model = load_model(model_path, map_location=device)
    images, _, _ = evaluation_set(data_path, s["max_samples"], seed)
    _, h, w = images.shape[1:]
    blocks = pixel_blocks(h * w, s["block_size"])
    if not 0 <= block < len(blocks):
        raise ValueError(f"block {block} out of range: {h}x{w} images in blocks of "
                         f"{s['block_size']} give {len(blocks)} blocks")
    outputs = [primary_output(model)]
    if model.kind == "classifier" and s["classifier_logits"]:
        outputs.append("logits")
    frames = []
    for output in outputs:
        method = s["method"]
        split = model_split(model, output)
        if split is None and method in ("rank1", "kernel"):
            method = "rows"  # conv models have no dense first layer
        start = time.perf_counter()
        result = pixel_importance(
            output_function(model, output), images, blocks[block], n_perm=s["n_perm"], seed=seed,
            split=split, method=method, batch_size=s["batch_size"], device=device,
            sign_threshold=s["sign_threshold"], confidence=s["confidence"])
        log.info("block %d (%d pixels), output %s, %d images on %s: method %s, %.2f s", block,
                 len(blocks[block]), output, len(images), device, result.method,
                 time.perf_counter() - start)
        frames.append(pixel_frame(result, output))
    return pd.concat(frames, ignore_index=True)


def gather_blocks(paths: Sequence, output: str) -> pd.DataFrame:
    """Concatenate shard tables for one output, sorted by (pixel, dim), without the output column."""
    from .io import read_parquet

    frames = [read_parquet(p) for p in paths]
    df = pd.concat(frames, ignore_index=True)
    df = df[df["output"] == output].drop(columns="output")
    if df.duplicated(["pixel", "dim"]).any():
        raise ValueError("importance shards overlap: a (pixel, dim) appears twice")
    return df.sort_values(["pixel", "dim"], kind="stable").reset_index(drop=True)


@torch.no_grad()
def model_latent_importance(data_path, model_path, settings: dict, seed: int) -> pd.DataFrame:
    """Encoded dimension -> output importance per class of a model, as a long table.

    Autoencoders: shuffle z_j within a class, decode, MSE against the unpermuted reconstruction.
    Classifiers: shuffle feature j within a class, apply the class layer (`model.head`), MSE of
    the class outputs.
    """
    from .models import load_model

    s = settings_of(settings)
    device = resolve_device(s["device"])
    model = load_model(model_path, map_location=device)
    images, labels, class_names = evaluation_set(data_path, s["max_samples"], seed)
    encode = output_function(model, primary_output(model))
    z = _apply_batched(encode, images, s["batch_size"], device).cpu().numpy()
    if model.kind == "autoencoder":
        out_fn = model.decode
    else:
        if not hasattr(model, "head"):
            raise ValueError(f"{model_path}: classifier has no `head` (class layer on the features)")
        out_fn = model.head
    result = latent_importance(out_fn, z, labels, n_perm=s["n_perm"], seed=seed,
                               batch_size=s["batch_size"], device=device,
                               confidence=s["confidence"])
    return latent_frame(result, class_names)


def shard_outputs(paths: Sequence) -> list[str]:
    """The outputs a model's shards hold, primary first ('latent' or 'features', then 'logits')."""
    from .io import read_parquet

    names = sorted(set(read_parquet(paths[0], columns=["output"])["output"]))
    return sorted(names, key=lambda o: (o == "logits", o))
