"""The latent atlas: its compute modules, its jobs on small synthetic inputs, and the page driven in
headless Chromium (Playwright, no network): hover, click, lasso, colour modes, search, colour by
attribute."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.path import Path as Polygon
from PIL import Image
from sklearn.neighbors import NearestNeighbors

from atlas_helpers import CLASSES, ROTATIONS, SHAPES, build_atlas, open_page, synthetic_attributes
from latent_atlas.atlas.jobs import atlas, thumbnail_rows
from latent_atlas.atlas.neighbours import false_and_missing, jaccard, local_density, nearest_neighbours, overlap
from latent_atlas.atlas.page import TEMPLATE, _ATTRIBUTE_CODE, encode_array, page_attributes, quantise_latents
from latent_atlas.atlas.sprites import sprite_sheets, thumbnails_uint8
from latent_atlas.data.store import load_dataset
from latent_atlas.io import read_parquet
from latent_atlas.latents import read_latents
from latent_atlas.runtime import Files, Job

K = 5
METHODS = ("pca", "tsne", "umap")


def _sklearn_neighbours(X, k):
    """Each point's k nearest others as sets, straight from scikit-learn."""
    idx = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X, return_distance=False)
    return [set(row) - {i} if i in row else set(row[:k]) for i, row in enumerate(idx)]


def test_nearest_neighbours_skip_the_point_itself_also_for_duplicates():
    X = np.array([[0.0, 0], [0, 0], [1, 0], [3, 0], [7, 0]])
    idx, dist = nearest_neighbours(X, 2)
    assert idx.shape == (5, 2) and not (idx == np.arange(5)[:, None]).any()
    assert set(idx[0]) == {1, 2} and set(idx[1]) == {0, 2}
    assert idx[4].tolist() == [3, 2] and dist[4].tolist() == [4.0, 6.0]
    with pytest.raises(ValueError, match="atlas.k"):
        nearest_neighbours(X, 5)


def test_overlap_jaccard_false_and_missing():
    a = np.array([[1, 2, 3], [4, 5, 6]])
    b = np.array([[3, 1, 9], [7, 8, 0]])
    assert overlap(a, b).tolist() == [2, 0]
    assert jaccard(np.array([2, 0, 3]), 3).tolist() == pytest.approx([0.5, 0.0, 1.0])
    false, missing = false_and_missing(a[0], b[0])
    assert false.tolist() == [9] and missing.tolist() == [2]


def test_local_density_is_inverse_mean_distance():
    density = local_density(np.array([[1.0, 3.0], [0.5, 0.5], [0.0, 0.0]]))
    assert density.tolist() == pytest.approx([0.5, 2.0, 2.0])


def test_sprite_sheets_stay_below_the_size_and_keep_every_tile():
    rng = np.random.default_rng(0)
    thumbs = rng.integers(0, 256, (50, 5, 7), dtype=np.uint8)
    s = sprite_sheets(thumbs, sheet_size=24)
    assert (s.columns, s.per_sheet, s.counts) == (3, 12, [12, 12, 12, 12, 2])
    sheets = [np.asarray(Image.open(io.BytesIO(b))) for b in s.sheets]
    assert all(max(sh.shape) <= 24 for sh in sheets)
    for t in (0, 13, 49):
        sheet, local = divmod(t, s.per_sheet)
        r, c = divmod(local, s.columns)
        assert np.array_equal(sheets[sheet][r * 5:(r + 1) * 5, c * 7:(c + 1) * 7], thumbs[t])
    colour = thumbnails_uint8(rng.uniform(0, 1, (2, 3, 4, 4)).astype(np.float32))
    assert colour.shape == (2, 4, 4, 3) and colour.dtype == np.uint8
    assert sprite_sheets(colour, image_format="jpeg").mime == "image/jpeg"
    assert sprite_sheets(colour, image_format="webp").sheets[0][8:12] == b"WEBP"


def test_arrays_travel_as_gzip_base64_and_latents_as_bytes_per_dimension():
    values = np.arange(10, dtype=np.int32)
    desc, text = encode_array(values)
    assert desc == {"type": "Int32Array", "shape": [10]} and encode_array(values)[1] == text
    assert np.array_equal(np.frombuffer(gzip.decompress(base64.b64decode(text)), "<i4"), values)
    z = np.array([[0.0, 5.0], [1.0, 5.0], [0.5, 5.0]])
    codes, lo, hi = quantise_latents(z)
    assert codes[:, 0].tolist() == [0, 255, 128] and codes[:, 1].tolist() == [0, 0, 0]
    assert lo.tolist() == [0.0, 5.0] and hi.tolist() == [1.0, 5.0]


