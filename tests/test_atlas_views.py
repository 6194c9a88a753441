"""The atlas page's views, driven in headless Chromium (Playwright, no network): maps that fill the
window and follow its size, one map enlarged, thumbnails drawn on a zoomed-in map, density mode,
and named selections saved as selection.csv with the config entry that reads them."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import yaml
from matplotlib.path import Path as Polygon
from PIL import Image

from atlas_helpers import build_atlas, open_page
from latent_atlas.data.store import load_dataset
from latent_atlas.io import read_parquet
from latent_atlas.schema import defaults

ON_MAP = defaults("#/properties/atlas")["thumbnails"]["on_map"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The synthetic atlas (400 points, every one with a thumbnail): (inputs, page, points table)."""
    folder = tmp_path_factory.mktemp("atlas_views")
    files, page = build_atlas(folder, k=5)
    return files, page, read_parquet(folder / "points.parquet")


@pytest.fixture()
def page(built, browser):
    pg = open_page(browser, built[1], 1400, 900)
    yield pg
    assert not pg.errors and not pg.blocked, (pg.errors, pg.blocked)
    pg.close()


def _boxes(page, selector):
    return page.eval_on_selector_all(selector, """els => els.filter(e => e.getClientRects().length).map(e => {
        const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })""")


def _canvas_sizes(page):
    return page.eval_on_selector_all(".map canvas:not(.overlay):not(.images)", "els => els.map(e => [e.width, e.height])")


def _positions(page, map_name):
    """Every sample's client position (n, 2) in map `map_name`, in point order."""
    return np.array(page.evaluate(f"""() => window.atlas.sampleIds().map(id => {{
        const p = window.atlas.screenPosition(id, '{map_name}'); return [p.x, p.y]; }})"""))


def _shot(page, box=None):
    png = page.screenshot(clip=box) if box else page.screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def test_maps_fill_the_space_beside_the_panel_and_follow_the_window(page, built):
    host = page.locator("#maps").bounding_box()
    side = page.locator("#side").bounding_box()
    assert host["x"] + host["width"] == pytest.approx(side["x"], abs=1)
    assert host["y"] + host["height"] == pytest.approx(900, abs=1)
    maps = _boxes(page, ".map")
    assert len(maps) == 3
    assert sum(w * h for _, _, w, h in maps) >= 0.8 * host["width"] * host["height"]
    for x, y, w, h in maps:  # inside the area, and apart
        assert x >= host["x"] and y >= host["y"] and x + w <= host["x"] + host["width"] + 0.5
        assert y + h <= host["y"] + host["height"] + 0.5
    for a in range(3):
        for b in range(a):
            (xa, ya, wa, ha), (xb, yb, wb, hb) = maps[a], maps[b]
            assert xa + wa <= xb or xb + wb <= xa or ya + ha <= yb or yb + hb <= ya
    sizes = _canvas_sizes(page)
    assert all(w == h for w, h in sizes)
    stacks = _boxes(page, ".map .stack")
    assert all(abs(w - h) < 0.5 for _, _, w, h in stacks)
    # a smaller window: smaller squares, each map's view keeps its centre and what it shows
    def offsets(name):  # each point's client position from its map's centre
        box = page.locator(f".map[data-map={name}] canvas.overlay").bounding_box()
        return _positions(page, name) - [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2]

    before = [offsets(name) for name in ("pca", "tsne", "umap")]
    page.set_viewport_size({"width": 1000, "height": 700})
    page.wait_for_function(f"document.querySelector('.map canvas').width < {sizes[0][0]}")
    smaller = _canvas_sizes(page)
    assert all(w == h for w, h in smaller) and all(s[0] < b[0] for s, b in zip(smaller, sizes))
    for j, name in enumerate(("pca", "tsne", "umap")):
        assert offsets(name) == pytest.approx(before[j] * smaller[j][0] / sizes[j][0], abs=0.01)
    # redrawn at the new size: the last point (on top) shows its class colour
    last = len(built[2]) - 1
    palette = page.evaluate("JSON.parse(document.getElementById('meta').textContent).palette")
    x, y = _positions(page, "tsne")[last]
    assert tuple(_shot(page)[int(y), int(x)]) == tuple(palette[int(built[2]["label"].iloc[last])])


