"""The latent atlas at 70,000 points: build time, file size, and the page's costs in one browser run.

Builds an atlas through the stage's jobs (atlas_points, atlas; default settings of the schema:
k = 10, every sample with a JPEG thumbnail) from 70,000 Fashion-MNIST images (train + test, from
/usr/share/datasets/fashion-mnist) with synthetic latents (32-D, a Gaussian blob per class) and
2-D maps (PCA of those latents, and two clustered stand-ins for t-SNE and UMAP: the page's costs
depend on the number of points and how crowded the grid cells are, not on which method placed
them; t-SNE and UMAP of 70,000 points would take minutes of this 2-core machine for nothing).
`--latents` and `--maps` take a real run's latents.parquet and maps table instead; `--latents`
alone fits real PCA, t-SNE and UMAP maps of those latents (the explain stage's function and the
schema's explain settings; minutes at 70,000 points) and reports how long that took.

Then, in one headless Chromium (software WebGL2 here: SwiftShader), measured side by side:
- a bare WebGL2 drawArrays of the same 70,000 points as 3-px points in a canvas of one map's size
  (the floor), against one pan and one zoom frame of an atlas map (points + overlay);
- hover lookup (the grid index) at random positions; a click's neighbour display (latent
  neighbours, each map's k nearest by the grid's ring search, markers, side panel);
- page ready (from navigation start to the first frame of all maps drawn, when the page answers
  pan, zoom, hover and click; thumbnails decode meanwhile), and the file size.

    python benchmarks/atlas.py               # 70,000 points
    python benchmarks/atlas.py --quick       # 5,000 points: a smoke check

The folder atlas (atlas.layout folder; issue 27's goals), one case per run:

    python benchmarks/atlas.py --folder 1000000   # synthetic 28x28 grey thumbnails, 32-D latents
    python benchmarks/atlas.py --celeba 182732    # 64x64 RGB thumbnails of a synthetic CelebA-layout
                                                  # folder (benchmarks/scale.py), 256-D latents

Each writes a dataset store (`--folder`: 8,192 images at a time, a blocky pattern per class plus
noise; `--celeba`: the JPEG folder through prepare_data's write_store, 64x64 centre crops),
synthetic latents and maps as above, and the points table by the job's own `point_table` with its
searches exact (scikit-learn's k-d tree) and the latent neighbours taken in the PCA map instead of
the latents: the 1,000,000 x 32 latent search (NN-descent) would take most of an hour of this
machine, and the page's costs do not depend on which neighbours the table names. Then the atlas
job in a fresh process under /usr/bin/time (wall, peak RSS), the folder's bytes per point, and in
one Chromium: page ready, pan and zoom frames beside the bare draw, tab memory (JS heap by CDP,
the renderer's and the GPU process's peak RSS, VmHWM), and the time from a zoom that brings
thumbnails on the map (at most atlas.thumbnails.on_map points in view) until their tiles are drawn.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from latent_atlas.atlas.jobs import atlas, atlas_points  # noqa: E402
from latent_atlas.data.sources import read_idx  # noqa: E402
from latent_atlas.data.store import Dataset, load_dataset, save_dataset, write_dataset  # noqa: E402
from latent_atlas.explain.maps import coords_table  # noqa: E402
from latent_atlas.io import write_parquet  # noqa: E402
from latent_atlas.latents import ID_COLUMNS, id_frame  # noqa: E402
from latent_atlas.runtime import Files, Job  # noqa: E402
from latent_atlas.schema import defaults  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CHROMIUM = "/usr/bin/chromium"


def fashion_mnist(n: int) -> Dataset:
    x = np.concatenate([read_idx(FASHION / "train-images-idx3-ubyte.gz", "images"),
                        read_idx(FASHION / "t10k-images-idx3-ubyte.gz", "images")])[:n]
    y = np.concatenate([read_idx(FASHION / "train-labels-idx1-ubyte.gz", "labels"),
                        read_idx(FASHION / "t10k-labels-idx1-ubyte.gz", "labels")])[:n]
    split = np.where(np.arange(len(x)) < 60000, "train", "test")
    return Dataset(x[:, None].astype(np.float32) / np.float32(255), y, CLASSES, split, np.arange(len(x)), "fashion")


def synthetic_maps(labels: np.ndarray, d: int = 32, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Latents (n, d) float32 and clustered 2-D maps of them (see the module docstring)."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    n, k = len(labels), int(labels.max()) + 1
    z = (rng.normal(0, 3, (k, d))[labels] + rng.normal(0, 1, (n, d))).astype(np.float32)
    angle = 2 * np.pi * labels / k
    ring = np.c_[np.cos(angle), np.sin(angle)] * 30
    sub = rng.integers(0, 4, n)  # sub-clusters, as t-SNE shows them
    tsne = ring + rng.normal(0, 1, (k * 4, 2))[labels * 4 + sub] * 4 + rng.normal(0, 1.2, (n, 2))
    umap = ring * 0.4 + rng.normal(0, 0.6, (n, 2)) * (1 + 0.5 * np.sin(3 * angle))[:, None]
    return z, {"pca": PCA(2, random_state=seed).fit_transform(z), "tsne": tsne, "umap": umap}


def predictions_and_quality(files: Files, ids: pd.DataFrame) -> None:
    """Write a predictions table (the label, one in ten replaced by a random class) and a quality
    table without numbers for the id frame `ids` to `files.predictions` and `files.quality`."""
    labels = ids["label"].to_numpy()
    rng = np.random.default_rng(1)
    pred = np.where(rng.random(len(ids)) < 0.1, rng.integers(0, labels.max() + 1, len(ids)), labels)
    write_parquet(ids.assign(pred=pred.astype(np.int64)), files.predictions)
    write_parquet(pd.DataFrame({"space": ["pca", "tsne", "umap"], "dims": 2, "k": 10,
                                "trustworthiness": np.nan, "continuity": np.nan, "knn_k": 10,
                                "knn_accuracy": np.nan, "knn_accuracy_std": np.nan, "n_samples": len(ids)}),
                  files.quality)


def build(folder: Path, n: int, latents_path: str | None, maps_path: str | None) -> tuple[Path, dict]:
    ds = fashion_mnist(n)
    files = Files(data=str(folder / "data"), latents=latents_path or str(folder / "latents.parquet"),
                  maps=maps_path or str(folder / "maps.parquet"), quality=str(folder / "quality.parquet"),
                  predictions=str(folder / "predictions.parquet"))
    save_dataset(ds, files.data)
    ids = id_frame(ds.sample_id, ds.split, ds.labels, CLASSES)
    if latents_path is not None and maps_path is None:
        from latent_atlas.explain.maps import embed_maps
        from latent_atlas.latents import read_latents

        latents = read_latents(latents_path)
        ex = defaults("#/properties/explain")
        t = time.perf_counter()
        coords, _ = embed_maps(latents.z, tsne=ex["tsne"], umap=ex["umap"], random_state=0, n_jobs=os.cpu_count() or 1)
        fit_seconds = time.perf_counter() - t
        write_parquet(coords_table(latents.ids, coords), files.maps)
    if latents_path is None:
        z, coords = synthetic_maps(ds.labels)
        write_parquet(pd.concat([ids, pd.DataFrame(z, columns=[f"z{i}" for i in range(z.shape[1])])], axis=1),
                      files.latents)
        write_parquet(coords_table(ids, coords), files.maps)
    predictions_and_quality(files, ids)
    settings = defaults("#/properties/atlas")
    times = {} if latents_path is None or maps_path is not None else {"PCA + t-SNE + UMAP fit (s)": fit_seconds}
    t = time.perf_counter()
    atlas_points(Job(input=Files(latents=files.latents, maps=files.maps, predictions=files.predictions),
                     output=Files([str(folder / "points.parquet")]), wildcards=Files(model="bench")),
                 numeric_threads=1, k=settings["k"])
    times["atlas_points job (s)"] = time.perf_counter() - t
    t = time.perf_counter()
    page = folder / "atlas.html"
    atlas(Job(input=Files(points=str(folder / "points.parquet"), quality=files.quality, latents=files.latents,
                          data=files.data), output=Files([str(page)])),
          seed=0, title=f"benchmark ({len(ds):,} points)", point_size=settings["point_size"],
          thumbnails=settings["thumbnails"], importance="")
    times["atlas page job (s)"] = time.perf_counter() - t
    return page, times


def synthetic_store(folder: Path, n: int, seed: int = 0) -> None:
    """A dataset store of `n` 28x28 grey images in 10 classes, written 8,192 at a time: each a
    blocky 7x7 pattern of its class, upscaled 4x, plus Gaussian noise (sd 24 grey levels)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    patterns = np.kron(rng.uniform(20, 235, (10, 7, 7)), np.ones((4, 4)))

    def chunks():
        for start in range(0, n, 8192):
            lab = labels[start:start + 8192]
            noise = rng.normal(0, 24, (len(lab), 28, 28))
            yield np.clip(patterns[lab] + noise, 0, 255).astype(np.uint8)[:, None]

    split = np.where(np.arange(n) < n * 6 // 7, "train", "test")
    write_dataset(folder, np.arange(n), split, labels, [f"class {c}" for c in range(10)], "synthetic", chunks())


def celeba_store(work: Path, n: int) -> Path:
    """The store of a synthetic CelebA-layout folder of `n` JPEGs (benchmarks/scale.py's
    `celeba_folder`, written under `work` once) by prepare_data's `write_store`: 64x64 RGB centre
    crops (140 px) in CelebA's own splits. Reused when it is there."""
    from latent_atlas.data.build import write_store
    from scale import celeba_folder

    store = work / f"celeba_store_{n}"
    if not (store / "samples.parquet").is_file():
        spec = {"source": "celeba", "path": str(celeba_folder(work, n)), "color": "rgb", "center_crop": 140,
                "size": 64, "split": {"method": "source"}}
        write_store("celeba", spec, 0, store, workers=os.cpu_count() or 1)
    return store


def stand_in_points(files: Files, path: Path, k: int) -> None:
    """The points table of `files` (latents, maps, predictions) at `path` by the job's own
    `point_table`, its searches exact, with the latent neighbours taken in the PCA map (see the
    module docstring)."""
    from functools import partial

    import latent_atlas.atlas.neighbours as neighbours
    from latent_atlas.atlas.jobs import point_table
    from latent_atlas.explain.maps import coords_of, method_rows

    maps = pd.read_parquet(files.maps)
    ids = method_rows(maps, "pca").reset_index(drop=True)
    coords = {m: coords_of(maps, m) for m in ("pca", "tsne", "umap")}
    search, neighbours.nearest_neighbours = neighbours.nearest_neighbours, partial(neighbours.nearest_neighbours,
                                                                                  search="exact")
    try:
        table = point_table(ids, coords["pca"], coords, k)
    finally:
        neighbours.nearest_neighbours = search
    pred = pd.read_parquet(files.predictions, columns=["pred"])["pred"].to_numpy()
    table.insert(len(ID_COLUMNS), "pred", pred)
    write_parquet(table, path, {"model": "bench", "k": k})


def atlas_job_peak(folder: Path, data: Path, title: str) -> tuple[float, float]:
    """(wall s, peak RSS in MiB) of the atlas job on `folder`'s tables and the store `data`,
    layout folder and the schema's other settings, in a fresh process under /usr/bin/time."""
    code = ("import sys; from latent_atlas.atlas.jobs import atlas; from latent_atlas.runtime import Files, Job; "
            "from latent_atlas.schema import defaults; f = sys.argv[1]; s = defaults('#/properties/atlas'); "
            "atlas(Job(input=Files(points=f + '/points.parquet', quality=f + '/quality.parquet', "
            "latents=f + '/latents.parquet', data=sys.argv[2]), output=Files([f + '/atlas.html'])), seed=0, "
            "title=sys.argv[3], point_size=s['point_size'], thumbnails=s['thumbnails'], importance='', layout='folder')")
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb %M", sys.executable, "-c", code, str(folder), str(data),
                           title], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"the atlas job on {folder} failed:\n{proc.stderr[-2000:]}")
    return wall, int(proc.stderr.strip().splitlines()[-1].split()[-1]) / 1024


