"""The atlas stage's jobs: one function per rule of workflow/rules/atlas.smk.

`atlas_points` computes the per-point table (neighbours, density, neighbourhood preservation,
predicted class or reconstruction error); `atlas` assembles the page from the tables, the latents,
the dataset's images and, where the workflow passes it, the dataset's attribute table. Rules
atlas_maps and atlas_quality run the explain stage's jobs (explain.jobs) on the atlas's own
samples, for a model the explain stage does not map (or a larger sample set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from latent_atlas.atlas.folder import (atomic_folder, estimated_page_mb, folder_document, page_layout,
                                       quantise_coordinates, redirect_page, tile_runs, tile_script, tile_size)
from latent_atlas.atlas.page import (atlas_document, class_palette, page_attributes, quality_badges,
                                     quantise_latents, sprite_description)
from latent_atlas.atlas.sprites import (MIME, SpriteSheets, sheet_columns, sprite_sheets, standardised_thumbnails,
                                        thumbnails_uint8)
from latent_atlas.data.store import load_dataset
from latent_atlas.io import read_parquet, read_parquet_metadata, write_parquet, write_text
from latent_atlas.latents import ID_COLUMNS, read_latents
from latent_atlas.runtime import Job
from latent_atlas.schema import with_defaults


def _positions(known: np.ndarray, sample_ids: np.ndarray, source: str) -> np.ndarray:
    """Positions (n,) int64 of `sample_ids` among a file's sample ids `known`."""
    pos = pd.Index(known).get_indexer(sample_ids)
    if (pos < 0).any():
        raise ValueError(f"{source}: lacks sample ids {sample_ids[pos < 0][:5].tolist()} of the maps")
    return pos.astype(np.int64)


def reconstruction_errors(model_path: str, images: np.ndarray) -> np.ndarray:
    """Mean squared error per pixel of each image's reconstruction, (n,) float32."""
    # Imported here: torch is needed only for autoencoders' errors.
    from latent_atlas.devices import default_device, infer
    from latent_atlas.models.networks import load_model

    model = load_model(model_path, map_location=default_device())
    recon = infer(model, images)
    return ((recon - images) ** 2).reshape(len(images), -1).mean(axis=1).astype(np.float32)


def point_table(ids: pd.DataFrame, z: np.ndarray, coords: dict[str, np.ndarray], k: int) -> pd.DataFrame:
    """Per point: id columns, map coordinates (x_<method>, y_<method>, float32), local density,
    shared neighbours and Jaccard preservation per map, and the sample ids of its k nearest
    latent neighbours (nn_0 nearest).

    ids : id frame (n rows) in map order; z : (n, d) latents; coords : method -> (n, 2).
    """
    from latent_atlas.atlas.neighbours import jaccard, local_density, nearest_neighbours, overlap
    from latent_atlas.projections import METHODS

    latent_idx, latent_dist = nearest_neighbours(z, k)
    table = ids[ID_COLUMNS].reset_index(drop=True).copy()
    for method in METHODS:
        xy = np.asarray(coords[method], np.float32)
        table[f"x_{method}"], table[f"y_{method}"] = xy[:, 0], xy[:, 1]
    table["density"] = local_density(latent_dist)
    for method in METHODS:
        shared = overlap(latent_idx, nearest_neighbours(coords[method], k)[0])
        table[f"shared_{method}"] = shared.astype(np.int16)
        table[f"preservation_{method}"] = jaccard(shared, k)
    sample_ids = table["sample_id"].to_numpy()
    for j in range(k):
        table[f"nn_{j}"] = sample_ids[latent_idx[:, j]]
    return table