def test_one_map_enlarges_and_restores(page):
    sizes = _canvas_sizes(page)
    page.click(".map[data-map=tsne] button.enlarge")
    assert page.locator(".map[data-map=tsne] canvas.overlay").is_visible()
    assert not page.locator(".map[data-map=pca]").is_visible() and not page.locator(".map[data-map=umap]").is_visible()
    big = _canvas_sizes(page)[1]
    assert big[0] == big[1] > max(w for w, _ in sizes)
    assert page.get_attribute(".map[data-map=tsne] button.enlarge", "aria-pressed") == "true"
    page.click(".map[data-map=tsne] button.enlarge")
    assert all(page.locator(f".map[data-map={m}] canvas.overlay").is_visible() for m in ("pca", "tsne", "umap"))
    assert _canvas_sizes(page) == sizes
    # a double-click on a title does the same
    page.dblclick(".map[data-map=umap] h2")
    assert _canvas_sizes(page)[2][0] > sizes[2][0] and not page.locator(".map[data-map=pca]").is_visible()
    page.dblclick(".map[data-map=umap] h2")
    assert _canvas_sizes(page) == sizes


def _in_view(page, map_name):
    """Which points lie in a map's view (their client positions inside its canvas)."""
    box = page.locator(f".map[data-map={map_name}] canvas.overlay").bounding_box()
    xy = _positions(page, map_name)
    return ((xy[:, 0] >= box["x"]) & (xy[:, 0] <= box["x"] + box["width"])
            & (xy[:, 1] >= box["y"]) & (xy[:, 1] <= box["y"] + box["height"]))


def test_thumbnails_replace_dots_in_a_zoomed_in_view(page, built):
    files, _, points = built
    ds = load_dataset(files.data)
    ids = points["sample_id"].to_numpy()
    page.mouse.move(2, 2)
    assert _in_view(page, "pca").sum() == len(points) == ON_MAP  # at the limit: dots only
    assert page.evaluate("window.atlas.thumbnails('pca')") == {"alpha": 0, "boxes": []}
    # centre the map on a sample, then zoom in step by step: the thumbnails fade in as the count
    # in view falls from ON_MAP to half of it
    canvas = page.locator(".map[data-map=pca] canvas.overlay").bounding_box()
    pos = page.evaluate(f"window.atlas.screenPosition({int(ids[7])}, 'pca')")
    page.evaluate(f"window.atlas.pan('pca', {canvas['x'] + canvas['width'] / 2 - pos['x']}, "
                  f"{canvas['y'] + canvas['height'] / 2 - pos['y']})")
    alphas = []
    for _ in range(40):
        page.evaluate("window.atlas.zoom('pca', 1.08)")
        shown = page.evaluate("window.atlas.thumbnails('pca')")
        count = _in_view(page, "pca").sum()
        assert shown["alpha"] == pytest.approx(min(1, max(0, 2 - 2 * count / ON_MAP)), abs=1e-9)
        assert (len(shown["boxes"]) > 0) == (shown["alpha"] > 0)
        alphas.append(shown["alpha"])
        if shown["alpha"] == 1 and count < 40:
            break
    assert alphas[-1] == 1 and any(0 < a < 1 for a in alphas), alphas
    boxes = shown["boxes"]
    assert len(boxes) >= 3
    for a in range(len(boxes)):  # no two overlap
        for b in range(a):
            p, q = boxes[a], boxes[b]
            assert p["x"] + p["w"] <= q["x"] or q["x"] + q["w"] <= p["x"] or p["y"] + p["h"] <= q["y"] or q["y"] + q["h"] <= p["y"]
    shot = _shot(page)
    checked = 0
    for box in boxes:
        sid = box["id"]
        pos = page.evaluate(f"window.atlas.screenPosition({sid}, 'pca')")
        assert abs(box["x"] + box["w"] / 2 - pos["x"]) <= 1 and abs(box["y"] + box["h"] / 2 - pos["y"]) <= 1
        inside = (box["x"] >= canvas["x"] and box["y"] >= canvas["y"] and box["x"] + box["w"] <= canvas["x"] + canvas["width"]
                  and box["y"] + box["h"] <= canvas["y"] + canvas["height"])
        if not inside:
            continue
        # the box shows the sample's image: the centre of each of its 8 x 8 pixels
        s = box["w"] / 8
        shown = np.array([[shot[int(box["y"] + (r + 0.5) * s), int(box["x"] + (c + 0.5) * s), 0] for c in range(8)]
                          for r in range(8)])
        row = int(np.flatnonzero(ds.sample_id == sid)[0])
        assert np.array_equal(shown, np.rint(ds.images[row, 0] * 255).astype(int)), sid
        checked += 1
    assert checked >= 3
    page.evaluate("window.atlas.reset()")
    assert page.evaluate("window.atlas.thumbnails('pca').boxes.length") == 0