def build_folder(folder: Path, n: int, celeba: bool, work: Path) -> tuple[Path, dict]:
    """The folder atlas of case `--folder n` or `--celeba n` (module docstring) in `folder`:
    (its index.html, times and peak memory of the steps)."""
    times = {}
    t = time.perf_counter()
    if celeba:
        data = celeba_store(work, n)
    else:
        data = folder / "data"
        synthetic_store(data, n)
    times["dataset store (s)"] = time.perf_counter() - t
    ds = load_dataset(data)
    files = Files(latents=str(folder / "latents.parquet"), maps=str(folder / "maps.parquet"),
                  quality=str(folder / "quality.parquet"), predictions=str(folder / "predictions.parquet"))
    t = time.perf_counter()
    ids = id_frame(ds.sample_id, ds.split, ds.labels, ds.class_names)
    z, coords = synthetic_maps(ds.labels, d=256 if celeba else 32)
    write_parquet(pd.concat([ids, pd.DataFrame(z, columns=[f"z{i}" for i in range(z.shape[1])])], axis=1),
                  files.latents)
    write_parquet(coords_table(ids, coords), files.maps)
    predictions_and_quality(files, ids)
    del z, coords
    times["latents, maps (s)"] = time.perf_counter() - t
    t = time.perf_counter()
    stand_in_points(files, folder / "points.parquet", defaults("#/properties/atlas")["k"])
    times["points table, stand-in (s)"] = time.perf_counter() - t
    wall, peak = atlas_job_peak(folder, data, f"benchmark ({n:,} points)")
    times["atlas job, layout folder (s)"] = wall
    times["atlas job peak RSS (MiB)"] = peak
    return folder / "atlas" / "index.html", times


