"""Thumbnail sprite sheets: many small images tiled into a few large ones.

A browser decodes a handful of large images much faster than tens of thousands of small ones, and
a sheet no larger than `sheet_size` (4096 by default) fits every GPU's texture limit (WebGL
guarantees 4096; TensorBoard's projector stops at one 8192 sheet). Tiles are laid out row by row:
thumbnail t is on sheet t // per_sheet, at column (t % per_sheet) % columns, row
(t % per_sheet) // columns.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image


# The mime type of each sheet format (atlas.thumbnails.format).
MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


@dataclass
class SpriteSheets:
    """Encoded sheets and their layout.

    sheets : list of bytes, each a WebP, JPEG or PNG image (empty where the sheets are written
    apart: the folder layout's tiles); tile_height, tile_width : int
    (pixels); columns : int, tiles per sheet row; per_sheet : int, tiles per full sheet;
    counts : list of int, tiles on each sheet; mime : str ('image/webp', 'image/jpeg' or
    'image/png').
    """

    sheets: list[bytes]
    tile_height: int
    tile_width: int
    columns: int
    per_sheet: int
    counts: list[int]
    mime: str


def thumbnails_uint8(images: np.ndarray) -> np.ndarray:
    """Images (n, C, H, W) float in [0, 1] as (n, H, W) uint8 (one channel) or (n, H, W, 3)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"thumbnails need images of shape (n, 1 or 3, H, W), got {images.shape}")
    out = np.rint(np.clip(images, 0, 1) * 255).astype(np.uint8)
    return out[:, 0] if out.shape[1] == 1 else np.ascontiguousarray(out.transpose(0, 2, 3, 1))


# Thumbnails of tables and series: at most this many columns (time steps or features are averaged
# in equal bins), at least this many rows (a row is repeated), standardised values from -Z to Z.
SERIES_COLUMNS, SERIES_ROWS, SERIES_Z = 64, 16, 3.0


def standardised_thumbnails(values: np.ndarray) -> np.ndarray:
    """Tables' rows (n, 1, 1, F) and series' windows (n, 1, C, L) of standardised values as
    (n, 1, H, W) images in [0, 1] that a thumbnail can show: a heatmap of channels (or the
    features) down and time (or features) across, -3 to 3 train standard deviations from black to
    white; the columns averaged in at most SERIES_COLUMNS equal bins, the rows repeated to at
    least SERIES_ROWS pixels (a waveform of 3,200 steps becomes 16 x 64)."""
    x = np.asarray(values, np.float32)
    n, _, rows, cols = x.shape
    bins = min(cols, SERIES_COLUMNS)
    edges = np.linspace(0, cols, bins + 1).round().astype(int)
    pooled = np.add.reduceat(x, edges[:-1], axis=3) / np.diff(edges).astype(np.float32)
    repeat = -(-SERIES_ROWS // rows)
    pooled = np.repeat(pooled, repeat, axis=2)
    return np.clip((pooled + SERIES_Z) / (2 * SERIES_Z), 0, 1)


def sheet_columns(n: int, height: int, width: int, sheet_size: int) -> int:
    """Tiles per sheet row for `n` thumbnails of height x width pixels: a square-ish sheet just
    large enough, at most sheet_size pixels wide."""
    if height > sheet_size or width > sheet_size:
        raise ValueError(f"atlas.thumbnails.sheet_size {sheet_size} is smaller than one {height}x{width} thumbnail")
    return max(1, min(sheet_size // width, math.ceil(math.sqrt(max(n, 1) * height / width))))


def sprite_sheets(thumbs: np.ndarray, sheet_size: int = 4096, image_format: str = "png",
                  quality: int = 90, columns: int | None = None) -> SpriteSheets:
    """Tile thumbnails (n, H, W) or (n, H, W, 3) uint8 into sheets of at most sheet_size^2 pixels.

    A sheet holds up to `columns` x (sheet_size // H) tiles; by default small sets get a square-ish
    sheet just large enough (`sheet_columns`). `image_format` 'png' is lossless; 'webp' and 'jpeg' (lossy, with
    `quality`) are 2x and 1.7x smaller for Fashion-MNIST at quality 80 (WebP is slower to encode:
    about 9 s per 60,000 28x28 tiles). Encoding is deterministic (same bytes every run).
    """
    thumbs = np.asarray(thumbs, dtype=np.uint8)
    n, h, w = thumbs.shape[:3]
    columns = sheet_columns(n, h, w, sheet_size) if columns is None else columns
    rows_max = sheet_size // h
    per_sheet = columns * rows_max
    sheets, counts = [], []
    for start in range(0, n, per_sheet):
        tiles = thumbs[start:start + per_sheet]
        rows = math.ceil(len(tiles) / columns)
        padded = np.zeros((rows * columns,) + tiles.shape[1:], np.uint8)
        padded[:len(tiles)] = tiles
        grid = padded.reshape((rows, columns) + tiles.shape[1:]).swapaxes(1, 2)
        sheet = grid.reshape((rows * h, columns * w) + tiles.shape[3:])
        sheets.append(_encode(sheet, image_format, quality))
        counts.append(len(tiles))
    return SpriteSheets(sheets, h, w, columns, per_sheet, counts, MIME[image_format])


def _encode(sheet: np.ndarray, image_format: str, quality: int) -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(sheet)
    if image_format == "png":
        image.save(buf, "PNG")
    elif image_format == "jpeg":
        image.save(buf, "JPEG", quality=quality)
    elif image_format == "webp":
        image.save(buf, "WEBP", quality=quality)
    else:
        raise ValueError(f"atlas.thumbnails.format: 'webp', 'jpeg' or 'png', got {image_format!r}")
    return buf.getvalue()