def test_density_mode_brightens_where_points_pile_up_and_switches_off_exactly(page, built):
    page.mouse.move(2, 2)
    page.evaluate("window.atlas.zoom('tsne', 0.3)")  # zoomed out, the points pile up
    box = page.locator(".map[data-map=tsne] canvas.overlay").bounding_box()
    clip = {k: box[k] for k in ("x", "y", "width", "height")}
    before = _shot(page, clip)
    page.check("#density")
    after = _shot(page, clip)
    viridis = np.array(page.evaluate("JSON.parse(document.getElementById('meta').textContent).viridis"))
    box = page.locator(".map[data-map=tsne] canvas.overlay").bounding_box()  # where the legend wraps, lower
    xy = _positions(page, "tsne") - [box["x"], box["y"]]  # canvas pixels (device pixel ratio 1)
    d = np.abs(xy[:, None] - xy[None]).max(axis=2)  # Chebyshev distance in CSS px
    np.fill_diagonal(d, np.inf)
    # the canvas's own pixels at the points, read back in the task that draws them
    px = np.array(page.evaluate("""pts => { window.atlas.frame('tsne');
        const c = document.querySelector('.map[data-map=tsne] canvas'), copy = document.createElement('canvas');
        copy.width = c.width; copy.height = c.height; const ctx = copy.getContext('2d'); ctx.drawImage(c, 0, 0);
        return pts.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3))); }""",
                                xy.astype(int).tolist()))
    level = np.abs(px[:, None] - viridis[None]).sum(axis=2).argmin(axis=1)  # each point's place on viridis
    assert np.abs(px - viridis[level]).max() == 0  # every point's pixel is a viridis colour
    # a point's 3 x 3 px dot covers the pixel of every point within 1 px of it (0.9: clear of the edge)
    alone, piled = d.min(axis=1) > 6, (d < 0.9).sum(axis=1)
    assert alone.sum() >= 3 and (piled >= 3).sum() >= 3
    assert (level[alone] == 0).all() and level[piled >= 1].min() > 0
    assert level[piled >= 3].mean() > level[(piled >= 1) & (piled < 3)].mean()
    assert after.shape == before.shape and not np.array_equal(after, before)
    assert page.inner_text("#legend-body").startswith("points per pixel (log): 1")
    page.uncheck("#density")
    assert np.array_equal(_shot(page, clip), before)
    assert "points per pixel" not in page.inner_text("#legend")


def _saved_csv(page):
    with page.expect_download() as download:
        page.click("#save-csv")
    assert download.value.suggested_filename == "selection.csv"
    return open(download.value.path(), newline="").read()


