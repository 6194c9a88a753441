"""Compiled CPU kernels of pixel importance for dense encoders with simple rests (float64).

After the first dense layer `linear` (pre-activation a = W x + b), a model's `rest` that is the
identity, a ReLU, or ReLU + Linear (+ ReLU) -- the paper's 784 -> d encoder and one-hidden-layer
networks -- lets a compiled kernel do a whole (pixel, permutation) pair in O(N * h): shuffling
pixel i changes a by W[:, i] * (x_perm - x) (rank 1), and the rest is evaluated only where that
change is non-zero. With the identity the change of z_j is W[j, i] * (x_perm - x) exactly, so
V[i, j] = W[j, i]^2 * mean((x_perm - x)^2), O(N) per pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch
from torch import nn

from latent_atlas.devices import infer
from latent_atlas.importance.streams import PIXEL_STREAM, fill_permutation


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
class KernelPlan:
    """What the compiled kernel needs: rest = [relu?] or [relu, Linear(h->d), relu?]."""

    relu1: bool
    second: nn.Linear | None
    relu2: bool

    @property
    def identity(self) -> bool:
        return not self.relu1 and self.second is None


def kernel_plan(rest) -> KernelPlan | None:
    """Describe `rest` for the compiled kernel, or None if it is not identity/ReLU/ReLU+Linear."""
    mods = _flatten_modules(rest) if isinstance(rest, nn.Module) else None
    if mods is None:
        return None
    names = ["relu" if isinstance(m, nn.ReLU) else "linear" for m in mods]
    if names == []:
        return KernelPlan(False, None, False)
    if names == ["relu"]:
        return KernelPlan(True, None, False)
    if names in (["relu", "linear"], ["relu", "linear", "relu"]):
        return KernelPlan(True, mods[1], len(names) == 3)
    return None


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
        fill_permutation(perm, seed, PIXEL_STREAM, pixels[p], k)
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
        fill_permutation(perm, seed, PIXEL_STREAM, pixels[p], k)
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
def kernel_importance(linear: nn.Linear, plan: KernelPlan, x: np.ndarray, cols: np.ndarray,
                      pixels: np.ndarray, n_perm: int, seed: int, batch_size: int) -> np.ndarray:
    """Mean squared change per (pixel, permutation, output) through the compiled kernels.

    Parameters
    ----------
    linear : the model's first dense layer; plan : `kernel_plan` of the rest after it.
    x : ndarray of shape (N, C, H, W), float32 images.
    cols : ndarray of shape (N, C, P), the values of the P (non-constant) pixels.
    pixels : ndarray of shape (P,), their flat indices row * W + col.

    Returns
    -------
    ndarray of shape (P, n_perm, d), float64.
    """
    n, c, h, w = x.shape
    hw = h * w
    weight = linear.weight.detach().double().cpu().numpy()
    wcols = np.stack([weight[:, ch * hw + pixels].T for ch in range(c)], axis=1)
    cols64 = np.ascontiguousarray(cols.transpose(2, 1, 0), dtype=np.float64)
    if plan.identity:  # no pre-activations needed
        out = np.zeros((len(pixels), n_perm, weight.shape[0]))
        _kernel_linear(cols64, np.ascontiguousarray(wcols), int(seed), pixels.astype(np.int64), n_perm, out)
        return out
    a0 = infer(linear, x.reshape(n, -1), batch_size).astype(np.float64)
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