def folder_bytes(index: Path, n: int) -> dict:
    """The folder's bytes per point: coordinates (data/xy_*), the other tables (data/*), the
    thumbnails (tiles/*) and the page; and the number of files."""
    root = index.parent
    size = lambda paths: sum(p.stat().st_size for p in paths)  # noqa: E731
    xy = list(root.glob("data/xy_*.js"))
    return {"folder size (MB)": size(root.rglob("*.*")) / 1e6,
            "bytes per point: coordinates (3 maps, uint16)": size(xy) / n,
            "bytes per point: other tables": (size(root.glob("data/*.js")) - size(xy)) / n,
            "bytes per point: thumbnails": size(root.glob("tiles/*.js")) / n,
            "page index.html (kB)": (root / "index.html").stat().st_size / 1e3,
            "files": sum(1 for p in root.rglob("*") if p.is_file())}


BARE = """([w, h, dpr, map]) => {
  const cv = document.createElement('canvas'); cv.width = w * dpr; cv.height = h * dpr;
  document.body.append(cv);
  const gl = cv.getContext('webgl2', {antialias: false, alpha: false});
  const src = (t, s) => { const o = gl.createShader(t); gl.shaderSource(o, s); gl.compileShader(o); return o; };
  const p = gl.createProgram();
  gl.attachShader(p, src(gl.VERTEX_SHADER, `#version 300 es
    in vec2 a; uniform vec2 s, o; void main() { gl_Position = vec4(a * s + o, 0., 1.); gl_PointSize = 3.; }`));
  gl.attachShader(p, src(gl.FRAGMENT_SHADER, `#version 300 es
    precision mediump float; out vec4 c; void main() { c = vec4(.1, .3, .7, 1.); }`));
  gl.bindAttribLocation(p, 0, 'a'); gl.linkProgram(p); gl.useProgram(p);
  const data = window.atlas.coordinates(map);
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < data.length; i += 2) { x0 = Math.min(x0, data[i]); x1 = Math.max(x1, data[i]); y0 = Math.min(y0, data[i + 1]); y1 = Math.max(y1, data[i + 1]); }
  const b = gl.createBuffer(); gl.bindBuffer(gl.ARRAY_BUFFER, b); gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
  gl.enableVertexAttribArray(0); gl.vertexAttribPointer(0, 2, gl.FLOAT, false, 0, 0);
  const sx = 1.8 / (x1 - x0), sy = 1.8 / (y1 - y0), us = gl.getUniformLocation(p, 's'), uo = gl.getUniformLocation(p, 'o');
  const px = new Uint8Array(4);
  let r = 0;
  window.bareFrame = () => {  // one frame: clear, set the view, draw every point, wait for it
    const t0 = performance.now();
    gl.viewport(0, 0, cv.width, cv.height); gl.clearColor(1, 1, 1, 1); gl.clear(gl.COLOR_BUFFER_BIT);
    gl.uniform2f(us, sx, sy); gl.uniform2f(uo, -(x0 + x1) / 2 * sx + (r++ % 2) * 1e-3, -(y0 + y1) / 2 * sy);
    gl.drawArrays(gl.POINTS, 0, data.length / 2);
    gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
    return performance.now() - t0;
  };
}"""


