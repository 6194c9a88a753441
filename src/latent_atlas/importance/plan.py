"""The shard plan of permutation importance: image shape and pixel blocks of a dataset store.

Torch-free and numba-free, so the checkpoint job that writes the plan starts in a fraction of a
second.
"""

from __future__ import annotations

import numpy as np

from latent_atlas.data.store import image_shape


def n_blocks(n_pixels: int, block_size: int) -> int:
    return -(-int(n_pixels) // int(block_size))


def pixel_blocks(n_pixels: int, block_size: int) -> list[np.ndarray]:
    """Consecutive blocks of flat pixel indices: `n_blocks(n_pixels, block_size)` of them."""
    if block_size < 1:
        raise ValueError(f"importance.block_size must be >= 1, got {block_size}")
    return [np.arange(s, min(s + block_size, n_pixels)) for s in range(0, n_pixels, block_size)]


def plan(data_path, block_size: int) -> dict:
    """Image shape and pixel blocks of a dataset store (the shard plan of one model), from the
    images' file header."""
    c, h, w = image_shape(data_path)
    return {"channels": c, "height": h, "width": w, "block_size": int(block_size),
            "n_blocks": n_blocks(h * w, block_size)}