def test_thumbnail_subset_is_seeded_and_sorted():
    rows = thumbnail_rows(100, 10, 0)
    assert len(rows) == 10 and np.all(np.diff(rows) > 0) and np.array_equal(rows, thumbnail_rows(100, 10, 0))
    assert np.array_equal(thumbnail_rows(5, "all", 0), np.arange(5))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("atlas")
    files, page = build_atlas(folder, k=K)
    latents = read_latents(files.latents)
    return files, page, read_parquet(folder / "points.parquet"), latents


def test_point_table_holds_sklearn_neighbours_and_preservation(built):
    files, _, points, latents = built
    assert len(points) == 400 and points["sample_id"].tolist() == latents.ids["sample_id"].tolist()
    expected = _sklearn_neighbours(latents.z.astype(np.float64), K)
    nn = points[[f"nn_{j}" for j in range(K)]].to_numpy()
    ids = points["sample_id"].to_numpy()
    assert all(set(row) == set(ids[list(e)]) for row, e in zip(nn, expected))
    for method in METHODS:
        in_map = _sklearn_neighbours(points[[f"x_{method}", f"y_{method}"]].to_numpy(np.float64), K)
        shared = [len(m & e) for m, e in zip(in_map, expected)]
        assert points[f"shared_{method}"].tolist() == shared
        assert points[f"preservation_{method}"].to_numpy() == pytest.approx(np.array(shared) / (2 * K - np.array(shared)))
    pred = read_parquet(files.predictions)["pred"].to_numpy()
    assert np.array_equal(points["pred"].to_numpy(), pred)


def test_page_is_self_contained_and_deterministic(built, tmp_path):
    files, page, _, _ = built
    text = page.read_text()
    assert "<script src" not in text and "http://" not in text and "https://" not in text
    assert "synthetic / m" in text and "../importance/explorer.html" in text
    again = tmp_path / "again.html"
    settings = {"thumbnails": {"max_samples": "all", "format": "png", "quality": 90, "sheet_size": 4096},
                "point_size": 3}
    atlas(Job(input=Files(points=str(page.parent / "points.parquet"), quality=files.quality,
                          latents=files.latents, data=files.data),
              output=Files([str(again)])),
          seed=0, title="synthetic / m", point_size=settings["point_size"], thumbnails=settings["thumbnails"],
          importance="../importance/explorer.html")
    assert again.read_bytes() == page.read_bytes()


@pytest.fixture(scope="module")
def page(built, browser):
    """The synthetic atlas open in Chromium; every request outside file:, data: and blob: is
    aborted and recorded, as are console errors."""
    _, path, _, _ = built
    pg = open_page(browser, path, 1400, 760)
    yield pg
    pg.close()


def _move_away(page):
    page.mouse.move(2, 2)
    page.evaluate("window.atlas.clear()")


def test_page_loads_offline_without_errors(page):
    assert page.evaluate("window.atlas.error") is None
    assert page.evaluate("window.atlas.maps()") == list(METHODS)
    assert page.locator(".map .badge").count() == 9
    assert not page.blocked, page.blocked
    assert not page.errors, page.errors


def test_hover_shows_the_sample_id_and_its_thumbnail(page, built):
    files, _, points, _ = built
    ds = load_dataset(files.data)
    sid = int(points["sample_id"].iloc[37])
    pos = page.evaluate(f"window.atlas.screenPosition({sid}, 'tsne')")
    page.mouse.move(pos["x"], pos["y"])
    tip = page.locator("#tooltip")
    assert tip.is_visible() and f"#{sid} · {CLASSES[points['label'].iloc[37]]}" in tip.inner_text()
    assert page.get_attribute("#tip-img", "data-sample") == str(sid)
    # the thumbnail is the sample's image: read the canvas at the centre of each image pixel
    shown = np.array(page.evaluate("""() => { const c = document.getElementById('tip-img'), s = c.width / 8;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, out = [];
        for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) out.push(d[((y * s + s / 2 | 0) * c.width + (x * s + s / 2 | 0)) * 4]);
        return out; }""")).reshape(8, 8)
    row = int(np.flatnonzero(ds.sample_id == sid)[0])
    assert np.array_equal(shown, np.rint(ds.images[row, 0] * 255).astype(int))
    _move_away(page)
    assert not tip.is_visible()