def atlas_points(job: Job, *, numeric_threads: int, k: int) -> None:
    """The per-point table of one model's atlas (`point_table` with `k` neighbours), with the
    predicted class (classifiers, column pred) or the reconstruction error (autoencoders, column
    recon_error; torch on `numeric_threads` threads); neither for a model without its head or
    decoder, or a table of latents."""
    from latent_atlas.explain.maps import coords_of, method_rows
    from latent_atlas.projections import METHODS

    maps = read_parquet(job.input.maps)
    ids = method_rows(maps, METHODS[0])[ID_COLUMNS].reset_index(drop=True)
    latents = read_latents(job.input.latents)
    sample_ids = ids["sample_id"].to_numpy()
    z = latents.z[_positions(latents.ids["sample_id"], sample_ids, job.input.latents)]
    table = point_table(ids, z, {m: coords_of(maps, m) for m in METHODS}, int(k))
    if "predictions" in job.input.keys():
        pred = read_parquet(job.input.predictions, columns=["sample_id", "pred"])
        rows = _positions(pred["sample_id"], sample_ids, job.input.predictions)
        table.insert(len(ID_COLUMNS), "pred", pred["pred"].to_numpy()[rows].astype(np.int64))
    elif "model" in job.input.keys():
        ds = load_dataset(job.input.data)
        images = ds.images[_positions(ds.sample_id, sample_ids, job.input.data)]
        table.insert(len(ID_COLUMNS), "recon_error", reconstruction_errors(job.input.model, images))
    write_parquet(table, job.output[0], {**dict(job.wildcards.items()), "k": int(k)})


def thumbnail_rows(n: int, max_samples: int | str, random_state: int) -> np.ndarray:
    """Which of n points get a thumbnail: all, or a seeded subset of `max_samples` (ascending)."""
    if max_samples == "all" or int(max_samples) >= n:
        return np.arange(n)
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=int(max_samples), replace=False))


def page_thumbnails(data: Any, sample_ids: np.ndarray, thumbnails: Mapping[str, Any],
                    seed: int) -> tuple[SpriteSheets, np.ndarray, int]:
    """A page's thumbnails of `sample_ids` from the dataset store `data`: (sprite sheets, each
    point's tile (n,) int32, -1 for none, image channels); `thumbnails` as atlas.thumbnails
    (max_samples, seeded with `seed`; format, quality, sheet_size)."""
    ds = load_dataset(data)
    thumbs = thumbnail_rows(len(sample_ids), thumbnails["max_samples"], seed)
    images = store_thumbnails(ds, _positions(ds.sample_id, sample_ids[thumbs], "the dataset store"))
    t = thumbnails
    sprites = sprite_sheets(images, sheet_size=t["sheet_size"], image_format=t["format"], quality=t["quality"])
    tile = np.full(len(sample_ids), -1, np.int32)
    tile[thumbs] = np.arange(len(thumbs), dtype=np.int32)
    return sprites, tile, 3 if images.ndim == 4 else 1


def store_thumbnails(ds: Any, rows: np.ndarray) -> np.ndarray:
    """Thumbnails (len(rows), H, W) or (len(rows), H, W, 3) uint8 of the dataset store `ds`'s
    `rows` (any order; read in ascending order): images as they are, tables and series as
    standardised heatmaps (channels x time, or the features)."""
    order = np.argsort(rows, kind="stable")
    images = ds.images[np.asarray(rows)[order]]
    if ds.kind != "image":
        images = standardised_thumbnails(images)
    thumbs = thumbnails_uint8(images)
    out = np.empty_like(thumbs)
    out[order] = thumbs
    return out


