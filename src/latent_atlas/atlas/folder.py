"""The folder atlas: the atlas page with its data in script files beside it, for atlases too large
for one file (`atlas.layout`). It opens from the file system with no server.

Layout (results/figures/{dataset}/{model}/atlas/):
    index.html          the page (templates/atlas.html with META.layout "folder")
    data/NAME-PART.js   `ATLAS_DATA("NAME", PART, "<base64>")`: rows of array NAME, as
                        `page.encode_array` writes them (gzip of little-endian bytes); a part holds
                        at most CHUNK_BYTES raw bytes (about 8 MB of base64)
    tiles/G.js          `ATLAS_TILE(G, "data:image/webp;base64,...")`: the sprite sheet of tile G;
                        each map has tiles of its own, numbered on from the previous map's

The page loads its data by inserting `<script src>` elements: they work under file://, where fetch
does not. A sheet travels as a data: URL inside a script, not as an image file: an image decoded
from a data: URL can be drawn to a canvas and uploaded to WebGL, while an `<img>` loaded from a
file:// URL taints the canvas in Chromium (every file is its own origin) and Firefox (with
security.fileuri.strict_origin_policy), so that its pixels could neither be read back nor uploaded.

Map coordinates travel as uint16 per map axis (x = lo + code (hi - lo) / 65535). For each map,
the points with a thumbnail are ordered along a quadtree (Z-order) of that map's codes and cut
into runs of `atlas.tile_points`, one sprite sheet each: a zoomed-in view of any map needs few
tiles (with the first map's tiles alone, a zoomed t-SNE view of 1,000,000 points touched 33-72
tiles of 1,024). Each thumbnail is thus stored once per map (3x the bytes of one tile set).
"""

from __future__ import annotations

import base64
import html
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from latent_atlas.atlas.page import encode_array, fill_template, viridis_table

# Raw bytes per data part: base64 of at most this much (gzip does not grow it) stays under 8 MB.
CHUNK_BYTES = 6 * 2 ** 20

# Base64 bytes of a thumbnail per pixel value (height x width x channels) by sheet format, from
# the 70,000 Fashion-MNIST thumbnails at quality 80 (WebP 18.5 MB as base64; JPEG and PNG from
# their raw sizes, 20 and 28 MB, times 4/3).
THUMBNAIL_BYTES_PER_VALUE = {"webp": 0.35, "jpeg": 0.5, "png": 0.7}


def estimated_page_mb(n: int, d: int, k: int, maps: int, thumbnails: int, values: int, image_format: str) -> float:
    """Megabytes (1e6 bytes) of the single-file page of `n` points with `d` latent dimensions, `k`
    neighbours and `maps` maps, `thumbnails` of them with a thumbnail of `values` pixel values
    (height x width x channels): n (4 k + d + 9 maps + 17) + thumbnails x values x b(format),
    b = THUMBNAIL_BYTES_PER_VALUE. The per-point bytes are those of the arrays as base64 of gzip
    (neighbour indices 4 k, latent codes d, coordinates and shared counts 9 per map; ids, labels,
    density, prediction or error, thumbnail index 17); attribute and anomaly arrays are left out."""
    arrays = n * (4 * k + d + 9 * maps + 17)
    return (arrays + thumbnails * values * THUMBNAIL_BYTES_PER_VALUE[image_format]) / 1e6


def page_layout(layout: str, max_page_mb: float, estimate_mb: float) -> str:
    """"single" or "folder": `layout` (atlas.layout) itself, or for "auto" the folder where the
    estimated single page (`estimated_page_mb`) exceeds `max_page_mb` (atlas.max_page_mb)."""
    if layout not in ("single", "folder", "auto"):
        raise ValueError(f"atlas.layout: 'single', 'folder' or 'auto', got {layout!r}")
    if layout != "auto":
        return layout
    return "folder" if estimate_mb > max_page_mb else "single"


