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


@numba.njit(cache=True, inline="always")
def _changes(cols, i, m, dx):
    """dx = the change of a group's entries (cols (M, N)) in row i when it takes row m's values;
    whether any entry changed."""
    changed = False
    for ch in range(cols.shape[0]):
        dx[ch] = cols[ch, m] - cols[ch, i]
        if dx[ch] != 0.0:
            changed = True
    return changed


@numba.njit(parallel=True, cache=True)
def _kernel_linear(cols, wcols, perms, out, terms):
    """Identity rest: z' - z = sum_m dx_m * W[:, entry m] exactly, so
    out[g, k, j] = (1/N) sum_m,m2 w_mj w_m2j G[m, m2], with G the Gram matrix of the group's
    changes over the rows: O(N) per group and permutation for the score, without the per-row work
    of the ReLU rests (`_kernel_pairs`); the per-image terms (`inference`) take O(N d) more.

    cols (G, M, N) group entry values; wcols (G, M, d) first-layer weight columns; perms (G, K, N);
    terms (G, N, d) accumulates every image's terms. All float64.
    """
    n_grp, c, n = cols.shape
    n_perm = perms.shape[1]
    d = out.shape[2]
    for p in numba.prange(n_grp):
        dx = np.empty(c)
        e = np.empty(d)
        for k in range(n_perm):
            perm = perms[p, k]
            gram = np.zeros((c, c))
            if c == 1:
                col = cols[p, 0]
                g = 0.0
                for i in range(n):
                    dxi = col[perm[i]] - col[i]
                    g += dxi * dxi
                    if dxi != 0.0:
                        for j in range(d):
                            v = dxi * wcols[p, 0, j]
                            terms[p, i, j] += v * v
                            terms[p, perm[i], j] += v * v
                gram[0, 0] = g
            else:
                for i in range(n):
                    m = perm[i]
                    changed = _changes(cols[p], i, m, dx)
                    for ch in range(c):
                        for ch2 in range(c):
                            gram[ch, ch2] += dx[ch] * dx[ch2]
                    if changed:
                        for j in range(d):
                            e[j] = 0.0
                        for ch in range(c):
                            for j in range(d):
                                e[j] += dx[ch] * wcols[p, ch, j]
                        for j in range(d):
                            terms[p, i, j] += e[j] * e[j]
                            terms[p, m, j] += e[j] * e[j]
            for j in range(d):
                s = 0.0
                for ch in range(c):
                    for ch2 in range(c):
                        s += wcols[p, ch, j] * wcols[p, ch2, j] * gram[ch, ch2]
                out[p, k, j] = s / n


@numba.njit(parallel=True, cache=True)
def _kernel_pairs(cols, wcols, a0, h0, second, pre2, z2, relu1, relu2, use_second, perms, out, terms):
    """out[g, k, j] = mean_n (z'_nj - z_nj)^2 for rest = ReLU, then optionally (second, relu2?)
    (identity rests: `_kernel_linear`); terms (G, N, d) accumulates every image's terms.

    cols (G, M, N) group entry values; wcols (G, M, h) first-layer weight columns; a0 (N, h) base
    pre-activations; h0 (N, h) = relu1(a0); second (h, d) transposed weight of the second layer;
    pre2 (N, d) its base pre-activation and z2 (N, d) = relu2(pre2); perms (G, K, N). All float64.
    """
    n_grp, c, n = cols.shape
    n_perm = perms.shape[1]
    hdim = a0.shape[1]
    d = out.shape[2]
    for p in numba.prange(n_grp):
        dx = np.empty(c)
        e = np.empty(hdim)
        dz = np.empty(d)
        for k in range(n_perm):
            perm = perms[p, k]
            acc = np.zeros(d)
            for i in range(n):
                m = perm[i]
                if not _changes(cols[p], i, m, dx):
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
                        sq = e[u] * e[u]
                        acc[u] += sq
                        terms[p, i, u] += sq
                        terms[p, m, u] += sq
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
                    sq = diff * diff
                    acc[j] += sq
                    terms[p, i, j] += sq
                    terms[p, m, j] += sq
            for j in range(d):
                out[p, k, j] = acc[j] / n


# Groups per kernel call: their permutations (G x K x N int64) and terms stay in this many bytes.
KERNEL_CHUNK_BYTES = 1 << 27


@torch.no_grad()
def kernel_importance(linear: nn.Linear, plan: KernelPlan, x: np.ndarray, gcols: np.ndarray, idx: np.ndarray,
                      perms, n_perm: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean squared change per (group, permutation, output) through the compiled kernels, and
    every image's terms (`inference`).

    Parameters
    ----------
    linear : the model's first dense layer; plan : `kernel_plan` of the rest after it.
    x : ndarray of shape (N, C, H, W), float32 images.
    gcols : ndarray of shape (N, M, G), the values of the G (non-constant) groups' entries.
    idx : ndarray of shape (G, M), their flat indices ch * H * W + pixel (`engine.entry_indices`).
    perms : `engine.GroupPermutations` of the G groups.

    Returns
    -------
    ndarrays of shape (G, n_perm, d) float64 and (G, N, d) float32.
    """
    n = x.shape[0]
    weight = linear.weight.detach().double().cpu().numpy()
    wcols = np.ascontiguousarray(weight[:, idx].transpose(1, 2, 0))  # (G, M, h)
    cols64 = np.ascontiguousarray(gcols.transpose(2, 1, 0), dtype=np.float64)
    if plan.identity:  # no pre-activations needed
        d = weight.shape[0]
        fixed = ()
    else:
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
        fixed = tuple(np.ascontiguousarray(a) for a in (a0, h0, second, pre2, z2)) + (
            plan.relu1, plan.relu2, plan.second is not None)
    g_all = len(idx)
    out = np.zeros((g_all, n_perm, d))
    terms = np.zeros((g_all, n, d), dtype=np.float32)
    per_call = max(1, KERNEL_CHUNK_BYTES // (8 * n * (n_perm + d)))
    for g0 in range(0, g_all, per_call):
        g1 = min(g_all, g0 + per_call)
        chunk_terms = np.zeros((g1 - g0, n, d))
        args = (cols64[g0:g1], wcols[g0:g1]) + fixed + (perms.block(g0, g1, n_perm), out[g0:g1], chunk_terms)
        (_kernel_linear if plan.identity else _kernel_pairs)(*args)
        terms[g0:g1] = chunk_terms
    return out, terms
