"""The random permutations of permutation importance, each drawn from a stream keyed by its use.

Permutation k of pixel i is keyed by (seed, PIXEL_STREAM, i, k) alone, so results never depend
on the block of pixels a job computes, the number of jobs, the batch size or the device. The
generator is splitmix64 (compiled with numba, so the compiled kernels draw the same permutations
as Python code does).
"""

from __future__ import annotations

import numba
import numpy as np

# Stream tags keep the pixel and the latent permutations independent for the same seed.
PIXEL_STREAM = 1
LATENT_STREAM = 2


@numba.njit(cache=True, inline="always")
def _splitmix64(x):
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True)
def fill_permutation(out, seed, tag, a, b):
    """Fisher-Yates shuffle of 0..n-1 into `out` (int64, shape (n,)), from the stream keyed by
    (seed, tag, a, b)."""
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
    fill_permutation(out, int(seed), int(stream), int(a), int(b))
    return out
