"""Regenerate docs/gallery/*.png, the small copies of the main figures that docs/gallery.md shows.

    python scripts/make_gallery.py [--results DIR ...] [--out docs/gallery]

Each entry of GALLERY names a figure of a results tree (`results/figures/...` of the default
config, `config/config.yaml`; the spoken-digit figures of `config/examples/fsdd.yaml`) and the
gallery file it becomes (the attributes figures: of config/examples/synthetic_factors.yaml; the
anomaly figures: of config/examples/fashion_one_class.yaml, daphnet.yaml and fsdd_waveforms.yaml). Every `--results` tree is searched in order (default: results); a figure
found in none is reported and left as it is. Downscaling is deterministic: the same figure gives
the same bytes (Lanczos resize to at most MAX_WIDTH pixels, a 256-colour median-cut palette
without dithering, PNG without metadata), and each file must stay under MAX_BYTES.

PAGES names the interactive pages (the latent atlas, the importance explorer): each is opened in
headless Chromium (Playwright, Debian's /usr/bin/chromium, no network), screenshot at a fixed
viewport, then downscaled the same way. Without Playwright or Chromium they are reported as not
made and left as they are. A browser's rendering can differ by a few pixels between versions, so
these two images are not promised byte for byte.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MAX_WIDTH = 900
MAX_BYTES = 150_000
MAX_TOTAL = 4_000_000

# (figure under a results tree, gallery file name[, (top, bottom) share of the height to keep]), in
# the order of docs/gallery.md. A crop keeps tall figures readable within MAX_BYTES.
FM = "figures/fashion_mnist"
GALLERY = [
    ("figures/data/fashion_mnist_examples.png", "data_examples.png"),
    (f"{FM}/cnn/model_training_curves.png", "model_training_curves.png"),
    (f"{FM}/conv_ae/model_reconstructions.png", "model_reconstructions.png"),
    (f"{FM}/cnn/model_confusion_matrix.png", "model_confusion_matrix.png"),
    (f"{FM}/dense_ae/model_first_layer_weights.png", "model_first_layer_weights.png"),
    (f"{FM}/conv_vae/geometry_axes.png", "geometry_axes.png"),
    (f"{FM}/conv_vae/geometry_radius.png", "geometry_radius.png"),
    (f"{FM}/conv_ae/geometry_pca.png", "geometry_pca.png"),
    (f"{FM}/conv_ae/geometry_planes.png", "geometry_planes.png"),
    (f"{FM}/conv_ae/geometry_umap.png", "geometry_umap.png"),
    (f"{FM}/conv_ae/geometry_neighbours.png", "geometry_neighbours.png"),
    (f"{FM}/conv_vae/geometry_random_points.png", "geometry_random_points.png"),
    (f"{FM}/geometry_compare.png", "geometry_compare.png"),
    (f"{FM}/cnn/explain_maps.png", "explain_maps.png"),
    (f"{FM}/cnn/explain_pca.png", "explain_pca.png"),
    (f"{FM}/cnn/explain_ridge.png", "explain_ridge.png"),
    (f"{FM}/cnn/explain_samples.png", "explain_samples.png"),
    (f"{FM}/dense_ae/importance_classes.png", "importance_classes.png"),
    (f"{FM}/dense_ae/importance_class_6.png", "importance_class_6.png"),
    (f"{FM}/dense_ae/importance_directional.png", "importance_directional.png"),
    (f"{FM}/dense_ae/importance_variants.png", "importance_variants.png"),
    # the screenshot `benchmarks/atlas.py --folder 1000000 --keep DIR` leaves as DIR/atlas.png
    # (the t-SNE map zoomed to thumbnails; make_gallery.py --results DIR)
    ("atlas.png", "atlas_folder_1m.png"),
    (f"{FM}/compare_cka.png", "compare_cka.png"),
    (f"{FM}/compare_trajectory.png", "compare_trajectory.png"),
    (f"{FM}/compare_overlap.png", "compare_overlap.png"),
    (f"{FM}/compare_dimensions.png", "compare_dimensions.png"),
    (f"{FM}/mlp/featureviz_tv_sweep.png", "featureviz_tv_sweep.png", (0.0, 0.426)),  # title + 4 classes
    (f"{FM}/mlp/featureviz_gallery_layer7.png", "featureviz_gallery_layer7.png"),
    (f"{FM}/mlp/featureviz_unregularised.png", "featureviz_unregularised.png"),
    (f"{FM}/mlp/featureviz_adversarial.png", "featureviz_adversarial.png"),
    (f"{FM}/mlp/featureviz_dead_neurons.png", "featureviz_dead_neurons.png"),
    ("figures/shapes/attributes_scores.png", "attributes_scores.png"),
    ("figures/shapes/shapes_vae/attributes_probes.png", "attributes_probes.png"),
    ("figures/shapes/shapes_vae/attributes_dimensions.png", "attributes_dimensions.png"),
    ("figures/shapes/shapes_vae/attributes_axis_traversals.png", "attributes_axis_traversals.png", (0.0, 0.52)),
    ("figures/shapes/shapes_ae/attributes_traversals.png", "attributes_traversals.png"),
    ("figures/shapes/shapes_ae/attributes_arithmetic.png", "attributes_arithmetic.png"),
    ("figures/fashion_mnist/ae_bag/anomaly_summary.png", "anomaly_fashion_summary.png"),
    ("figures/fashion_mnist/ae_tshirt/anomaly_curves.png", "anomaly_fashion_curves.png"),
    ("figures/fashion_mnist/ae_tshirt/anomaly_top.png", "anomaly_fashion_top.png"),
    ("figures/daphnet/daphnet_ae/anomaly_top.png", "anomaly_daphnet_top.png"),
    ("figures/daphnet/daphnet_ae/importance_class_0.png", "importance_daphnet_class.png"),
    ("figures/fsdd_wave/voices_ae/anomaly_distribution.png", "anomaly_fsdd_distribution.png"),
    ("figures/data/fsdd_examples.png", "fsdd_examples.png"),
    ("figures/fsdd/fsdd_ae/model_reconstructions.png", "fsdd_reconstructions.png"),
    ("figures/fsdd/fsdd_ae/importance_classes.png", "fsdd_importance_classes.png"),
    ("figures/fsdd/fsdd_ae/importance_dimension.png", "fsdd_importance_dimension.png"),
    ("figures/fsdd/fsdd_ae/explain_maps.png", "fsdd_explain_maps.png"),
]

CHROMIUM = "/usr/bin/chromium"
# (page under a results tree, gallery file name, viewport (w, h), JavaScript condition to wait for).
PAGES = [
    (f"{FM}/cnn/atlas.html", "atlas.png", (1400, 800), "window.atlas.ready || window.atlas.error"),
    (f"{FM}/compare.html", "compare_page.png", (1500, 1000), "window.atlas.ready || window.atlas.error"),
    ("fashion_mnist/dense_ae/importance/explorer.html", "importance_explorer.png", (1200, 820),
     "document.querySelector('#maps .map canvas') !== null"),
    ("fsdd/fsdd_ae/importance/explorer.html", "fsdd_importance_explorer.png", (1200, 820),
     "document.querySelector('#maps .map canvas') !== null"),
    # images on the map: the one-class example's atlas (3,000 test images), UMAP enlarged and
    # zoomed in on its median point
    ("figures/fashion_mnist/ae_tshirt/atlas.html", "atlas_images_on_map.png", (1400, 900),
     "window.atlas.ready || window.atlas.error", "ZOOM_IN:umap:8"),
]

# What a PAGES entry's action does before the screenshot: ZOOM_IN:<map>:<factor> enlarges the map,
# centres it on the median screen position of its points and zooms in by the factor.
ZOOM_IN = """([map, factor]) => { const a = window.atlas;
  const p = a.sampleIds().map(id => a.screenPosition(id, map)), med = v => v.sort((x, y) => x - y)[v.length >> 1];
  const r = document.querySelector(`.map[data-map=${map}] canvas.overlay`).getBoundingClientRect();
  a.pan(map, r.left + r.width / 2 - med(p.map(q => q.x)), r.top + r.height / 2 - med(p.map(q => q.y)));
  a.zoom(map, factor); }"""


def downscale(path: Path, max_width: int = MAX_WIDTH, crop: tuple[float, float] | None = None) -> bytes:
    """The PNG bytes of `path` (rows `crop` = (top, bottom) shares of its height, if given) at most
    `max_width` wide, on a 256-colour palette (deterministic)."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        if crop is not None:
            img = img.crop((0, round(crop[0] * img.height), img.width, round(crop[1] * img.height)))
        if img.width > max_width:
            img = img.resize((max_width, round(img.height * max_width / img.width)), Image.Resampling.LANCZOS)
        img = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _write_small(found: Path, target: Path, crop: tuple[float, float] | None = None) -> None:
    width, data = MAX_WIDTH, downscale(found, crop=crop)
    while len(data) > MAX_BYTES and width > 300:  # very detailed figures: smaller still
        width -= 100
        data = downscale(found, width, crop)
    target.write_bytes(data)


