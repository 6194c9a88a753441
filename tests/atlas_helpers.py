"""Small synthetic inputs of the atlas stage's jobs (a dataset, latents, maps, quality, predictions,
an attribute table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from latent_atlas.data.store import Dataset, save_dataset
from latent_atlas.explain.maps import coords_table
from latent_atlas.io import write_parquet
from latent_atlas.latents import id_frame, read_latents
from latent_atlas.runtime import Files, Job
from latent_atlas.schema import defaults

CLASSES = ["zero", "one", "two", "three"]


def synthetic_inputs(folder: Path, n: int = 400, d: int = 6, size: int = 8, seed: int = 0) -> Files:
    """Files of a classifier with n mapped test samples of 4 classes; sample ids are 1000 + 3 i.

    Images are size x size, one channel, each class a bright row band (rows 2c, 2c + 1) plus noise,
    so every thumbnail differs. Maps: PCA = z[:, :2], t-SNE = z[:, 2:4], UMAP = z[:, 4:6] (any
    2-D coordinates do: the page only draws them). Every tenth sample is misclassified.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    centres = rng.normal(0, 4, (len(CLASSES), d))
    z = (centres[labels] + rng.normal(0, 1, (n, d))).astype(np.float32)
    images = rng.uniform(0, 0.3, (n, 1, size, size)).astype(np.float32)
    for c in range(len(CLASSES)):
        images[labels == c, 0, 2 * c:2 * c + 2] = 1.0
    images = np.rint(images * 255).astype(np.float32) / np.float32(255)
    sample_id = 1000 + 3 * np.arange(n)
    split = np.array(["test"] * n)
    folder.mkdir(parents=True, exist_ok=True)
    files = Files(data=str(folder / "data"), latents=str(folder / "latents.parquet"),
                  maps=str(folder / "maps.parquet"), quality=str(folder / "quality.parquet"),
                  predictions=str(folder / "predictions.parquet"))
    save_dataset(Dataset(images, labels, CLASSES, split, sample_id, "synthetic"), files.data)
    ids = id_frame(sample_id, split, labels, CLASSES)
    latents = pd.concat([ids, pd.DataFrame(z, columns=[f"z{i}" for i in range(d)])], axis=1)
    write_parquet(latents, files.latents)
    coords = {"pca": z[:, :2], "tsne": z[:, 2:4], "umap": z[:, 4:6]}
    write_parquet(coords_table(ids, coords), files.maps)
    quality = pd.DataFrame({"space": ["full", "pca", "tsne", "umap"], "dims": [d, 2, 2, 2], "k": 5,
                            "trustworthiness": [np.nan, 0.91, 0.95, 0.97], "continuity": [np.nan, 0.93, 0.9, 0.92],
                            "knn_k": 5, "knn_accuracy": [0.99, 0.8, 0.85, 0.9], "knn_accuracy_std": 0.01,
                            "n_samples": n})
    write_parquet(quality, files.quality)
    pred = labels.copy()
    pred[::10] = (pred[::10] + 1) % len(CLASSES)
    write_parquet(ids.assign(pred=pred.astype(np.int64)), files.predictions)
    return files


SHAPES = ["square", "ellipse", "heart"]
ROTATIONS = [9.0 * j for j in range(40)]


def synthetic_attributes(latents: str, path: Path, lacking: int = 0) -> Path:
    """The attribute table (as results/data/{dataset}/attributes.parquet) of `synthetic_inputs`'s
    samples, rows in reverse order, less the first `lacking` samples. Sample i (latents' row order)
    has Smiling = z0 > 0 (0/1, levels unknown: one side of the PCA map), shape = SHAPES[i % 3]
    (named levels), rotation = ROTATIONS[i % 40] (40 numeric levels: continuous), count =
    i % 300 - 2 (a user's column: no levels, negative values, more than 256 of them)."""
    lat = read_latents(latents)
    i = np.arange(len(lat.z))
    table = pd.DataFrame({"sample_id": lat.ids["sample_id"].to_numpy(np.int64),
                          "class": lat.ids["label"].to_numpy().astype(np.int8),
                          "Smiling": (lat.z[:, 0] > 0).astype(np.int8), "shape": (i % 3).astype(np.int8),
                          "rotation": (i % 40).astype(np.int8), "count": (i % 300 - 2).astype(np.int16)})
    described = [{"name": "class", "origin": "class", "levels": CLASSES},
                 {"name": "Smiling", "origin": "source", "levels": None},
                 {"name": "shape", "origin": "source", "levels": SHAPES},
                 {"name": "rotation", "origin": "source", "levels": ROTATIONS},
                 {"name": "count", "origin": "counts.csv", "levels": None}]
    write_parquet(table.iloc[lacking:].iloc[::-1], path, {"attributes": described})
    return path


def build_atlas(folder: Path, k: int = 5, thumbnails=None, attributes: bool = False,
                **kwargs) -> tuple[Files, Path]:
    """Run the jobs atlas_points and atlas on `synthetic_inputs` (with `synthetic_attributes` if
    `attributes`); returns (inputs, page path)."""
    from latent_atlas.atlas.jobs import atlas, atlas_points

    files = synthetic_inputs(folder, **kwargs)
    extra = {}
    if attributes:
        extra["attributes"] = str(synthetic_attributes(files.latents, folder / "attributes.parquet"))
    points = folder / "points.parquet"
    atlas_points(Job(input=Files(latents=files.latents, maps=files.maps, predictions=files.predictions),
                     output=Files([str(points)]), wildcards=Files(model="m")), numeric_threads=1, k=k)
    page = folder / "atlas.html"
    settings = defaults("#/properties/atlas")
    settings["thumbnails"].update({"format": "png", **(thumbnails or {})})
    atlas(Job(input=Files(points=str(points), quality=files.quality, latents=files.latents,
                          data=files.data, **extra),
              output=Files([str(page)])),
          seed=0, title="synthetic / m", point_size=settings["point_size"], thumbnails=settings["thumbnails"],
          importance="../importance/explorer.html")
    return files, page


def open_page(browser, path: Path, width: int, height: int):
    """An atlas-renderer page (the atlas, the comparison page) open in Chromium, once it is ready
    and its maps are shown;
    every request outside file:, data: and blob: is aborted and recorded in `page.blocked`, and
    console errors in `page.errors`. Close it when done."""
    pg = browser.new_page(viewport={"width": width, "height": height})
    pg.blocked, pg.errors = [], []
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))

    def route(r):
        if r.request.url.split(":", 1)[0] in ("file", "data", "blob"):
            r.continue_()
        else:
            pg.blocked.append(r.request.url)
            r.abort()

    pg.route("**/*", route)
    pg.goto(path.as_uri())
    pg.wait_for_function("window.atlas.ready || window.atlas.error", timeout=30000)
    # the folder page shows its maps once drawn (atlas.drawing)
    pg.wait_for_function("window.atlas.error || !window.atlas.drawing || !window.atlas.drawing()", timeout=30000)
    return pg
