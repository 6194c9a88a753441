"""The atlas page: one self-contained HTML file with every array inlined.

Arrays travel as base64 of gzip-compressed little-endian typed arrays, each in its own
`<script type="application/octet-stream">` element; the page inflates them with the browser's
`DecompressionStream('gzip')` (no library, works from file:// offline). Sprite sheets travel as
base64 images. Metadata (names, shapes, quality badges, colour tables) is one JSON element.
Everything is written deterministically (gzip without a timestamp, sorted JSON keys).

The template's attribute code (colour by a dataset's attributes) sits between the lines
`// begin attributes` and `// end attributes`; a page without attributes drops it, so its bytes
are those of a page written before attributes existed. Likewise the code of each layout (see
`atlas.folder`) sits between `// begin single` and `// end single` or `// begin folder` and
`// end folder`: a page keeps its own layout's and drops the other's, so a single-file page's
bytes are those of a page written before the folder layout existed.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from latent_atlas.atlas.sprites import SpriteSheets

TEMPLATE = Path(__file__).with_name("templates") / "atlas.html"

# The template's attribute code: whole lines between these markers (kept, less the markers, on a
# page with attributes; dropped on one without).
_ATTRIBUTE_CODE = re.compile(r"^[ \t]*// begin attributes\n(.*?)^[ \t]*// end attributes\n", re.M | re.S)
# Each layout's code: kept, less the markers, on a page of that layout; dropped on the other.
_LAYOUT_CODE = {layout: re.compile(rf"^[ \t]*// begin {layout}\n(.*?)^[ \t]*// end {layout}\n", re.M | re.S)
                for layout in ("single", "folder")}

# Attributes of at most this many values are drawn on a palette, one colour per value; those with
# more and numeric levels (a factor's 40 rotations) on viridis, like the other continuous modes.
CATEGORICAL_MAX = 20

# Typed-array names the page knows, by numpy dtype.
_JS_TYPES = {np.dtype(np.uint8): "Uint8Array", np.dtype(np.uint16): "Uint16Array",
             np.dtype(np.int32): "Int32Array", np.dtype(np.float32): "Float32Array"}


def quantise_latents(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latents (n, d) as uint8 per dimension: code = round(255 (z - lo) / (hi - lo)).

    The page only draws latents (bars, colours, means), for which 1/255 of a dimension's range is
    below what the eye sees; neighbours are computed in Python on the float values. Returns
    (codes (n, d) uint8, lo (d,) float64, hi (d,) float64); a constant dimension gets code 0.
    """
    z = np.asarray(z, np.float64)
    lo, hi = z.min(axis=0), z.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.rint((z - lo) / span * 255).astype(np.uint8), lo, hi


def encode_array(values: np.ndarray) -> tuple[dict, str]:
    """(description, base64 text) of one array: gzip of its little-endian bytes, no timestamp."""
    values = np.ascontiguousarray(values)
    dtype = values.dtype.newbyteorder("<")
    if values.dtype not in _JS_TYPES:
        raise TypeError(f"atlas page: no typed array for dtype {values.dtype}")
    raw = values.astype(dtype, copy=False).tobytes()
    data = base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")
    return {"type": _JS_TYPES[values.dtype], "shape": list(values.shape)}, data


def _rgb(colours: np.ndarray) -> list[list[int]]:
    return np.rint(np.asarray(colours)[:, :3] * 255).astype(int).tolist()


def viridis_table(n: int = 256) -> list[list[int]]:
    """RGB 0..255 of `n` evenly spaced colours of viridis (the page's continuous colour scale)."""
    from matplotlib import colormaps

    return _rgb(colormaps["viridis"](np.linspace(0, 1, n)))


def class_palette(n_classes: int) -> list[list[int]]:
    """RGB 0..255 of each class: tab10 up to 10 classes, tab20 up to 20, then evenly spaced hues."""
    from matplotlib import colormaps

    if n_classes <= 20:
        return _rgb(colormaps["tab10" if n_classes <= 10 else "tab20"](np.arange(n_classes)))
    return _rgb(colormaps["hsv"](np.arange(n_classes) / n_classes))


def _finite(value: Any) -> float | None:
    value = float(value)
    return round(value, 4) if math.isfinite(value) else None


def atlas_document(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], sprites: SpriteSheets,
                   channels: int) -> str:
    """The page's HTML: `meta` (JSON-able) and `arrays` (name -> ndarray) inlined, with sprites.

    meta : title, model, dataset, kind, class_names, maps (list of {name, quality}), k, links...;
        `attributes` (see `page_attributes`) keeps the template's attribute code.
    arrays : the per-point arrays the template reads (see `templates/atlas.html`, `ARRAYS`).
    """
    blocks, described = [], {}
    for name in sorted(arrays):
        described[name], data = encode_array(arrays[name])
        blocks.append(f'<script type="application/octet-stream" id="a-{name}">{data}</script>')
    for i, sheet in enumerate(sprites.sheets):
        data = base64.b64encode(sheet).decode("ascii")
        blocks.append(f'<script type="application/octet-stream" id="s-{i}">{data}</script>')
    full = {**meta, "arrays": described, "viridis": viridis_table(), "sprites": sprite_description(sprites, channels)}
    return fill_template(full, "\n".join(blocks), "single")


