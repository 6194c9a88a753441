"""Images with known factors of variation (the `synthetic_factors` source): dSprites-like shapes on
a full grid of factor values, a test bed for disentanglement scores. The images are drawn here;
they stand for no real image set (faces or otherwise), only for factors that are known exactly.

Factors, in this order: `shape` (square, ellipse, heart, or a subset in the configured order),
`scale` (0.5..1 of the largest size, evenly spaced; one value: 1), `rotation` (0..360 degrees,
360 excluded, or over a smaller `rotation_span`), `x` and `y` (the shape's centroid, evenly spaced over the positions that keep the
largest shape inside the image at any rotation; one value: the centre). Every combination occurs
once; a sample's id is its position in the grid, C-order over the factors (`FactorGrid.ids`).
dSprites' own grid is 3 x 6 x 40 x 32 x 32 = 737,280 images at 64x64.

Each shape is defined about its area centroid with circumradius 1 (so a turn keeps it inside the
disc of radius `scale * MAX_RADIUS * size` pixels) and rotated about that centroid, counter-
clockwise on screen; at rotation 0 the ellipse's long axis is horizontal and the heart's tip
points down. As in dSprites, a square turned by 90 degrees and an ellipse turned by 180 are the
same image: rotation is identifiable only modulo the shape's symmetry (90 degrees for squares,
180 for ellipses, 360 for hearts), which caps what any disentanglement score can credit to it.
A full turn also has no direction: the first and last rotations are neighbours, so no straight
line through a latent space can run from one to the other. A `rotation_span` below the smallest
symmetry (e.g. 0..90 degrees excluded) makes rotation an ordered factor, identifiable for every
shape, which a linear attribute direction or a traversal along it can then show turning.

Rendering is exact and deterministic: each pixel is the share of `SUPERSAMPLE` x `SUPERSAMPLE`
sample points inside the shape (an inside test of the rotated, scaled implicit shape), rounded to
0..255. A sample point's test uses only its own image's factor values, with the sines and cosines
taken from one table of the rotation values, so an image is the same bit for bit whether it is
rendered alone, in any batch, or in any worker process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

SHAPES = ("square", "ellipse", "heart")
FACTORS = ("shape", "scale", "rotation", "x", "y")
DEFAULT_SIZE = 64  # dSprites' image side; the source's size where `size` is not set
MAX_RADIUS = 0.2  # circumradius of the largest shape, as a share of the image side
MIN_SCALE = 0.5  # dSprites: scales 0.5..1 of the largest size
MIN_RADIUS_PX = 2.0  # the smallest shape must be at least 4 pixels across to be drawn at all
SUPERSAMPLE = 4  # sample points per pixel along each axis (17 coverage levels)
# Sample points per vectorised pass (~2 MB per float64 temporary): measured at 64x64, passes of this
# size (20 images) render 2x faster than passes of a thousand images, whose temporaries leave the cache.
PASS_SAMPLES = 1 << 18

_ELLIPSE_MINOR = 0.5  # semi-minor axis; semi-major 1
_SQUARE_HALF = 1 / math.sqrt(2)  # half the side of a square with circumradius 1
# The heart: a square standing on a corner, |x| + |y| <= d, with a disc on each upper edge (centre
# at the edge's midpoint, radius half the edge, so each passes through the edge's ends). Its area
# centroid lies k*d above the square's centre, k = (pi/8 + 1/6) / (1 + pi/4) = 0.3133; the tip,
# (1 + k) d from the centroid, is the farthest point (the lobes reach 1.2408 d), so d = 1 / (1 + k)
# gives it circumradius 1 about its centroid.
_HEART_K = (math.pi / 8 + 1 / 6) / (1 + math.pi / 4)
_HEART_D = 1 / (1 + _HEART_K)


@dataclass(frozen=True)
class FactorGrid:
    """The full grid of factor values and the image side: everything an image depends on.

    shapes : shape names (class 0..K-1 in this order); scale, rotation, x, y : number of evenly
    spaced values of each factor; size : image side in pixels; rotation_span : degrees the
    rotations cover (0, span/n, ..., span excluded). Build it with `factor_grid`, which checks
    the values.
    """

    shapes: tuple[str, ...]
    scale: int
    rotation: int
    x: int
    y: int
    size: int
    rotation_span: float = 360.0

    @property
    def dims(self) -> tuple[int, ...]:
        """Number of values of each factor, in `FACTORS` order."""
        return (len(self.shapes), self.scale, self.rotation, self.x, self.y)

    def __len__(self) -> int:
        return math.prod(self.dims)

    def indices(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Factor indices of sample ids: name -> int64 (n,) in `FACTORS` order."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise IndexError(f"sample ids must lie in 0..{len(self) - 1}")
        return dict(zip(FACTORS, (i.astype(np.int64) for i in np.unravel_index(ids, self.dims))))

    def ids(self, indices: Mapping[str, Any]) -> np.ndarray:
        """Sample ids (int64) of factor indices given as name -> (n,) integers (`indices`' inverse)."""
        return np.ravel_multi_index(tuple(np.asarray(indices[f]) for f in FACTORS), self.dims).astype(np.int64)

    def levels(self) -> dict[str, list]:
        """What each factor index stands for: shape names; scale as a share of the largest size;
        rotation in degrees (counter-clockwise); x and y as the centroid's position in shares of
        the image side (x from the left, y from the top)."""
        return {
            "shape": list(self.shapes),
            "scale": _scales(self.scale).tolist(),
            "rotation": _rotations(self.rotation, self.rotation_span).tolist(),
            "x": (_positions(self.x, self.size) / self.size).tolist(),
            "y": (_positions(self.y, self.size) / self.size).tolist(),
        }


def factor_grid(shapes, scale, rotation, x, y, size, rotation_span=360.0) -> FactorGrid:
    """A checked `FactorGrid`; a bad value is a ValueError whose message starts with its key
    (`factors.shapes`, `factors.<factor>`, `factors.rotation_span` or `size`), for the caller to
    prefix with the dataset's. `rotation_span` has the schema's default where a caller leaves it out."""
    if isinstance(shapes, str) or not isinstance(shapes, (list, tuple)) or not shapes:
        raise ValueError(f"factors.shapes: expected a non-empty list of shape names from "
                         f"{', '.join(SHAPES)}, got {shapes!r}")
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise ValueError(f"factors.shapes: unknown shape(s) {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(SHAPES)}")
    if len(set(shapes)) != len(shapes):
        raise ValueError(f"factors.shapes: each shape once, got {list(shapes)}")
    counts = {"scale": scale, "rotation": rotation, "x": x, "y": y}
    for name, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"factors.{name}: the number of {name} values must be an integer >= 1, got {n!r}")
    if isinstance(rotation_span, bool) or not isinstance(rotation_span, (int, float, np.number)) \
            or not 0 < rotation_span <= 360:
        raise ValueError(f"factors.rotation_span: expected degrees in (0, 360], got {rotation_span!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"size: expected an integer (pixels), got {size!r}")
    smallest = MIN_SCALE if scale > 1 else 1.0
    least = math.ceil(MIN_RADIUS_PX / (MAX_RADIUS * smallest) - 1e-9)
    if size < least:
        raise ValueError(f"size: {size} pixels is too small to draw the smallest scale ({smallest:g}: a shape "
                         f"{2 * MAX_RADIUS * smallest * size:.1f} pixels across); synthetic_factors needs "
                         f"size >= {least}")
    return FactorGrid(tuple(shapes), int(scale), int(rotation), int(x), int(y), int(size), float(rotation_span))


def _scales(n: int) -> np.ndarray:
    """Shares of the largest size, MIN_SCALE..1 (one value: 1)."""
    return np.linspace(MIN_SCALE, 1.0, n) if n > 1 else np.ones(1)


def _rotations(n: int, span: float) -> np.ndarray:
    """Degrees 0, span/n, ..., span excluded (span 360: a full turn)."""
    return np.arange(n) * (span / n)


def _positions(n: int, size: int) -> np.ndarray:
    """Centroid positions in pixels (0 = the image's edge), evenly spaced so that the largest
    shape stays inside at any rotation. Written as offsets from the centre so that they are
    mirror images of each other exactly and the middle one of an odd count is the centre."""
    half_reach = size / 2 - MAX_RADIUS * size
    return size / 2 + (2 * np.arange(n) - (n - 1)) / max(n - 1, 1) * half_reach


def render(grid: FactorGrid, ids: np.ndarray) -> np.ndarray:
    """The images of sample ids: (n, 1, size, size) uint8, 0 background, 255 fully covered pixels.

    Renders `PASS_SAMPLES` sample points at a time, in a window around each shape (the pixels
    outside it are background); top-level, so worker processes can run it.
    """
    ids = np.asarray(ids, dtype=np.int64)
    size = grid.size
    out = np.zeros((len(ids), 1, size, size), np.uint8)
    if not len(ids):
        return out
    index = grid.indices(ids)
    radius = _scales(grid.scale)[index["scale"]] * (MAX_RADIUS * size)
    rad = np.deg2rad(_rotations(grid.rotation, grid.rotation_span))
    cos, sin = np.cos(rad)[index["rotation"]], np.sin(rad)[index["rotation"]]
    cx, cy = _positions(grid.x, size)[index["x"]], _positions(grid.y, size)[index["y"]]
    # A window of `side` pixels holds the disc of the largest shape wherever it is.
    side = min(size, math.ceil(2 * MAX_RADIUS * size) + 2)
    reach = MAX_RADIUS * size
    left = np.clip(np.floor(cx - reach).astype(np.int64), 0, size - side)
    top = np.clip(np.floor(cy - reach).astype(np.int64), 0, size - side)
    per_pass = max(1, PASS_SAMPLES // (side * SUPERSAMPLE) ** 2)
    pixels = np.arange(side)
    for start in range(0, len(ids), per_pass):
        part = slice(start, start + per_pass)
        window = coverage(index["shape"][part], grid.shapes, radius[part], cos[part], sin[part],
                          cx[part] - left[part], cy[part] - top[part], side)
        rows = (top[part, None] + pixels)[:, :, None]
        cols = (left[part, None] + pixels)[:, None, :]
        out[np.arange(start, start + len(window))[:, None, None], 0, rows, cols] = window
    return out


def coverage(shape: np.ndarray, names: tuple[str, ...], radius: np.ndarray, cos: np.ndarray, sin: np.ndarray,
             cx: np.ndarray, cy: np.ndarray, side: int) -> np.ndarray:
    """Pixel coverage of n shapes, each in an image of `side` x `side` pixels: (n, side, side)
    uint8, the share of SUPERSAMPLE^2 sample points inside the shape, rounded to 0..255.

    shape : int (n,) index into `names`; radius : (n,) circumradius in pixels; cos, sin : (n,) of
    the rotation; cx, cy : (n,) centroid in pixels from the image's left and top edges.
    """
    points = (np.arange(side * SUPERSAMPLE) + 0.5) / SUPERSAMPLE  # sample positions in pixels
    inside = np.zeros((len(shape), side * SUPERSAMPLE, side * SUPERSAMPLE), bool)
    for k, name in enumerate(names):
        chosen = np.flatnonzero(shape == k)
        if not len(chosen):
            continue
        # Offsets from the centroid in units of the radius, y up; turned back by the rotation.
        a, b = (cos[chosen] / radius[chosen])[:, None, None], (sin[chosen] / radius[chosen])[:, None, None]
        dx = points[None, None, :] - cx[chosen, None, None]
        dy = cy[chosen, None, None] - points[None, :, None]
        inside[chosen] = _INSIDE[name](a * dx + b * dy, a * dy - b * dx)
    counts = inside.reshape(len(shape), side, SUPERSAMPLE, side, SUPERSAMPLE).sum(axis=(2, 4), dtype=np.int64)
    n = SUPERSAMPLE * SUPERSAMPLE
    return ((counts * 510 + n) // (2 * n)).astype(np.uint8)  # round(counts * 255 / n), halves up


def _inside_square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= _SQUARE_HALF


def _inside_ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + (v / _ELLIPSE_MINOR) ** 2 <= 1.0


def _inside_heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    u = np.abs(u)  # mirror symmetric: one lobe's test serves both
    v = v + _HEART_K * _HEART_D  # from the centroid to the square's centre
    lobe = (u - _HEART_D / 2) ** 2 + (v - _HEART_D / 2) ** 2 <= _HEART_D * _HEART_D / 2
    return lobe | (u + np.abs(v) <= _HEART_D)


# Inside tests in the shape's own frame: (u, v) in units of its circumradius, v up, centroid at 0.
_INSIDE = {"square": _inside_square, "ellipse": _inside_ellipse, "heart": _inside_heart}
