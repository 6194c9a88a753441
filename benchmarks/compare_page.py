"""The comparison page at 3 models x 70,000 points: build time, file size, and the page's costs.

Builds `results/figures/{dataset}/compare.html` through the stage's job (`compare.jobs.compare_page`,
schema defaults: k = 10, every sample with a WebP thumbnail) for three models of the 70,000
Fashion-MNIST images (train + test, /usr/share/datasets/fashion-mnist): synthetic latents of
different widths (32-D Gaussian blobs per class; 16-D and 24-D nonlinear maps of them plus
noise: related models, not rotations of each other), each with PCA and clustered stand-ins for
t-SNE and UMAP (benchmarks/atlas.py: the page's costs depend on how many points and how crowded
the grid cells are, not on the method that placed them). The pairs' per-point kNN overlap is the
stage's own (`compare.measures.knn_overlap`).

Then in one headless Chromium (software WebGL2 here: SwiftShader), side by side, interleaved:
- a bare WebGL2 drawArrays of one map's 70,000 points (the floor) against one pan and one zoom
  frame of a map of the page (9 maps on it);
- linked hover: the lookup under the pointer and the highlight drawn on all 9 maps, rasterised
  (`atlas.hover`), at random positions, with and without a clicked point's neighbour markers;
- a click: each model's neighbours on all 9 maps and the side panel; colouring by a pair's
  overlap; page ready.

    python benchmarks/compare_page.py            # 3 x 70,000 points
    python benchmarks/compare_page.py --quick    # 3 x 5,000 points: a smoke check
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from atlas import CHROMIUM, CLASSES, fashion_mnist, frame_medians, synthetic_maps  # noqa: E402
from latent_atlas.compare.jobs import compare_page  # noqa: E402
from latent_atlas.compare.measures import knn_overlap  # noqa: E402
from latent_atlas.data.store import save_dataset  # noqa: E402
from latent_atlas.explain.maps import coords_table  # noqa: E402
from latent_atlas.io import write_parquet  # noqa: E402
from latent_atlas.latents import id_frame  # noqa: E402
from latent_atlas.runtime import Files, Job  # noqa: E402
from latent_atlas.schema import defaults  # noqa: E402

MODELS = ["model_a", "model_b", "model_c"]


def three_models(labels: np.ndarray) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(latents, maps) of three related models of the same samples."""
    z, maps = synthetic_maps(labels, d=32, seed=0)
    out = [(z, maps)]
    for seed, d in ((1, 16), (2, 24)):
        rng = np.random.default_rng(seed)
        w = np.linalg.qr(rng.normal(size=(32, d)))[0]
        zi = (np.tanh(z @ w / 4) + rng.normal(scale=0.15, size=(len(z), d))).astype(np.float32)
        _, mi = synthetic_maps(labels, d=8, seed=seed)
        mi["pca"] = maps["pca"] @ np.array([[0.0, 1.0], [-1.0, 0.0]]) + rng.normal(0, 0.5, (len(z), 2))
        out.append((zi, mi))
    return out


def build(folder: Path, n: int) -> tuple[Path, dict]:
    ds = fashion_mnist(n)
    save_dataset(ds, str(folder / "data"))
    ids = id_frame(ds.sample_id, ds.split, ds.labels, CLASSES)
    inputs, times = {"data": str(folder / "data")}, {}
    models = three_models(ds.labels)
    for i, (z, maps) in enumerate(models):
        inputs[f"latents_{i}"] = str(folder / f"latents_{i}.parquet")
        inputs[f"maps_{i}"] = str(folder / f"maps_{i}.parquet")
        write_parquet(pd.concat([ids, pd.DataFrame(z, columns=[f"z{j}" for j in range(z.shape[1])])], axis=1),
                      inputs[f"latents_{i}"])
        write_parquet(coords_table(ids, maps), inputs[f"maps_{i}"])
    pairs = [(0, 1), (0, 2), (1, 2)]
    t = time.perf_counter()
    for j, (a, b) in enumerate(pairs):
        inputs[f"points_{j}"] = str(folder / f"points_{j}.parquet")
        overlap = knn_overlap(models[a][0].astype(np.float64), models[b][0].astype(np.float64), 10, random_state=0)
        write_parquet(ids.assign(knn_overlap_k10=overlap), inputs[f"points_{j}"])
    times["kNN overlap of 3 pairs (s)"] = time.perf_counter() - t
    table = pd.DataFrame({"a": [MODELS[a] for a, _ in pairs], "b": [MODELS[b] for _, b in pairs],
                          "n_samples": n, "linear_cka": [0.9, 0.8, 0.7], "knn_overlap_k10": [0.3, 0.2, 0.1]})
    inputs["table"] = str(folder / "compare.parquet")
    write_parquet(table, inputs["table"])
    settings = defaults("#/properties/atlas")
    page = folder / "compare.html"
    t = time.perf_counter()
    compare_page(Job(input=Files(**inputs), output=Files([str(page)]), wildcards=Files(dataset="fashion")),
                 seed=0, k=10, point_size=settings["point_size"], thumbnails=settings["thumbnails"])
    times["compare_page job (s)"] = time.perf_counter() - t
    return page, times