def test_click_draws_the_sklearn_neighbours_on_every_map(page, built):
    _, _, points, latents = built
    i = 123
    sid = int(points["sample_id"].iloc[i])
    ids = points["sample_id"].to_numpy()
    pos = page.evaluate(f"window.atlas.screenPosition({sid}, 'umap')")
    page.mouse.click(pos["x"], pos["y"])
    drawn = page.evaluate("window.atlas.drawn()")
    assert drawn["focus"] == sid
    latent = set(ids[list(_sklearn_neighbours(latents.z.astype(np.float64), K)[i])])
    assert len(drawn["latent"]) == K and set(drawn["latent"]) == latent
    for method in METHODS:
        xy = points[[f"x_{method}", f"y_{method}"]].to_numpy(np.float64)
        in_map = set(ids[list(_sklearn_neighbours(xy, K)[i])])
        got = drawn["maps"][method]
        assert set(got["map"]) == in_map
        assert set(got["false"]) == in_map - latent and set(got["missing"]) == latent - in_map
        assert len(got["false"]) == K - points[f"shared_{method}"].iloc[i]
    shown = page.eval_on_selector_all("#neighbours canvas", "els => els.map(e => +e.dataset.sample)")
    assert set(shown) == latent
    ms = page.evaluate(f"window.atlas.focus({sid})")
    assert ms < 1000
    _move_away(page)


