"""Pixel transforms of image batches (N, C, H, W): colour channels, size, PIL images to arrays.

uint8 batches stay uint8 (rounded) and float batches stay float32, so an 8-bit source is still
stored losslessly after these steps (`store.as_uint8`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from latent_atlas.data.store import DataError

# ITU-R BT.601 luma, the weights PIL uses for RGB -> L.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def set_channels(images: np.ndarray, color: str | None) -> np.ndarray:
    """Make (N, C, H, W) `images` gray (C=1, BT.601 luma) or rgb (C=3, gray repeated); None: unchanged."""
    c = images.shape[1]
    if color is None or (color == "gray" and c == 1) or (color == "rgb" and c == 3):
        return images
    if color == "rgb" and c == 1:
        return np.repeat(images, 3, axis=1)
    if color == "gray" and c == 3:
        gray = np.tensordot(_LUMA, images.astype(np.float32), axes=(0, 1))[:, None]
        return np.rint(gray).astype(np.uint8) if images.dtype == np.uint8 else gray
    raise DataError(f"cannot convert images with {c} channels to {color!r}")


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize (antialiased when shrinking) of (N, C, H, W) images to (N, C, size, size).

    uint8 stays uint8 (rounded), float stays float32.
    """
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images
    dtype = np.uint8 if images.dtype == np.uint8 else np.float32
    out = np.empty((n, c, size, size), dtype)
    for i in range(n):
        for j in range(c):
            out[i, j] = np.asarray(
                Image.fromarray(images[i, j].astype(dtype, copy=False)).resize(
                    (size, size), Image.Resampling.BILINEAR
                )
            )
    return out


def pil_to_array(
    img: Image.Image, color: str, size: int | None, center_crop: int | None, where: str
) -> np.ndarray:
    """A PIL image -> (C, H, W) uint8: centre square crop of side `center_crop`, resize, gray/rgb."""
    img = img.convert("RGB" if color == "rgb" else "L")
    if center_crop:
        w, h = img.size
        if center_crop > min(w, h):
            raise DataError(f"{where}: image is {w}x{h}, smaller than center_crop {center_crop}")
        left, top = (w - center_crop) // 2, (h - center_crop) // 2
        img = img.crop((left, top, left + center_crop, top + center_crop))
    if size and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def stack_images(parts: list[np.ndarray], where: str) -> np.ndarray:
    """Stack (C, H, W) images into (N, C, H, W); images of different sizes are a DataError at `where`."""
    shapes = sorted({p.shape for p in parts})
    if len(shapes) > 1:
        raise DataError(
            f"{where}: images differ in size ({', '.join('x'.join(map(str, s[1:])) for s in shapes[:4])}); "
            "set `size` to resize them to one size"
        )
    return np.stack(parts)