HOVER = """(withFocus) => {
  if (withFocus) window.atlas.focus(window.atlas.sampleIds()[4321 % window.atlas.sampleIds().length]);
  else window.atlas.focus(null);
  const maps = window.atlas.maps(), out = [];
  let seed = 7; const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  let hits = 0;
  for (let j = 0; j < 300; j++) {
    const map = maps[j % maps.length], r = document.querySelector(`.map[data-map="${map}"] canvas.overlay`).getBoundingClientRect();
    const h = window.atlas.hover(map, r.left + rnd() * r.width, r.top + rnd() * r.height);
    if (h.id !== null) hits++; out.push(h.ms);
  }
  out.sort((a, b) => a - b);
  return {mean: out.reduce((a, b) => a + b, 0) / out.length, median: out[150], p99: out[Math.floor(0.99 * out.length)],
          worst: out[out.length - 1], hits};
}"""


def measure(page_path: Path, reps: int) -> dict:
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(page_path.as_uri())
        page.wait_for_function("window.atlas.ready || window.atlas.error", timeout=300000, polling=50)
        assert page.evaluate("window.atlas.error") is None, page.evaluate("window.atlas.error")
        timings = page.evaluate("window.atlas.timings")
        out["page ready: maps drawn and interactive, from navigation start (ms)"] = timings["ready_ms"]
        out["thumbnails decoded, from navigation start (ms)"] = timings["thumbnails_ms"]
        maps = page.evaluate("window.atlas.maps()")
        out["maps on the page"] = len(maps)
        size = page.evaluate("(() => { const c = document.querySelector('.map canvas'); return [c.clientWidth, c.clientHeight, devicePixelRatio]; })()")
        out["map canvas (CSS px)"] = f"{size[0]}x{size[1]} (dpr {size[2]})"
        target = maps[1]  # the first model's t-SNE map
        bare, pan, zoom = frame_medians(page, size, target, reps)
        out["bare drawArrays frame, median (ms)"] = bare
        out["pan frame, median (ms)"] = pan
        out["zoom frame, median (ms)"] = zoom
        out["pan / bare"] = out["pan frame, median (ms)"] / out["bare drawArrays frame, median (ms)"]
        out["zoom / bare"] = out["zoom frame, median (ms)"] / out["bare drawArrays frame, median (ms)"]
        page.evaluate("window.atlas.reset()")
        for focus, label in ((False, "linked hover, 9 maps"), (True, "linked hover, 9 maps, a point clicked")):
            hover = page.evaluate(HOVER, focus)
            out[f"{label}: mean / median (ms)"] = f"{hover['mean']:.2f} / {hover['median']:.2f}"
            out[f"{label}: 99th percentile / worst (ms)"] = f"{hover['p99']:.2f} / {hover['worst']:.2f}"
            out[f"{label}: lookups that found a point"] = f"{hover['hits']} of 300"
        clicks = page.evaluate("""() => { const ids = window.atlas.sampleIds(), out = [];
            for (let j = 0; j < 25; j++) out.push(window.atlas.focus(ids[(j * 2797) % ids.length]));
            return out; }""")
        out["click: each model's neighbours on 9 maps, median / worst of 24 (ms)"] = \
            f"{statistics.median(clicks[1:]):.1f} / {max(clicks[1:]):.1f}"
        out["colour by a pair's overlap, 9 maps (ms)"] = page.evaluate("window.atlas.colourBy('overlap:0')")
        page.screenshot(path=str(page_path.with_suffix(".png")))
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=70000)
    parser.add_argument("--quick", action="store_true", help="3 x 5,000 points: a smoke check")
    parser.add_argument("--reps", type=int, default=12)
    parser.add_argument("--keep", help="folder to keep the page and its screenshot in")
    parser.add_argument("--page", help="measure this compare.html (built before) instead of building one")
    args = parser.parse_args()
    if args.quick:
        args.n = 5000
    folder = Path(args.keep or tempfile.mkdtemp(prefix="compare-page-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    page, times = (Path(args.page), {}) if args.page else build(folder, args.n)
    results = {"models x points": f"3 x {args.n:,}", **times, "file size (MB)": os.path.getsize(page) / 1e6}
    results.update(measure(page, args.reps))
    print(f"page: {page}")
    print("| measure | value |\n|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value:.3g} |" if isinstance(value, float) else f"| {key} | {value} |")


if __name__ == "__main__":
    main()