def test_lasso_selects_what_python_counts_in_the_stored_coordinates(page, built):
    _, _, points, _ = built
    xy = points[["x_pca", "y_pca"]].to_numpy(np.float32).astype(np.float64)
    centre, spread = xy.mean(axis=0), xy.std(axis=0)
    angles = np.linspace(0, 2 * np.pi, 7)[:-1] + 0.3
    poly = centre + 1.1 * spread * np.c_[np.cos(angles), np.sin(angles)]
    expected = int(Polygon(poly).contains_points(xy).sum())
    assert 10 < expected < len(xy)
    assert page.evaluate("p => window.atlas.select('pca', p)", poly.tolist()) == expected
    assert page.get_attribute("#sel-count", "data-count") == str(expected)
    csv = page.evaluate("window.atlas.csv()").split()
    assert csv[0] == "sample_id" and len(csv) == expected + 1
    inside = Polygon(poly).contains_points(xy)
    assert sorted(map(int, csv[1:])) == sorted(points["sample_id"].to_numpy()[inside].tolist())
    # a lasso drawn with the mouse selects what its screen polygon holds
    page.click("button[data-tool=box]")
    box = page.locator(".map[data-map=tsne] canvas.overlay").bounding_box()
    x0, y0, x1, y1 = box["x"] + 40, box["y"] + 40, box["x"] + 200, box["y"] + 220
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y0 + 30, steps=3)
    page.mouse.move(x1, y1, steps=3)
    page.mouse.up()
    by_mouse = len(page.evaluate("window.atlas.selection()"))
    again = page.evaluate("p => window.atlas.selectScreen('tsne', p)", [[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    assert by_mouse == again > 0
    page.click("button[data-tool=pan]")
    _move_away(page)


def _pixel(page, x, y):
    png = page.screenshot(clip={"x": x - 0.5, "y": y - 0.5, "width": 1, "height": 1})
    return tuple(np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[0, 0])


def test_colour_modes_change_the_pixels_at_a_point(page, built):
    _, _, points, _ = built
    last = len(points) - 1  # drawn last, so on top of any overlapping point
    sid = int(points["sample_id"].iloc[last])
    pos = page.evaluate(f"window.atlas.screenPosition({sid}, 'pca')")
    colours = {}
    for mode in ("class", "correct", "density", "dim:1", "preservation"):
        page.evaluate(f"window.atlas.colourBy('{mode}')")
        colours[mode] = _pixel(page, pos["x"], pos["y"])
    palette = page.evaluate("JSON.parse(document.getElementById('meta').textContent).palette")
    assert colours["class"] == tuple(palette[int(points["label"].iloc[last])])
    assert len(set(colours.values())) >= 4, colours
    page.evaluate("window.atlas.colourBy('class')")


def test_search_by_class_and_by_id(page, built):
    _, _, points, _ = built
    files = built[0]
    page.fill("#search", "two")
    page.press("#search", "Enter")
    assert page.get_attribute("#sel-count", "data-count") == str(int((points["label"] == 2).sum()))
    # the selection's mean image is the mean of its images
    ds = load_dataset(files.data)
    mean = np.rint(ds.images[ds.labels == 2, 0].mean(axis=0) * 255)
    shown = np.array(page.evaluate("""() => Array.from(document.getElementById('sel-mean').getContext('2d')
        .getImageData(0, 0, 8, 8).data.filter((_, i) => i % 4 === 0))""")).reshape(8, 8)
    assert np.abs(shown - mean).max() <= 1
    sid = int(points["sample_id"].iloc[5])
    page.fill("#search", str(sid))
    page.press("#search", "Enter")
    assert page.evaluate("window.atlas.drawn().focus") == sid
    assert page.locator("#importance").get_attribute("href") == "../importance/explorer.html"
    shot = Path(page.url[len("file://"):]).with_suffix(".png")
    page.screenshot(path=str(shot))
    if os.environ.get("ATLAS_SCREENSHOT"):
        shutil.copy(shot, os.environ["ATLAS_SCREENSHOT"])
    assert not page.errors, page.errors
    _move_away(page)


def _page_of_points(tmp_path, edit, name: str) -> str:
    """The atlas page of the synthetic inputs after `edit(points)` changes the points table."""
    files, _ = build_atlas(tmp_path, k=K)
    edit(read_parquet(tmp_path / "points.parquet")).to_parquet(tmp_path / "points.parquet")
    out = tmp_path / f"{name}.html"
    atlas(Job(input=Files(points=str(tmp_path / "points.parquet"), quality=files.quality, latents=files.latents,
                          data=files.data), output=Files([str(out)])),
          seed=0, title=name, importance="", point_size=3,
          thumbnails={"max_samples": 100, "format": "webp", "quality": 80, "sheet_size": 64})
    return out.read_text()


def test_reconstruction_error_of_an_autoencoder_page(tmp_path):
    """An autoencoder's table has recon_error instead of pred, and its page offers that mode."""
    text = _page_of_points(tmp_path, lambda points: points.drop(columns="pred").assign(
        recon_error=np.linspace(0, 1, len(points), dtype=np.float32)), "ae")
    assert '"kind":"autoencoder"' in text and '"a-error"' in text and '"a-pred"' not in text
    assert '"importance":null' in text and text.count('id="s-') == 2  # 100 8x8 tiles, 64 per sheet


def test_embedding_page_without_predictions_or_reconstructions(tmp_path):
    """A table of latents (or a loaded encoder without decoder, a classifier without head) has
    neither pred nor recon_error: an "embedding" page, which offers neither mode."""
    text = _page_of_points(tmp_path, lambda points: points.drop(columns="pred"), "table")
    assert '"kind":"embedding"' in text and '"a-error"' not in text and '"a-pred"' not in text


def test_standalone_latents_table_gets_no_atlas():
    """The atlas shows images: a standalone table (no dataset) is refused, naming why."""
    from latent_atlas.config import section_refusal

    table = {"source": {"format": "latents", "table": "z.parquet", "match": "standalone"}, "dataset": "none"}
    why = section_refusal("atlas", table)
    assert why is not None and "standalone" in why
    matched = {"source": {"format": "latents", "table": "z.parquet"}, "dataset": "digits"}
    assert section_refusal("atlas", matched) is None


# ---------- colour by attribute ----------

def test_attributes_travel_as_small_codes_with_their_legend():
    n = 70_000
    rng = np.random.default_rng(0)
    columns = {"Smiling": rng.integers(0, 2, n).astype(np.int8), "shape": (np.arange(n) % 3).astype(np.int8),
               "rotation": (np.arange(n) % 40).astype(np.int8), "count": (np.arange(n) % 300 - 2).astype(np.int16),
               "scale": (np.arange(n) % 6).astype(np.int8)}
    described = [{"name": "Smiling", "origin": "source", "levels": None},
                 {"name": "shape", "origin": "source", "levels": SHAPES},
                 {"name": "rotation", "origin": "source", "levels": ROTATIONS},
                 {"name": "scale", "origin": "source", "levels": [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}]
    arrays, entries = page_attributes(columns, described, "attributes.parquet")
    by_name = {e["name"]: e for e in entries}
    assert [e["array"] for e in entries] == [f"attribute_{j}" for j in range(5)]
    smiling, shape, rotation, count, scale = (by_name[c] for c in columns)
    assert arrays["attribute_0"].dtype == np.uint8 and np.array_equal(arrays["attribute_0"], columns["Smiling"])
    assert smiling["scale"] == "categorical" and smiling["binary"]
    assert smiling["labels"] == ["not Smiling", "Smiling"] and len(smiling["palette"]) == 2
    assert shape["labels"] == SHAPES and not shape["binary"]
    assert scale["scale"] == "categorical" and scale["labels"] == ["0.5", "0.6", "0.7", "0.8", "0.9", "1"]
    assert rotation["scale"] == "continuous" and (rotation["lo"], rotation["hi"]) == (0.0, 351.0)
    # a user's column of negative values and more than 256 of them: uint16 codes from the smallest
    assert count["scale"] == "continuous" and count["levels"] is None and count["offset"] == -2
    assert arrays["attribute_3"].dtype == np.uint16 and arrays["attribute_3"].min() == 0
    assert (count["origin"], count["lo"], count["hi"]) == (None, -2.0, 297.0)
    # 40 binary attributes of 70,000 points add a few MB at most (entropy 1 bit: the worst case)
    binary = {f"a{j}": rng.integers(0, 2, n).astype(np.int8) for j in range(40)}
    text = sum(len(encode_array(a)[1]) for a in page_attributes(binary, [], "t")[0].values())
    assert text < 1e6, text
    with pytest.raises(ValueError, match="attributes.parquet: attribute 'rotation' has values 0..40"):
        page_attributes({"rotation": np.arange(41)}, described, "attributes.parquet")


def test_a_page_without_attributes_keeps_its_bytes(built):
    """Without the attribute table a page is byte for byte the page written before attributes
    existed: the template less its attribute code is that template (its SHA-256 below; a change
    to the page's other code changes it on purpose), and nothing of attributes reaches the page."""
    _, page, _, _ = built
    text = TEMPLATE.read_text(encoding="utf-8")
    sections = len(_ATTRIBUTE_CODE.findall(text))
    assert sections == text.count("// begin attributes") == text.count("// end attributes") > 0
    stripped = _ATTRIBUTE_CODE.sub("", text)
    assert hashlib.sha256(stripped.encode()).hexdigest() == (
        "9021dc7a7a0fbbd502c2be492a0824bdcb15f57a457cbf4097d5ba606475e89c")
    html = page.read_text()
    assert not any(word in html for word in ("ATTRIBUTES", '"attributes"', "a-attribute_", "// begin attributes"))


@pytest.fixture(scope="module")
def attributed(tmp_path_factory):
    """The synthetic atlas with `synthetic_attributes`: (inputs, page, attribute table in point order)."""
    folder = tmp_path_factory.mktemp("atlas_attributes")
    files, page = build_atlas(folder, k=K, attributes=True)
    ids = read_parquet(folder / "points.parquet")["sample_id"]
    table = read_parquet(folder / "attributes.parquet").set_index("sample_id").loc[ids].reset_index()
    return files, page, table


@pytest.fixture(scope="module")
def attribute_page(attributed, browser):
    pg = open_page(browser, attributed[1], 1400, 760)
    yield pg
    pg.close()


def _isolated(page, table, map_name, spacing=8.0):
    """Rows of `table` whose point in map `map_name` has no other point within `spacing` CSS px,
    and every point's client position (n, 2)."""
    xy = np.array(page.evaluate(f"""() => window.atlas.sampleIds().map(id => {{
        const p = window.atlas.screenPosition(id, '{map_name}'); return [p.x, p.y]; }})"""))
    assert page.evaluate("window.atlas.sampleIds()") == table["sample_id"].tolist()
    d = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    return np.flatnonzero(d.min(axis=1) > spacing), xy


def test_attribute_modes_are_offered_beside_the_others(attribute_page):
    options = attribute_page.eval_on_selector_all("#colour option", "els => els.map(e => [e.value, e.textContent])")
    assert options == [["class", "class"], ["pred", "predicted class"], ["correct", "correct / wrong"],
                       ["density", "local density"], ["preservation", "neighbourhood preservation"],
                       ["dim", "latent dimension"]] + [[f"attribute:{a}", f"attribute: {a}"]
                                                      for a in ("Smiling", "shape", "rotation", "count")]
    for mode in ("attribute:shape", "attribute:rotation", "attribute:count", "dim:2", "attribute:Smiling"):
        attribute_page.evaluate(f"window.atlas.colourBy('{mode}')")
        assert attribute_page.input_value("#colour") == ("dim" if mode.startswith("dim:") else mode)
    with pytest.raises(Exception, match="colour mode attribute:class is not one of"):
        attribute_page.evaluate("window.atlas.colourBy('attribute:class')")
    assert not attribute_page.errors and not attribute_page.blocked


def test_colour_by_a_binary_attribute_paints_its_two_values(attribute_page, attributed):
    _, _, table = attributed
    pg = attribute_page
    _move_away(pg)
    pg.evaluate("window.atlas.colourBy('attribute:Smiling')")
    rows, xy = _isolated(pg, table, "pca")
    shot = np.asarray(Image.open(io.BytesIO(pg.screenshot())).convert("RGB"))
    shown = [tuple(shot[int(xy[i, 1]), int(xy[i, 0])]) for i in rows]
    palette = pg.evaluate("JSON.parse(document.getElementById('meta').textContent).attributes[0].palette")
    smiling = table["Smiling"].to_numpy()[rows]
    assert (smiling == 1).sum() >= 3 and (smiling == 0).sum() >= 3
    assert {c for c, v in zip(shown, smiling) if v == 1} == {tuple(palette[1])}
    assert {c for c, v in zip(shown, smiling) if v == 0} == {tuple(palette[0])}
    assert pg.inner_text("#legend-body").split("\n")[0].startswith("Smiling:")
    legend = pg.eval_on_selector_all("#legend-body span", "els => els.map(e => e.textContent)")
    assert legend == ["not Smiling", "Smiling"]
    # hover names the point's value of the mode's attribute
    i = rows[np.flatnonzero(smiling == 0)[0]]
    pg.mouse.move(*xy[i])
    assert pg.inner_text("#tip-text").endswith(" · not Smiling")
    _move_away(pg)


def test_attribute_legend_names_the_levels_and_a_click_lists_every_attribute(attribute_page, attributed):
    _, _, table = attributed
    pg = attribute_page
    pg.evaluate("window.atlas.colourBy('attribute:shape')")
    assert pg.eval_on_selector_all("#legend-body span", "els => els.map(e => e.textContent)") == SHAPES
    pg.evaluate("window.atlas.colourBy('attribute:rotation')")
    legend = pg.inner_text("#legend-body")
    assert legend.startswith("rotation: 0") and legend.endswith("351")
    assert pg.locator("#legend-body canvas").count() == 1
    rows, xy = _isolated(pg, table, "umap")
    i = rows[0]
    row = table.iloc[i]
    pg.mouse.move(*xy[i])
    assert pg.inner_text("#tip-text").endswith(f" · rotation: {ROTATIONS[row['rotation']]:g}")
    pg.mouse.click(*xy[i])
    assert pg.evaluate("window.atlas.drawn().focus") == int(row["sample_id"])
    listed = pg.eval_on_selector_all("#focus-attributes dt, #focus-attributes dd",
                                     "els => els.map(e => e.textContent)")
    assert listed == ["Smiling", ["not Smiling", "Smiling"][row["Smiling"]], "shape", SHAPES[row["shape"]],
                      "rotation", f"{ROTATIONS[row['rotation']]:g}", "count", str(row["count"])]
    if os.environ.get("ATLAS_ATTRIBUTE_SCREENSHOT"):
        pg.evaluate("window.atlas.colourBy('attribute:Smiling')")
        pg.mouse.move(xy[i, 0] + 1, xy[i, 1])  # the tooltip reads the new mode
        pg.screenshot(path=os.environ["ATLAS_ATTRIBUTE_SCREENSHOT"])
    assert not pg.errors, pg.errors
    _move_away(pg)
    pg.evaluate("window.atlas.colourBy('class')")


def test_attribute_table_lacking_a_sample_names_the_file(built, tmp_path):
    files, page, _, _ = built
    table = synthetic_attributes(files.latents, tmp_path / "attributes.parquet", lacking=1)
    with pytest.raises(ValueError, match=re.escape(f"{table}: lacks sample ids [1000] of the maps")):
        atlas(Job(input=Files(points=str(page.parent / "points.parquet"), quality=files.quality,
                              latents=files.latents, data=files.data, attributes=str(table)),
                  output=Files([str(tmp_path / "atlas.html")])),
              seed=0, title="t", importance="", point_size=3,
              thumbnails={"max_samples": 10, "format": "png", "quality": 90, "sheet_size": 64})
    assert not (tmp_path / "atlas.html").exists()