def quantise_coordinates(xy: np.ndarray) -> tuple[np.ndarray, list[float], list[float]]:
    """Map coordinates (n, 2) as uint16 codes per axis: code = round(65535 (v - lo) / (hi - lo)).

    Returns (codes (n, 2) uint16, lo [x, y], hi [x, y]); the page reads x = lo + code (hi - lo) /
    65535. A constant axis gets code 0.
    """
    xy = np.asarray(xy, np.float64)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.rint((xy - lo) / span * 65535).astype(np.uint16), lo.tolist(), hi.tolist()


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """16-bit integers with a zero bit inserted above each bit (bit b moves to bit 2 b)."""
    v = v.astype(np.uint64)
    for shift, mask in ((8, 0x00FF00FF), (4, 0x0F0F0F0F), (2, 0x33333333), (1, 0x55555555)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def quadtree_order(codes: np.ndarray) -> np.ndarray:
    """The order (n,) int64 of points with uint16 codes (n, 2) along a quadtree's leaves (Z-order:
    the interleaved bits of x and y); ties keep their index order."""
    codes = np.asarray(codes)
    key = _spread_bits(codes[:, 0]) | (_spread_bits(codes[:, 1]) << np.uint64(1))
    return np.argsort(key, kind="stable")


def tile_runs(points: np.ndarray, codes: np.ndarray, tile_points: int) -> list[np.ndarray]:
    """One map's thumbnail tiles: `points` (indices with a thumbnail) in `quadtree_order` of their
    codes (n, 2) on that map, cut into runs of at most `tile_points` (atlas.tile_points)."""
    ordered = np.asarray(points)[quadtree_order(np.asarray(codes)[points])]
    return [ordered[start:start + tile_points] for start in range(0, len(ordered), tile_points)]


# Pixels of one tile's sprite sheet at most, and thumbnails per tile at most, of atlas.tile_points auto.
TILE_PIXELS, TILE_POINTS_MAX = 2 ** 20, 1024


def tile_size(tile_points: int | str, height: int, width: int) -> int:
    """Thumbnails per tile: `tile_points` (atlas.tile_points), or for "auto" as many thumbnails of
    height x width pixels as fill TILE_PIXELS, at most TILE_POINTS_MAX (28 x 28: 1,024; 64 x 64: 256)."""
    if tile_points != "auto":
        return int(tile_points)
    return max(1, min(TILE_POINTS_MAX, TILE_PIXELS // (int(height) * int(width))))


def data_chunks(name: str, values: np.ndarray) -> tuple[dict, list[tuple[str, str]]]:
    """Array `values` split by rows into parts of at most CHUNK_BYTES raw bytes: (its description
    for META: type, shape, parts; [(path in the folder, script text)]), `data/NAME-PART.js`."""
    values = np.ascontiguousarray(values)
    row_bytes = max(1, values[:1].nbytes)
    rows = max(1, CHUNK_BYTES // row_bytes)
    scripts = []
    for part, start in enumerate(range(0, max(1, len(values)), rows)):
        described, text = encode_array(values[start:start + rows])
        scripts.append((f"data/{name}-{part}.js", f'ATLAS_DATA("{name}",{part},"{text}");\n'))
    return {"type": described["type"], "shape": list(values.shape), "parts": len(scripts)}, scripts


def folder_document(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                    scales: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                    sprites: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """The folder layout's page (index.html) and its data scripts [(path, text)] (`atlas.folder`).

    meta : as `atlas_document`. arrays : as `atlas_document`, with the coordinates `xy_<method>`
    as uint16 codes (`folder.quantise_coordinates`) whose (lo, hi) `scales` gives by array name.
    sprites : META.sprites (`sprite_description` of the tiles' layout: `counts` per tile).
    """
    described, scripts = {}, []
    for name in sorted(arrays):
        described[name], parts = data_chunks(name, arrays[name])
        if name in scales:
            described[name]["lo"], described[name]["hi"] = (list(map(float, v)) for v in scales[name])
        scripts.extend(parts)
    full = {**meta, "layout": "folder", "arrays": described, "viridis": viridis_table(), "sprites": dict(sprites)}
    return fill_template(full, "", "folder"), scripts


def tile_script(tile: int, sheet: bytes, mime: str) -> str:
    """The script of tile `tile` (tiles/T.js): its encoded sprite sheet as a data: URL."""
    return f'ATLAS_TILE({tile},"data:{mime};base64,{base64.b64encode(sheet).decode("ascii")}");\n'


def redirect_page(target: str) -> str:
    """A small page that opens `target` (a relative URL): a meta refresh and a link."""
    url = html.escape(target, quote=True)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="refresh" content="0; url={url}">\n<title>Latent atlas</title>\n</head>\n'
            f'<body><p>The atlas is <a href="{url}">{url}</a>.</p></body>\n</html>\n')


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; on success it replaces `path` (a rename, so
    no reader and no Snakemake `directory()` output ever sees a partial folder). On an exception
    the temporary folder is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        for folder in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            os.chmod(folder, 0o755)  # mkdtemp makes the folder private; results are meant to be read
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