def frame_medians(page, size: list, map_name: str, reps: int) -> tuple[float, float, float]:
    """Median ms of a bare WebGL2 drawArrays of map `map_name`'s points in a canvas of the map's
    `size` ([w, h, dpr]), and of a pan and a zoom frame of that map; interleaved, `reps` of each,
    the first left out, so that load on the shared machine hits all three alike."""
    page.evaluate(BARE, [size[0], size[1], size[2], map_name])
    bare, pans, zooms = [], [], []
    for r in range(reps):
        bare.append(page.evaluate("window.bareFrame()"))
        pans.append(page.evaluate(f"window.atlas.pan({map_name!r}, {7 if r % 2 else -7}, 3)"))
        zooms.append(page.evaluate(f"window.atlas.zoom({map_name!r}, {1.1 if r % 2 else 1 / 1.1})"))
    return statistics.median(bare[1:]), statistics.median(pans[1:]), statistics.median(zooms[1:])


def _chromium(p):
    """(browser, tab) of headless Debian Chromium, software WebGL, a 1500 x 820 window."""
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
    return browser, browser.new_page(viewport={"width": 1500, "height": 820})


def measure(page_path: Path, reps: int) -> dict:
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as p:
        browser, page = _chromium(p)
        t = time.perf_counter()
        page.goto(page_path.as_uri())
        page.wait_for_function("window.atlas.ready || window.atlas.error", timeout=120000, polling=20)
        out["page and thumbnails ready, wall from goto (ms)"] = (time.perf_counter() - t) * 1000
        assert page.evaluate("window.atlas.error") is None, page.evaluate("window.atlas.error")
        timings = page.evaluate("window.atlas.timings")
        out["page ready: maps drawn and interactive, from navigation start (ms)"] = timings["ready_ms"]
        out["thumbnails decoded, from navigation start (ms)"] = timings["thumbnails_ms"]
        out["HTML parsed, from navigation start (ms)"] = timings["parsed_ms"]
        out["decode arrays (ms)"] = timings["decode_ms"]
        out["build grids (ms)"] = timings["grid_ms"]
        size = page.evaluate("(() => { const c = document.querySelector('.map canvas'); return [c.clientWidth, c.clientHeight, devicePixelRatio]; })()")
        out["map canvas (CSS px)"] = f"{size[0]}x{size[1]} (dpr {size[2]})"
        bare, pan, zoom = frame_medians(page, size, "tsne", reps)
        out["bare drawArrays frame, median (ms)"] = bare
        out["atlas pan frame, median (ms)"] = pan
        out["atlas zoom frame, median (ms)"] = zoom
        out["pan / bare"] = out["atlas pan frame, median (ms)"] / out["bare drawArrays frame, median (ms)"]
        out["zoom / bare"] = out["atlas zoom frame, median (ms)"] / out["bare drawArrays frame, median (ms)"]
        page.evaluate("window.atlas.reset()")
        hover = page.evaluate("""() => { const r = document.querySelector('.map[data-map=tsne] canvas.overlay').getBoundingClientRect();
            let seed = 1; const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
            const pts = Array.from({length: 2000}, () => [r.left + rnd() * r.width, r.top + rnd() * r.height]);
            let hits = 0; const each = [], t0 = performance.now();
            for (const [x, y] of pts) { const h = window.atlas.hoverLookup('tsne', x, y); if (h.id !== null) hits++; each.push(h.ms); }
            const mean = (performance.now() - t0) / pts.length; each.sort((a, b) => a - b);
            return {mean, p99: each[Math.floor(0.99 * each.length)], worst: each[each.length - 1], hits}; }""")
        out["hover lookup, mean of 2000 (ms)"] = hover["mean"]
        out["hover lookup, 99th percentile (ms; timer resolution 0.1)"] = hover["p99"]
        out["hover lookup, worst (ms)"] = hover["worst"]
        out["hover lookups that found a point"] = f"{hover['hits']} of 2000"
        clicks = page.evaluate("""() => { const ids = window.atlas.sampleIds(), out = [];
            for (let j = 0; j < 25; j++) out.push(window.atlas.focus(ids[(j * 2797) % ids.length]));
            return out; }""")
        out["click neighbour display, median of 24 (ms)"] = statistics.median(clicks[1:])
        out["click neighbour display, 90th percentile (ms)"] = sorted(clicks[1:])[int(0.9 * 24)]
        out["click neighbour display, worst (ms)"] = max(clicks[1:])
        out["colour by density, all maps (ms)"] = page.evaluate("window.atlas.colourBy('density')")
        lasso = "(() => { const t0 = performance.now(); const n = window.atlas.select('tsne', %s); return [n, performance.now() - t0]; })()"
        count, ms = page.evaluate(lasso % "[[-40, -40], [0, -40], [0, 40], [-40, 40]]")
        out["lasso select + summary, first (reads the sprite sheets) (ms)"] = ms
        out["lasso selected"] = count
        count, ms = page.evaluate(lasso % "[[-40, -40], [0, -40], [0, 0], [-40, 0]]")
        out["lasso select + summary, next (ms)"] = ms
        page.screenshot(path=str(page_path.with_suffix(".png")))
        browser.close()
    return out