def test_selections_are_saved_to_one_csv_with_the_config_entry_that_reads_them(page, built):
    _, _, points = built
    ids = points["sample_id"].to_numpy()
    page.click("button[data-tool=lasso]")
    box = page.locator(".map[data-map=pca] canvas.overlay").bounding_box()
    xy = _positions(page, "pca")
    centre = np.median(xy[points["label"].to_numpy() == 2], axis=0)
    angles = np.linspace(0, 2 * np.pi, 9)[:-1] + 0.2
    lasso = np.rint(centre + 60 * np.c_[np.cos(angles), 0.7 * np.sin(angles)])
    assert ((lasso >= [box["x"], box["y"]]) & (lasso <= [box["x"] + box["width"], box["y"] + box["height"]])).all()
    page.mouse.move(*lasso[0])
    page.mouse.down()
    for p in lasso[1:]:
        page.mouse.move(*p, steps=2)
    page.mouse.up()
    page.click("button[data-tool=pan]")
    expected = sorted(ids[Polygon(lasso).contains_points(xy)].tolist())
    assert 5 < len(expected) < len(ids)
    assert sorted(page.evaluate("window.atlas.selection()")) == expected
    assert page.input_value("#sel-name") == "selection 1"
    page.fill("#sel-name", "two, dense")
    text = _saved_csv(page)
    assert text.splitlines()[1] == f'{expected[0]},"two, dense"'
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["sample_id", "selection"]
    assert [int(r[0]) for r in rows[1:]] == expected and {r[1] for r in rows[1:]} == {"two, dense"}
    # a class found by search is a second selection: the CSV then holds both
    page.fill("#search", "one")
    page.press("#search", "Enter")
    assert page.input_value("#sel-name") == "selection 1"
    ones = sorted(ids[points["label"].to_numpy() == 1].tolist())
    rows = list(csv.reader(io.StringIO(_saved_csv(page))))[1:]
    assert rows == [[str(i), "two, dense"] for i in expected] + [[str(i), "selection 1"] for i in ones]
    assert page.eval_on_selector_all("#saved li", "els => els.map(e => e.firstChild.textContent)") == [
        f"two, dense: {len(expected)} samples ", f"selection 1: {len(ones)} samples "]
    # the config entry names the file and the selection, under the chosen section
    page.select_option("#sel-section", "explain")
    page.click("#copy-config")
    entry = page.inner_text("#sel-config")
    assert entry.splitlines()[0] == f'# selection "selection 1": {len(ones)} samples of synthetic'
    assert yaml.safe_load(entry) == {"explain": {"samples": {"file": "selection.csv", "selection": "selection 1"}}}
    assert page.evaluate("window.atlas.saved().map(s => s.name)") == ["two, dense", "selection 1"]


def test_a_page_without_thumbnails_draws_dots_only(tmp_path, browser):
    files, path = build_atlas(tmp_path, k=5, thumbnails={"max_samples": 0})
    points = read_parquet(tmp_path / "points.parquet")
    pg = open_page(browser, path, 1400, 900)
    try:
        sid = int(points["sample_id"].iloc[-1])
        canvas = pg.locator(".map[data-map=pca] canvas.overlay").bounding_box()
        pos = pg.evaluate(f"window.atlas.screenPosition({sid}, 'pca')")
        pg.evaluate(f"window.atlas.pan('pca', {canvas['x'] + canvas['width'] / 2 - pos['x']}, "
                    f"{canvas['y'] + canvas['height'] / 2 - pos['y']})")
        pg.evaluate("window.atlas.zoom('pca', 6)")
        assert 0 < _in_view(pg, "pca").sum() < ON_MAP / 2
        assert pg.evaluate("window.atlas.thumbnails('pca')") == {"alpha": 0, "boxes": []}
        pos = pg.evaluate(f"window.atlas.screenPosition({sid}, 'pca')")
        palette = pg.evaluate("JSON.parse(document.getElementById('meta').textContent).palette")
        assert tuple(_shot(pg)[int(pos["y"]), int(pos["x"])]) == tuple(palette[int(points["label"].iloc[-1])])
        assert not pg.errors and not pg.blocked, (pg.errors, pg.blocked)
    finally:
        pg.close()