def sprite_description(sprites: SpriteSheets, channels: int) -> dict[str, Any]:
    """META.sprites: the sheets' layout (tile size, columns, tiles per sheet and on each sheet,
    mime type) and the images' channels."""
    return {"tile_height": sprites.tile_height, "tile_width": sprites.tile_width, "columns": sprites.columns,
            "per_sheet": sprites.per_sheet, "counts": sprites.counts, "mime": sprites.mime, "channels": int(channels)}


def fill_template(meta: Mapping[str, Any], blocks: str, layout: str) -> str:
    """The page's HTML: the template with `meta` (the whole META: JSON-able), the inlined data
    `blocks` (HTML) and the code of `layout` ("single" or "folder"; see the module docstring)."""
    payload = json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    text = _ATTRIBUTE_CODE.sub(r"\1" if "attributes" in meta else "", TEMPLATE.read_text(encoding="utf-8"))
    for name, code in _LAYOUT_CODE.items():
        text = code.sub(r"\1" if name == layout else "", text)
    return (text.replace("__TITLE__", html.escape(str(meta["title"])))
                .replace("__META__", payload)
                .replace("__BLOBS__", blocks))


def _label(level: Any) -> str:
    return f"{level:g}" if isinstance(level, float) else str(level)


def _is_number(level: Any) -> bool:
    return isinstance(level, (int, float)) and not isinstance(level, bool)


def page_attributes(columns: Mapping[str, np.ndarray], described: Sequence[Mapping[str, Any]],
                    source: str) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """The arrays and META entries of a dataset's attributes: the page's colour modes "attribute:<name>".

    columns : name -> (n,) integer values of each attribute at the page's points, in point order
        (the attribute table's columns but sample_id and class).
    described : the table's `attributes` metadata, [{name, origin, levels}]; levels say what each
        value 0..m-1 stands for (strings or numbers), or are None where unknown.
    source : the table's path, named in errors.

    Returns arrays `attribute_<j>` (codes = value - offset, uint8, or uint16 where 256 codes do not
    suffice; offset is 0 unless a value is negative) and one META entry per attribute: name, origin,
    array, offset and scale. "categorical" (at most CATEGORICAL_MAX values, or levels that are not
    all numbers): `values` with their `labels` and `palette` (legend order; a binary 0/1 attribute
    without levels reads "not <name>", "<name>", and is marked `binary`). "continuous": `levels`
    (the number each value stands for, or None: the value itself) and their range `lo`, `hi`.
    """
    spec_of = {d["name"]: d for d in described}
    arrays, entries = {}, []
    for j, (name, column) in enumerate(columns.items()):
        values = np.asarray(column, np.int64)
        spec = spec_of.get(name, {})
        levels = spec.get("levels")
        offset = min(0, int(values.min()))
        codes = values - offset
        if codes.max() >= 2 ** 16:
            raise ValueError(f"{source}: attribute {name!r} spans values {values.min()}..{values.max()}; "
                             f"the atlas colours by attributes of at most 65536 values")
        array = f"attribute_{j}"
        arrays[array] = codes.astype(np.uint8 if codes.max() < 2 ** 8 else np.uint16)
        entry = {"name": name, "origin": spec.get("origin"), "array": array, "offset": offset}
        present = np.unique(values).tolist()
        numeric = levels is not None and all(_is_number(v) for v in levels)
        shown = sorted(set(present) | set(range(len(levels)))) if levels is not None else present
        if len(shown) <= CATEGORICAL_MAX or (levels is not None and not numeric):
            binary = levels is None and set(shown) <= {0, 1}
            if binary:
                shown, labels = [0, 1], [f"not {name}", name]
            else:
                labels = [_label(levels[v]) if levels is not None and 0 <= v < len(levels) and levels[v] is not None
                          else str(v) for v in shown]
            entries.append({**entry, "scale": "categorical", "values": shown, "labels": labels,
                            "palette": class_palette(len(shown)), "binary": binary})
        else:
            if levels is not None and (present[0] < 0 or present[-1] >= len(levels)):
                raise ValueError(f"{source}: attribute {name!r} has values {present[0]}..{present[-1]} "
                                 f"but {len(levels)} levels")
            span = [float(v) for v in levels] if levels is not None else [float(v) for v in present]
            entries.append({**entry, "scale": "continuous", "levels": levels, "lo": min(span), "hi": max(span)})
    return arrays, entries


def quality_badges(quality: Any, method: str) -> dict[str, float | None]:
    """Trustworthiness, continuity, k-NN accuracy (and their k) of one map from a quality table."""
    row = quality[quality["space"] == method]
    if row.empty:
        return {}
    row = row.iloc[0]
    return {"trustworthiness": _finite(row["trustworthiness"]), "continuity": _finite(row["continuity"]),
            "knn_accuracy": _finite(row["knn_accuracy"]), "k": int(row["k"]), "knn_k": int(row["knn_k"])}
