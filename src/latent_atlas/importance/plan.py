"""The shard plan of permutation importance: image shape, pixel groups and their blocks of a
dataset store.

Torch-free and numba-free, so the checkpoint job that writes the plan starts in a fraction of a
second (superpixels read the training images once, chunk by chunk, for their mean).
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


def mean_training_image(data_path) -> np.ndarray:
    """The mean image (C, H, W) float64 of a dataset store's training split, one chunk at a time."""
    from latent_atlas.data.store import float_chunks, load_dataset

    images = load_dataset(data_path).train().images
    total = np.zeros(images.shape[1:])
    for chunk in float_chunks(images):
        total += chunk.sum(axis=0, dtype=np.float64)
    return total / max(len(images), 1)


def plan(data_path, block_size: int, groups: str = "pixel", patch: dict | None = None,
         superpixel: dict | None = None) -> dict:
    """Image shape, groups (`importance.groups`) and blocks of `block_size` groups of a dataset
    store (the shard plan of one model's analysis). Per-pixel plans name no groups (group i is
    pixel i); others list each group's flat pixel indices."""
    from latent_atlas.importance.groups import make_groups

    c, h, w = image_shape(data_path)
    out = {"channels": c, "height": h, "width": w, "block_size": int(block_size), "groups": groups}
    if groups == "pixel":
        return {**out, "n_groups": h * w, "n_blocks": n_blocks(h * w, block_size)}
    if groups == "patch":
        layout = make_groups(groups, h, w, patch_size=patch["size"], patch_stride=patch["stride"])
    else:
        layout = make_groups(groups, h, w, n_segments=superpixel["n_segments"],
                             compactness=superpixel["compactness"], mean_image=mean_training_image(data_path))
    return {**out, "patch": patch if groups == "patch" else None,
            "superpixel": superpixel if groups == "superpixel" else None,
            "n_groups": len(layout), "n_blocks": n_blocks(len(layout), block_size),
            "members": [g.tolist() for g in layout]}


def plan_groups(plan_dict: dict) -> list[np.ndarray] | None:
    """The groups of a plan (None: each pixel alone)."""
    members = plan_dict.get("members")
    return None if members is None else [np.asarray(g, dtype=np.int64) for g in members]


def describe(plan_dict: dict, permutation: str = "marginal") -> str:
    """A short name of an analysis for tables and figures, e.g. "pixels", "4x4 patches",
    "superpixels (48)", "pixels, conditional"."""
    g = plan_dict.get("groups", "pixel")
    if g == "patch":
        size, stride = plan_dict["patch"]["size"], plan_dict["patch"]["stride"]
        name = f"{size}x{size} patches" + (f", stride {stride}" if stride and stride != size else "")
    elif g == "superpixel":
        name = f"superpixels ({plan_dict['n_groups']})"
    else:
        name = "pixels"
    return name + (", conditional" if permutation == "conditional" else "")