def chromium_peaks() -> dict:
    """Peak RSS (VmHWM, MB) of this process's Chromium renderers (the largest) and GPU process
    (SwiftShader's buffers live there)."""
    import psutil

    peaks = {"renderer": 0.0, "gpu-process": 0.0}
    for proc in psutil.Process().children(recursive=True):
        try:
            kind = next((a[7:] for a in proc.cmdline() if a.startswith("--type=")), None)
            if kind in peaks:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
                peaks[kind] = max(peaks[kind], kb / 1e3)
        except (psutil.Error, OSError):
            continue
    return peaks


# From a fitted view of map `map`: centre sample `id`, zoom in 2x at a time until thumbnails are
# placed on the map (at most on_map points in view); then the ms until every tile they need is
# drawn (no tile pending), polled every 5 ms, and how many tiles were loaded for it. The reset's
# draws of every map are let finish first (a frame and a task): in software they take seconds at
# 1,000,000 points and would otherwise block the page while it waits for the tiles.
ZOOM_TO_THUMBNAILS = """async ([map, id]) => {
  window.atlas.reset();
  await new Promise(done => requestAnimationFrame(() => setTimeout(done, 0)));
  const r = document.querySelector(`.map[data-map=${map}] canvas.overlay`).getBoundingClientRect();
  const p = window.atlas.screenPosition(id, map);
  window.atlas.pan(map, r.left + r.width / 2 - p.x, r.top + r.height / 2 - p.y);
  if (!window.tilesArrived) { const hand = window.ATLAS_TILE; window.tilesArrived = 0;
    window.ATLAS_TILE = (t, url) => { window.tilesArrived++; hand(t, url); }; }
  const before = window.tilesArrived;
  let steps = 0, frame = 0;
  while (!window.atlas.thumbnails(map).boxes.length && steps < 40) { frame = window.atlas.zoom(map, 2); steps++; }
  const t0 = performance.now();
  while (window.atlas.tiles().pending) await new Promise(done => setTimeout(done, 5));
  return {ms: performance.now() - t0, tiles: window.tilesArrived - before, steps, frame,
          boxes: window.atlas.thumbnails(map).boxes.length};
}"""


