"""The folder atlas (atlas.layout): a page that opens from file:// with its data in script files
beside it, built from the synthetic inputs of tests/atlas_helpers.py in both layouts and driven in
headless Chromium (Playwright, no network) side by side with the single-file page."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atlas_helpers import open_page, synthetic_inputs
from latent_atlas.atlas.folder import (CHUNK_BYTES, atomic_folder, data_chunks, estimated_page_mb, page_layout,
                                       quadtree_order, quantise_coordinates, tile_runs, tile_size)
from latent_atlas.atlas.jobs import atlas, atlas_points
from latent_atlas.data.store import load_dataset
from latent_atlas.io import read_parquet
from latent_atlas.runtime import Files, Job
from latent_atlas.schema import defaults

K = 5
TILE_POINTS = 64


def _build(folder: Path, **settings) -> tuple[Files, Path]:
    """The jobs atlas_points and atlas on `synthetic_inputs`, with atlas `settings` (layout...)."""
    files = synthetic_inputs(folder)
    points = folder / "points.parquet"
    atlas_points(Job(input=Files(latents=files.latents, maps=files.maps, predictions=files.predictions),
                     output=Files([str(points)]), wildcards=Files(model="m")), numeric_threads=1, k=K)
    page = folder / "atlas.html"
    thumbnails = {**defaults("#/properties/atlas")["thumbnails"], "format": "png"}
    atlas(Job(input=Files(points=str(points), quality=files.quality, latents=files.latents, data=files.data),
              output=Files([str(page)])),
          seed=0, title="synthetic / m", point_size=3, thumbnails=thumbnails, importance="", **settings)
    return files, page


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    single = _build(tmp_path_factory.mktemp("single"), layout="single")
    folder = _build(tmp_path_factory.mktemp("folder"), layout="folder", tile_points=TILE_POINTS)
    return single, folder


def test_auto_tile_size_keeps_a_sheet_near_a_million_pixels():
    assert tile_size(300, 64, 64) == 300  # a number is taken as it is
    assert tile_size("auto", 28, 28) == 1024 and 1024 * 28 * 28 <= 2 ** 20  # capped at 1,024
    assert tile_size("auto", 64, 64) == 256 and tile_size("auto", 16, 64) == 1024
    assert tile_size("auto", 100, 100) == 104 and 105 * 100 * 100 > 2 ** 20
    assert tile_size("auto", 2000, 2000) == 1


def test_quantised_coordinates_and_quadtree_tiles():
    rng = np.random.default_rng(0)
    xy = rng.normal(0, 3, (500, 2))
    codes, lo, hi = quantise_coordinates(xy)
    back = np.asarray(lo) + codes * (np.asarray(hi) - np.asarray(lo)) / 65535
    assert codes.dtype == np.uint16 and np.abs(back - xy).max() <= (xy.max(0) - xy.min(0)).max() / 65535
    # Z-order: the four quadrants of the code square come one after another (0, 1, 2, 3)
    order = quadtree_order(codes)
    quadrant = (codes[order, 0] >= 32768).astype(int) + 2 * (codes[order, 1] >= 32768)
    assert np.all(np.diff(quadrant) >= 0) and sorted(order.tolist()) == list(range(500))
    points = np.arange(0, 500, 2)
    tiles = tile_runs(points, codes, 60)
    assert [len(t) for t in tiles] == [60, 60, 60, 60, 10]
    assert sorted(np.concatenate(tiles).tolist()) == points.tolist()
    # a tile covers a compact part of the map: far less than runs of the points in index order
    extent = lambda p: np.ptp(xy[p], axis=0).prod()
    assert np.mean([extent(t) for t in tiles[:4]]) < 0.5 * np.mean([extent(points[j:j + 60]) for j in range(0, 240, 60)])


def test_data_chunks_split_large_arrays_under_eight_megabytes():
    values = np.arange(3 * CHUNK_BYTES // 4 + 5, dtype=np.int32).reshape(-1, 1)
    described, scripts = data_chunks("ids", values)
    assert described == {"type": "Int32Array", "shape": list(values.shape), "parts": 4}
    assert [p for p, _ in scripts] == [f"data/ids-{j}.js" for j in range(4)]
    assert all(len(text) < 8.5e6 and text.startswith('ATLAS_DATA("ids",') for _, text in scripts)


def test_layout_auto_picks_by_the_estimated_size(built):
    # The measured 70,000-point Fashion-MNIST page (26.6 MB) stays one file; 128-D latents would not.
    assert estimated_page_mb(70000, 32, 10, 3, 70000, 784, "webp") < 30 < estimated_page_mb(70000, 128, 10, 3, 70000, 784, "webp")
    assert page_layout("auto", 30, 29.9) == "single" and page_layout("auto", 30, 30.1) == "folder"
    assert page_layout("single", 0.001, 100) == "single" and page_layout("folder", 30, 0) == "folder"
    with pytest.raises(ValueError, match="atlas.layout"):
        page_layout("zip", 30, 1)
    (_, single), _ = built
    auto = _build(single.parent.parent / (single.parent.name + "_auto"))[1]
    assert auto.read_bytes() == single.read_bytes()
    tiny = _build(single.parent.parent / (single.parent.name + "_tiny"), max_page_mb=1e-3)[1]
    assert (tiny.with_suffix("") / "data").is_dir() and "ATLAS_DATA" not in tiny.read_text()


def test_redirect_pages_point_to_the_page(built):
    (_, single), (_, folder) = built
    target = lambda path: re.search(r'url=([^"]+)"', path.read_text()).group(1)
    assert target(single.with_suffix("") / "index.html") == "../atlas.html"
    assert sorted(p.name for p in single.with_suffix("").iterdir()) == ["index.html"]
    assert target(folder) == "atlas/index.html" and (folder.parent / target(folder)).is_file()
    assert "ATLAS_DATA" in (folder.with_suffix("") / "index.html").read_text()


def test_atomic_folder_leaves_no_partial_folder(tmp_path):
    target = tmp_path / "atlas"
    with atomic_folder(target) as tmp:
        (tmp / "index.html").write_text("one")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "index.html").write_text("two")
            raise RuntimeError("killed")
    assert (target / "index.html").read_text() == "one" and sorted(p.name for p in tmp_path.iterdir()) == ["atlas"]


@pytest.fixture(scope="module")
def pages(built, browser):
    (_, single), (_, folder) = built
    one = open_page(browser, single, 1400, 760)
    many = open_page(browser, folder.with_suffix("") / "index.html", 1400, 760)
    yield one, many
    one.close()
    many.close()


def test_folder_page_opens_from_file_and_draws(pages):
    _, many = pages
    assert many.evaluate("window.atlas.ready") and many.evaluate("window.atlas.error") is None
    assert not many.blocked and not many.errors, (many.blocked, many.errors)
    assert many.evaluate("window.atlas.maps()") == ["pca", "tsne", "umap"]
    # the maps are drawn as on the single page: about as many coloured pixels on each
    counts = []
    for pg in pages:
        shot = np.asarray(Image.open(io.BytesIO(pg.locator(".map .stack").first.screenshot()))).astype(int)
        counts.append(int((np.ptp(shot[..., :3], axis=2) > 40).sum()))
    assert counts[1] > 100 and abs(counts[1] - counts[0]) < 0.1 * counts[0], counts


def test_hover_and_click_match_the_single_page(pages, built):
    one, many = pages
    (_, single), _ = built
    ids = read_parquet(single.parent / "points.parquet")["sample_id"].to_numpy()
    for i in (3, 37, 123, 250, 399):
        sid = int(ids[i])
        for pg in pages:
            pg.evaluate("window.atlas.reset()")
        for method in ("pca", "umap"):
            got = [pg.evaluate(f"(() => {{ const p = window.atlas.screenPosition({sid}, '{method}');"
                               f" return window.atlas.hover('{method}', p.x, p.y).id; }})()") for pg in pages]
            assert got == [sid, sid]
        drawn = [pg.evaluate(f"(window.atlas.focus({sid}), window.atlas.drawn())") for pg in pages]
        assert drawn[0] == drawn[1] and drawn[0]["focus"] == sid


@pytest.mark.parametrize("method", ["pca", "umap"])
def test_zoomed_in_thumbnails_are_the_samples_pixels_once_their_tile_loaded(built, browser, method):
    (files, _), (_, folder) = built
    ds = load_dataset(files.data)
    many = open_page(browser, folder.with_suffix("") / "index.html", 1400, 760)
    assert many.evaluate("window.atlas.tiles()") == {"loaded": 0, "pending": 0, "tiles": []}  # none before a view needs one
    many.evaluate(f"window.atlas.zoom('{method}', 3)")  # one step: the tiles of the points in this view only
    assert many.evaluate(f"window.atlas.thumbnails('{method}').alpha") >= 1
    many.wait_for_function("window.atlas.tiles().pending === 0 && window.atlas.tiles().loaded > 0")
    # only tiles of the zoomed map, and not all of them: each map has a quadtree of its own
    first, count = many.evaluate(f"window.atlas.meta.sprites.maps['{method}']")
    total = len(list((folder.with_suffix("") / "tiles").iterdir()))
    assert count == total / 3
    loaded = many.evaluate("window.atlas.tiles().tiles")
    assert loaded and all(first <= t < first + count for t in loaded) and len(loaded) < count
    boxes = many.evaluate(f"window.atlas.thumbnails('{method}').boxes")
    assert boxes
    shot = np.asarray(Image.open(io.BytesIO(many.screenshot())))
    canvas = many.locator(f".map[data-map={method}] canvas.overlay").bounding_box()
    inside = [b for b in boxes if b["x"] >= canvas["x"] and b["y"] >= canvas["y"]
              and b["x"] + b["w"] <= canvas["x"] + canvas["width"] and b["y"] + b["h"] <= canvas["y"] + canvas["height"]]
    assert len(inside) >= 3
    for box in inside:
        row = int(np.flatnonzero(ds.sample_id == box["id"])[0])
        want = np.rint(ds.images[row, 0] * 255).astype(int)
        s = box["w"] / 8
        got = np.array([[shot[int(box["y"] + (r + 0.5) * s), int(box["x"] + (c + 0.5) * s), 0] for c in range(8)]
                        for r in range(8)])
        assert np.array_equal(got, want), box["id"]
    # the tooltip of a point in view shows its image from the map's tile already loaded
    box = inside[0]
    pos = many.evaluate(f"window.atlas.screenPosition({box['id']}, '{method}')")
    many.mouse.move(pos["x"], pos["y"])
    many.wait_for_function("document.getElementById('tooltip').style.display === 'block'")
    assert int(many.evaluate("document.getElementById('tip-img').dataset.sample")) == box["id"]
    assert many.evaluate("window.atlas.tiles()") == {"loaded": len(loaded), "pending": 0, "tiles": loaded}
    assert not many.blocked and not many.errors
    many.close()


def test_a_large_folder_page_draws_coarse_first_then_every_point(built, browser, tmp_path):
    """Above COARSE_POINTS points (lowered here to 50 in a copy of the page), each map is first drawn
    with every step-th point, then with all of them; what the page finally shows is the same."""
    _, (_, folder) = built
    copy = tmp_path / "atlas"
    shutil.copytree(folder.with_suffix(""), copy)
    text = (copy / "index.html").read_text()
    assert text.count("const COARSE_POINTS = 65536;") == 1
    (copy / "index.html").write_text(text.replace("const COARSE_POINTS = 65536;", "const COARSE_POINTS = 50;"))
    pg = browser.new_page(viewport={"width": 1400, "height": 760})
    pg.add_init_script("""window.draws = []; const draw = WebGL2RenderingContext.prototype.drawArrays;
      WebGL2RenderingContext.prototype.drawArrays = function (mode, first, count) { window.draws.push(count); return draw.call(this, mode, first, count); };""")
    pg.goto((copy / "index.html").as_uri())
    pg.wait_for_function("window.atlas.ready && !window.atlas.drawing()", timeout=30000)
    n = len(pg.evaluate("window.atlas.sampleIds()"))
    step = -(-n // 50)
    assert step > 1 and pg.evaluate("window.draws") == [-(-n // step)] * 3 + [n] * 3
    timings = pg.evaluate("window.atlas.timings")
    assert timings["ready_ms"] <= timings["shown_ms"] < timings["drawn_ms"]
    plain = open_page(browser, folder.with_suffix("") / "index.html", 1400, 760)
    shots = [np.asarray(Image.open(io.BytesIO(p.locator(".map .stack").first.screenshot()))) for p in (pg, plain)]
    assert np.array_equal(*shots)
    pg.close()
    plain.close()


def test_a_missing_chunk_is_shown_on_the_page(built, browser, tmp_path):
    _, (_, folder) = built
    copy = tmp_path / "atlas"
    shutil.copytree(folder.with_suffix(""), copy)
    (copy / "data" / "xy_pca-0.js").unlink()
    pg = open_page(browser, copy / "index.html", 1000, 700)
    message = "data/xy_pca-0.js is missing: the atlas folder is incomplete"
    assert message in pg.evaluate("window.atlas.error") and not pg.evaluate("window.atlas.ready")
    assert message in pg.inner_text("#status") and pg.inner_text("#missing") == message
    assert pg.locator("#missing").is_visible() and not pg.blocked
    pg.close()
