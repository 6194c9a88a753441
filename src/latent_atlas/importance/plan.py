"""The shard plan of permutation importance: image shape and pixel blocks of a dataset file.

Torch-free and numba-free, so the checkpoint job that writes the plan starts in a fraction of a
second.
"""

from __future__ import annotations

import zipfile

import numpy as np


def n_blocks(n_pixels: int, block_size: int) -> int:
    return -(-int(n_pixels) // int(block_size))


def pixel_blocks(n_pixels: int, block_size: int) -> list[np.ndarray]:
    """Consecutive blocks of flat pixel indices: `n_blocks(n_pixels, block_size)` of them."""
    if block_size < 1:
        raise ValueError(f"importance.block_size must be >= 1, got {block_size}")
    return [np.arange(s, min(s + block_size, n_pixels)) for s in range(0, n_pixels, block_size)]


def npz_image_shape(path) -> tuple[int, int, int]:
    """(C, H, W) of the `images` array of a dataset .npz, read from its header only."""
    with zipfile.ZipFile(path) as zf, zf.open("images.npy") as fh:
        major, _ = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if major == 1
                       else np.lib.format.read_array_header_2_0)
        shape, _, _ = read_header(fh)
    if len(shape) != 4:
        raise ValueError(f"{path}: images must have shape (N, C, H, W), got {shape}")
    return tuple(int(v) for v in shape[1:])


def plan(data_path, block_size: int) -> dict:
    """Image shape and pixel blocks of a dataset file (the shard plan of one model)."""
    c, h, w = npz_image_shape(data_path)
    return {"channels": c, "height": h, "width": w, "block_size": int(block_size),
            "n_blocks": n_blocks(h * w, block_size)}