def measure_folder(index: Path, reps: int) -> dict:
    """The folder page's costs in one headless Chromium (module docstring)."""
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as p:
        browser, page = _chromium(p)
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        t = time.perf_counter()
        page.goto(index.as_uri())
        page.wait_for_function("window.atlas.ready || window.atlas.error", timeout=600000, polling=20)
        out["ready, wall from goto (ms)"] = (time.perf_counter() - t) * 1000
        out["atlas.ready seen (main thread free), from navigation start (ms)"] = page.evaluate("performance.now()")
        assert page.evaluate("window.atlas.error") is None, page.evaluate("window.atlas.error")
        timings = page.evaluate("window.atlas.timings")
        out["page ready: maps laid out, drawing sent, from navigation start (ms)"] = timings["ready_ms"]
        out["load and decode arrays (ms)"] = timings["decode_ms"]
        out["build grids (ms)"] = timings["grid_ms"]
        heap = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        out["JS heap used at ready (MB)"] = heap["JSHeapUsedSize"] / 1e6
        # a hover answered while the maps are still being drawn: the page takes input
        box = page.locator(".map canvas.overlay").first.bounding_box()
        t = page.evaluate("performance.now()")
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.evaluate("0")
        out["a pointer move answered, from navigation start (ms)"] = page.evaluate("performance.now()")
        out["of which the move itself (ms)"] = out["a pointer move answered, from navigation start (ms)"] - t
        page.wait_for_function("!window.atlas.drawing()", timeout=600000, polling=20)
        timings = page.evaluate("window.atlas.timings")
        out["maps shown (coarse first where > 65,536 points), from navigation start (ms)"] = timings["shown_ms"]
        out["maps shown with every point, from navigation start (ms)"] = timings["drawn_ms"]
        size = page.evaluate("(() => { const c = document.querySelector('.map canvas'); return [c.clientWidth, c.clientHeight, devicePixelRatio]; })()")
        out["map canvas (CSS px)"] = f"{size[0]}x{size[1]} (dpr {size[2]})"
        bare, pan, zoom = frame_medians(page, size, "tsne", reps)
        out["bare drawArrays frame, median (ms)"] = bare
        out["atlas pan frame, median (ms)"] = pan
        out["atlas zoom frame, median (ms)"] = zoom
        out["pan / bare"] = pan / bare
        out["zoom / bare"] = zoom / bare
        ids = page.evaluate("window.atlas.sampleIds()")
        rng = np.random.default_rng(2)
        for map_name in ("pca", "tsne"):
            runs = [page.evaluate(ZOOM_TO_THUMBNAILS, [map_name, int(ids[i])]) for i in rng.choice(len(ids), 4)]
            out[f"{map_name}: zoom steps (2x) to thumbnails, thumbnails drawn"] = \
                ", ".join(f"{r['steps']}: {r['boxes']}" for r in runs)
            out[f"{map_name}: tiles loaded per view"] = ", ".join(str(r["tiles"]) for r in runs)
            out[f"{map_name}: tiles drawn after the zoom stops, each (ms)"] = ", ".join(f"{r['ms']:.0f}" for r in runs)
            out[f"{map_name}: the zoom frame that placed them, each (ms)"] = ", ".join(f"{r['frame']:.0f}" for r in runs)
        heap = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        out["JS heap used at the end (MB)"] = heap["JSHeapUsedSize"] / 1e6
        out["JS heap total at the end (MB)"] = heap["JSHeapTotalSize"] / 1e6
        peaks = chromium_peaks()
        out["renderer peak RSS, VmHWM (MB)"] = peaks["renderer"]
        out["GPU process peak RSS, VmHWM (MB)"] = peaks["gpu-process"]
        out["tiles loaded in all; decoded at the end"] = page.evaluate("[window.tilesArrived, window.atlas.tiles().loaded]")
        page.screenshot(path=str(index.parent.with_suffix(".png")))
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=70000)
    parser.add_argument("--quick", action="store_true", help="5,000 points: a smoke check")
    parser.add_argument("--reps", type=int, default=12)
    parser.add_argument("--latents")
    parser.add_argument("--maps")
    parser.add_argument("--keep", help="folder to keep the page and its screenshot in")
    parser.add_argument("--page", help="measure this atlas.html (built before) instead of building one")
    parser.add_argument("--folder", type=int, metavar="N", help="the folder atlas of N synthetic points")
    parser.add_argument("--celeba", type=int, metavar="N", help="the folder atlas of N CelebA-shaped points")
    parser.add_argument("--rebuild", metavar="STORE", help="with --folder/--celeba and --keep: run only the atlas "
                        "job again on the tables kept in --keep and the dataset store STORE, then measure")
    parser.add_argument("--work", default="/tmp/latent-atlas-scale",
                        help="where --celeba keeps its JPEG folder and store (as benchmarks/scale.py)")
    args = parser.parse_args()
    if args.folder or args.celeba:
        n = args.folder or args.celeba
        folder = Path(args.keep or tempfile.mkdtemp(prefix="atlas-folder-bench-"))
        folder.mkdir(parents=True, exist_ok=True)
        index = folder / "atlas" / "index.html"
        if args.rebuild:  # the tables of an earlier build in --keep, its dataset store given
            wall, peak = atlas_job_peak(folder, Path(args.rebuild), f"benchmark ({n:,} points)")
            times = {"atlas job, layout folder (s)": wall, "atlas job peak RSS (MiB)": peak}
        else:
            times = {} if args.page else build_folder(folder, n, bool(args.celeba), Path(args.work))[1]
        index = Path(args.page) if args.page else index
        print_table({"points": n, **times, **folder_bytes(index, n), **measure_folder(index, args.reps)})
        return
    if args.quick:
        args.n = 5000
    folder = Path(args.keep or tempfile.mkdtemp(prefix="atlas-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    if args.page:
        page, times = Path(args.page), {}
    else:
        page, times = build(folder, args.n, args.latents, args.maps)
    results = {"points": args.n, **times, "file size (MB)": os.path.getsize(page) / 1e6}
    text = page.read_text()
    sprites = sum(len(b) for b in text.split('id="s-')[1:])
    results["of which thumbnails (MB)"] = sprites / 1e6
    results.update(measure(page, args.reps))
    print_table(results)


def print_table(results: dict) -> None:
    """`results` as a markdown table, floats to 3 significant digits."""
    print("| measure | value |\n|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value:.3g} |" if isinstance(value, float) else f"| {key} | {value} |")


if __name__ == "__main__":
    main()