def tile_thumbnails(ds: Any, sample_ids: np.ndarray, first: np.ndarray, tiles: Mapping[str, list[np.ndarray]],
                    thumbnails: Mapping[str, Any], tile_points: int, folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The folder layout's thumbnails: each map's tiles (`tiles`: map name -> the points of each of
    its tiles, `folder.tile_runs`), numbered on from one map to the next, tile G's sprite sheet read
    from the loaded dataset store `ds` a tile at a time and written to `folder`/tiles/G.js (`first`:
    one of its thumbnails, (H, W) or (H, W, 3) uint8, for the size). Returns
    (META.sprites, with `counts` per tile and `maps`: map name -> [its first tile, its number of
    tiles]; map name -> each point's thumbnail on that map's tiles (n,)
    int32: G x per_sheet + its place in tile G, -1 for none). `thumbnails` as atlas.thumbnails
    (format, quality, sheet_size)."""
    rows = _positions(ds.sample_id, sample_ids, "the dataset store")
    h, w = first.shape[:2]
    columns = sheet_columns(tile_points, h, w, thumbnails["sheet_size"])
    per_sheet = columns * (thumbnails["sheet_size"] // h)
    if tile_points > per_sheet:
        raise ValueError(f"atlas.tile_points {tile_points}: one sheet of atlas.thumbnails.sheet_size "
                         f"{thumbnails['sheet_size']} holds at most {per_sheet} thumbnails of {h}x{w} pixels")
    (folder / "tiles").mkdir()
    counts, thumb, ranges = [], {}, {}
    for name, runs in tiles.items():
        thumb[name], ranges[name] = np.full(len(sample_ids), -1, np.int32), [len(counts), len(runs)]
        for points in runs:
            t = len(counts)
            sheet = sprite_sheets(store_thumbnails(ds, rows[points]), sheet_size=thumbnails["sheet_size"],
                                  image_format=thumbnails["format"], quality=thumbnails["quality"], columns=columns)
            (folder / "tiles" / f"{t}.js").write_text(tile_script(t, sheet.sheets[0], sheet.mime), encoding="ascii")
            thumb[name][points] = t * per_sheet + np.arange(len(points), dtype=np.int32)
            counts.append(len(points))
    layout = SpriteSheets([], int(h), int(w), columns, per_sheet, counts, MIME[thumbnails["format"]])
    return {**sprite_description(layout, 3 if first.ndim == 3 else 1), "maps": ranges}, thumb


def attribute_columns(path: str, sample_ids: np.ndarray) -> tuple[dict[str, np.ndarray], list[dict]]:
    """The attributes of a dataset's attribute table (results/data/{dataset}/attributes.parquet)
    at `sample_ids`: (name -> (n,) values, in the table's column order, less sample_id and class;
    the table's `attributes` metadata). A sample the table lacks is an error naming the file."""
    table = read_parquet(path)
    rows = _positions(table["sample_id"].to_numpy(), sample_ids, path)
    columns = {c: table[c].to_numpy()[rows] for c in table.columns if c not in ("sample_id", "class")}
    return columns, read_parquet_metadata(path).get("attributes", [])


def anomaly_scalar(path: str, sample_ids: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """The page's anomaly-score array (float32, in `sample_ids` order) and its colour mode, from
    the anomaly stage's scores table at `path`: coloured from its 1st to its 99th percentile (a
    few extreme scores would otherwise leave every other point at the bottom of the scale)."""
    table = read_parquet(path)
    meta = read_parquet_metadata(path)
    score = table["score"].to_numpy(np.float32)[_positions(table["sample_id"], sample_ids, path)]
    lo, hi = (float(v) for v in np.percentile(score, [1, 99]))
    label = f"anomaly score ({meta.get('error', 'mse')} reconstruction error)"
    return score, [{"mode": "anomaly", "array": "anomaly", "lo": lo, "hi": max(hi, lo + 1e-12),
                    "option": "anomaly score", "label": label}]


def atlas(job: Job, *, seed: int, title: str, point_size: float, thumbnails: Mapping[str, Any],
          importance: str, layout: str | None = None, max_page_mb: float | None = None,
          tile_points: int | str | None = None) -> None:
    """The atlas of one model: points of `point_size`, `thumbnails` (max_samples, seeded with
    `seed`; format, quality, sheet_size; on_map, the most points in a map's view drawn as
    thumbnails; the dataset store's name, in the page's config entries), a link to the importance
    explorer `importance` ("" for none), a colour mode per attribute of the optional input
    `attributes` (the dataset's attribute table), and one by anomaly score from the optional input
    `anomaly` (the anomaly stage's scores of the model).

    `layout` (atlas.layout; with `max_page_mb`, see `folder.page_layout`) picks where it goes,
    beside the page path P = job.output[0] (results/figures/{dataset}/{model}/atlas.html) and the
    folder F = P less its suffix (the rule's directory output): single, the self-contained page at
    P and a redirect to it at F/index.html; folder, the page at F/index.html with its data in F
    (`atlas.folder`; thumbnails in tiles of `tile_points`) and a redirect to it at P. Settings
    left None take the schema's defaults."""
    points = read_parquet(job.input.points)
    quality = read_parquet(job.input.quality)
    latents = read_latents(job.input.latents)
    sample_ids = points["sample_id"].to_numpy()
    methods = [c[2:] for c in points.columns if c.startswith("x_")]
    if sample_ids.min() < 0 or sample_ids.max() >= 2 ** 31:
        raise ValueError("atlas: sample ids must fit in int32")
    n = len(points)
    k = sum(c.startswith("nn_") for c in points.columns)
    z = latents.z[_positions(latents.ids["sample_id"], sample_ids, job.input.latents)]
    codes, lo, hi = quantise_latents(z)
    class_names = latents.class_names
    label_type = np.uint8 if len(class_names) <= 255 else np.uint16
    nn = np.stack([points[f"nn_{j}"].to_numpy() for j in range(k)], axis=1)
    arrays = {
        "ids": sample_ids.astype(np.int32),
        "label": points["label"].to_numpy().astype(label_type),
        "density": points["density"].to_numpy(np.float32),
        "knn": _positions(sample_ids, nn.ravel(), job.input.points).astype(np.int32).reshape(n, k),
        "z": codes,
    }
    for method in methods:
        arrays[f"xy_{method}"] = points[[f"x_{method}", f"y_{method}"]].to_numpy(np.float32)
        arrays[f"shared_{method}"] = points[f"shared_{method}"].to_numpy().astype(np.uint8)
    # A loaded classifier without its head, an encoder without its decoder, or a table of latents
    # has neither predictions nor reconstruction errors: an "embedding" page.
    kind = "classifier" if "pred" in points else "autoencoder" if "recon_error" in points else "embedding"
    if kind == "classifier":
        arrays["pred"] = points["pred"].to_numpy().astype(label_type)
    elif kind == "autoencoder":
        arrays["error"] = points["recon_error"].to_numpy(np.float32)

    on_map = with_defaults(thumbnails, "#/properties/atlas/properties/thumbnails", "atlas.thumbnails")["on_map"]
    given = {"layout": layout, "max_page_mb": max_page_mb, "tile_points": tile_points}
    settings = with_defaults({k: v for k, v in given.items() if v is not None}, "#/properties/atlas", "atlas")
    thumbs = thumbnail_rows(n, thumbnails["max_samples"], int(seed))
    ds = load_dataset(job.input.data)
    first = store_thumbnails(ds, _positions(ds.sample_id, sample_ids[:1], "the dataset store"))[0]
    estimate = estimated_page_mb(n, int(z.shape[1]), k, len(methods), len(thumbs), first.size, thumbnails["format"])
    chosen = page_layout(settings["layout"], settings["max_page_mb"], estimate)

    meta = {
        "title": title, "kind": kind, "n": n, "k": k, "d": int(z.shape[1]),
        "class_names": list(class_names), "palette": class_palette(len(class_names)),
        "z_lo": [float(v) for v in lo], "z_hi": [float(v) for v in hi],
        "maps": [{"name": m, "quality": quality_badges(quality, m)} for m in methods],
        "importance": importance or None, "point_size": float(point_size), "images_on_map": int(on_map),
        "dataset": ds.name,
    }
    if "anomaly" in job.input.keys():
        arrays["anomaly"], meta["scalars"] = anomaly_scalar(job.input.anomaly, sample_ids)
    # Without the input, no key: the page is the one written before attributes existed.
    if "attributes" in job.input.keys():
        attribute_arrays, meta["attributes"] = page_attributes(
            *attribute_columns(job.input.attributes, sample_ids), job.input.attributes)
        arrays.update(attribute_arrays)
    page, folder = Path(job.output[0]), Path(job.output[0]).with_suffix("")
    if chosen == "single":
        sprites, arrays["thumb"], channels = page_thumbnails(job.input.data, sample_ids, thumbnails, int(seed))
        write_text(atlas_document(meta, arrays, sprites, channels=channels), page)
        with atomic_folder(folder) as tmp:
            (tmp / "index.html").write_text(redirect_page(f"../{page.name}"), encoding="utf-8")
        return
    scales = {}
    for method in methods:
        arrays[f"xy_{method}"], *scales[f"xy_{method}"] = quantise_coordinates(arrays[f"xy_{method}"])
    # A quadtree of tiles per map: a zoomed-in view of any map needs few of its tiles.
    size = tile_size(settings["tile_points"], *first.shape[:2])
    tiles = {method: tile_runs(thumbs, arrays[f"xy_{method}"], size) for method in methods}
    with atomic_folder(folder) as tmp:
        sprites, thumb = tile_thumbnails(ds, sample_ids, first, tiles, thumbnails, size, tmp)
        # the first map's thumbnails are also the page's `thumb` (which points have one; the panel's)
        arrays["thumb"] = thumb[methods[0]]
        arrays.update({f"thumb_{method}": thumb[method] for method in methods[1:]})
        index, scripts = folder_document(meta, arrays, scales, sprites)
        (tmp / "data").mkdir()
        for path, text in scripts:
            (tmp / path).write_text(text, encoding="ascii")
        (tmp / "index.html").write_text(index, encoding="utf-8")
    write_text(redirect_page(f"{folder.name}/index.html"), page)