def screenshot(page: Path, target: Path, viewport: tuple[int, int], ready: str, action: str = "") -> None:
    """A PNG of the self-contained `page` in headless Chromium, offline, once `ready` holds (and,
    with `action`, after it ran: see ZOOM_IN)."""
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="gallery-chromium-"))
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp / "config"), XDG_CACHE_HOME=str(tmp / "cache"))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, env=env,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            tab = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            tab.route("**/*", lambda r: r.continue_() if r.request.url.split(":", 1)[0] in
                      ("file", "data", "blob") else r.abort())
            tab.goto(page.resolve().as_uri())
            tab.wait_for_function(ready, timeout=60_000)
            if action.startswith("ZOOM_IN:"):
                _, name, factor = action.split(":")
                tab.evaluate("map => window.atlas.enlarge(map)", name)
                tab.wait_for_timeout(500)  # the maps are laid out again
                tab.evaluate(ZOOM_IN, [name, float(factor)])
                tab.wait_for_timeout(1500)  # the thumbnails fade in
            tab.mouse.move(1, 1)
            tab.screenshot(path=str(target))
            browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_gallery(results: list[Path], out: Path, pages: bool = True) -> tuple[list[str], list[str]]:
    """Write every GALLERY figure (and, with `pages`, every PAGES screenshot) found under `results`
    to `out`; returns (written, missing)."""
    out.mkdir(parents=True, exist_ok=True)
    written, missing = [], []
    for source, name, *crop in GALLERY:
        found = next((r / source for r in results if (r / source).is_file()), None)
        if found is None:
            missing.append(source)
            continue
        _write_small(found, out / name, crop[0] if crop else None)
        written.append(name)
    if not pages:
        return written, missing
    browser = Path(CHROMIUM).exists()
    try:
        import playwright  # noqa: F401
    except ImportError:
        browser = False
    for source, name, viewport, ready, *action in PAGES:
        found = next((r / source for r in results if (r / source).is_file()), None)
        if found is None or not browser:
            missing.append(source + ("" if browser else " (needs Playwright and Debian's chromium)"))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            shot = Path(tmp) / "page.png"
            screenshot(found, shot, viewport, ready, *action)
            _write_small(shot, out / name)
        written.append(name)
    return written, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", action="append", type=Path,
                        help="results tree(s) to take the figures from (default: results)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "gallery")
    args = parser.parse_args(argv)
    written, missing = make_gallery(args.results or [Path("results")], args.out)
    total = sum((args.out / n).stat().st_size for n in written)
    print(f"wrote {len(written)} images ({total / 1e6:.2f} MB) to {args.out}")
    for source in missing:
        print(f"not found in any results tree (left as it was): {source}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
