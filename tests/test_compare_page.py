"""The comparison page (compare.html): its compute (Procrustes alignment, per-model neighbours),
the compare_page job on synthetic inputs of two models and one pair, and the page in headless
Chromium (no network): six linked maps, overlap colours, per-model neighbours, the measures table."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest

from atlas_helpers import CLASSES, open_page, synthetic_inputs
from latent_atlas.atlas.neighbours import nearest_neighbours
from latent_atlas.compare.jobs import compare_page
from latent_atlas.compare.page import procrustes_align
from latent_atlas.explain.maps import coords_table
from latent_atlas.io import write_parquet
from latent_atlas.latents import read_latents
from latent_atlas.rules import compared_models
from latent_atlas.runtime import Files, Job

K = 5
N = 200
METHODS = ("pca", "tsne", "umap")


def test_procrustes_align_undoes_a_rotation_and_reflection():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 2))
    turn = np.array([[0.0, 1.0], [1.0, 0.0]]) @ np.array([[np.cos(1.0), -np.sin(1.0)], [np.sin(1.0), np.cos(1.0)]])
    moved = ref @ turn + [3.0, -2.0]
    assert procrustes_align(ref, moved) == pytest.approx(ref, abs=1e-9)
    with pytest.raises(ValueError, match="shape"):
        procrustes_align(ref, moved[:10])


def test_compared_models_are_the_base_models_in_order():
    assert compared_models([("b@2", "b"), ("a", "b"), ("c", "a")]) == ["b", "a", "c"]


def _build(folder):
    """Inputs of compare_page for models m1, m2 (m2: m1's latents turned and noisier) and the
    pair (m1, m2); runs the job. Returns (page path, sample ids, latents per model, points)."""
    base = synthetic_inputs(folder / "m1", n=N)
    lat1 = read_latents(base.latents)
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(lat1.z.shape[1],) * 2))
    z2 = (lat1.z @ q + rng.normal(0, 0.8, lat1.z.shape)).astype(np.float32)
    ids = lat1.ids
    latents2 = pd.concat([ids, pd.DataFrame(z2, columns=[f"z{i}" for i in range(z2.shape[1])])], axis=1)
    write_parquet(latents2, folder / "m2" / "latents.parquet")
    # m2's maps: its PCA mirrored, so that alignment has something to undo; rows in another order
    maps2 = coords_table(ids, {"pca": lat1.z[:, :2] * [-1, 1], "tsne": z2[:, 2:4], "umap": z2[:, 4:6]})
    write_parquet(maps2.iloc[::-1].reset_index(drop=True), folder / "m2" / "maps.parquet")
    knn1, knn2 = nearest_neighbours(lat1.z, K)[0], nearest_neighbours(z2, K)[0]
    shared = np.array([len(set(a) & set(b)) for a, b in zip(knn1, knn2)])
    points = ids.assign(knn_overlap_k5=(shared / (2 * K - shared)).astype(np.float32),
                        knn_overlap_k10=np.float32(0.5))
    write_parquet(points, folder / "points.parquet")
    table = pd.DataFrame([{"a": "m1", "model_a": "m1", "epoch_a": None, "b": "m2", "model_b": "m2", "epoch_b": None,
                           "n_samples": N, "dim_a": 6, "dim_b": 6, "linear_cka": 0.8123, "rbf_cka": 0.7, "procrustes": 0.21,
                           "svcca": 0.9, "knn_overlap_k5": float(points["knn_overlap_k5"].mean()), "knn_overlap_k10": 0.5,
                           "probe_r2_ab": 0.77, "probe_r2_ba": 0.75, "class_accuracy_a": 0.99, "class_accuracy_b": 0.95}])
    write_parquet(table, folder / "compare.parquet")
    scores = pd.DataFrame({"model": np.repeat(["m1", "m2"], 5),
                           "score": ["mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap"] * 2,
                           "value": [0.5, 0.6, 0.7, 0.8, 0.25, 0.125, 0.2, 0.3, 0.4, 0.05],
                           "factors": np.repeat(["shape, scale", "shape"], 5)})
    write_parquet(scores, folder / "attribute_scores.parquet")
    page = folder / "compare.html"
    compare_page(Job(input=Files(table=str(folder / "compare.parquet"), data=base.data, maps_0=base.maps,
                                 maps_1=str(folder / "m2" / "maps.parquet"), latents_0=base.latents,
                                 latents_1=str(folder / "m2" / "latents.parquet"),
                                 points_0=str(folder / "points.parquet"),
                                 scores=str(folder / "attribute_scores.parquet")),
                     output=Files([str(page)]), wildcards=Files(dataset="synthetic")),
                 seed=0, k=K, point_size=3,
                 thumbnails={"max_samples": "all", "format": "png", "quality": 90, "sheet_size": 4096})
    return page, ids["sample_id"].to_numpy(), [lat1.z, z2], points


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("compare_page"))


def test_page_is_self_contained_and_deterministic(built, tmp_path):
    page = built[0]
    text = page.read_text()
    assert "<script src" not in text and "http://" not in text and "https://" not in text
    assert _build(tmp_path)[0].read_bytes() == page.read_bytes()


@pytest.fixture(scope="module")
def page(built, browser):
    path = built[0]
    pg = open_page(browser, path, 1500, 900)
    yield pg
    pg.close()


def test_six_maps_load_offline_and_pca_maps_face_the_same_way(page, built):
    assert page.evaluate("window.atlas.error") is None
    assert page.evaluate("window.atlas.maps()") == [f"{m}/{x}" for m in ("m1", "m2") for x in METHODS]
    assert page.locator(".map canvas.overlay").count() == 6
    assert "m2 · PCA (aligned)" in page.locator(".map[data-map='m2/pca'] h2").inner_text()
    # m2's PCA map was m1's mirrored: aligned, it is m1's again, sample by sample
    pca1 = np.array(page.evaluate("Array.from(window.atlas.coordinates('m1/pca'))")).reshape(-1, 2)
    pca2 = np.array(page.evaluate("Array.from(window.atlas.coordinates('m2/pca'))")).reshape(-1, 2)
    assert pca2 == pytest.approx(pca1, abs=1e-4)
    assert page.evaluate("window.atlas.sampleIds()") == built[1].tolist()
    assert not page.blocked, page.blocked
    assert not page.errors, page.errors


def _ring_near(page, map_name, pos):
    """Whether the hover ring (magenta) is drawn around client point `pos` on a map's overlay."""
    return page.evaluate("""([name, x, y]) => {
        const c = document.querySelector(`.map[data-map="${name}"] canvas.overlay`), r = c.getBoundingClientRect();
        const s = c.width / r.width, cx = (x - r.left) * s, cy = (y - r.top) * s, R = Math.ceil(10 * s);
        const d = c.getContext('2d').getImageData(cx - R, cy - R, 2 * R, 2 * R).data;
        for (let i = 0; i < d.length; i += 4) if (d[i] > 150 && d[i + 1] < 80 && d[i + 2] > 150 && d[i + 3] > 200) return true;
        return false; }""", [map_name, pos["x"], pos["y"]])


def test_hover_highlights_the_sample_on_every_map(page, built):
    sid = int(built[1][41])
    pos = page.evaluate(f"window.atlas.screenPosition({sid}, 'm1/tsne')")
    page.mouse.move(pos["x"], pos["y"])
    page.wait_for_timeout(100)  # the overlays redraw on the next animation frame
    assert page.evaluate("window.atlas.hovered()") == sid
    tip = page.locator("#tooltip")
    assert tip.is_visible() and page.get_attribute("#tip-img", "data-sample") == str(sid)
    for name in (f"{m}/{x}" for m in ("m1", "m2") for x in METHODS):
        assert _ring_near(page, name, page.evaluate(f"window.atlas.screenPosition({sid}, '{name}')")), name
    page.mouse.move(2, 2)
    # atlas.hover (what benchmarks/compare_page.py times) does the same at once: lookup and rings
    other = int(built[1][97])
    pos = page.evaluate(f"window.atlas.screenPosition({other}, 'm2/umap')")
    hover = page.evaluate(f"window.atlas.hover('m2/umap', {pos['x']}, {pos['y']})")
    assert hover["id"] == other and hover["ms"] >= 0 and page.evaluate("window.atlas.hovered()") == other
    for name in (f"{m}/{x}" for m in ("m1", "m2") for x in METHODS):
        assert _ring_near(page, name, page.evaluate(f"window.atlas.screenPosition({other}, '{name}')")), name
    page.evaluate("window.atlas.hover('m2/umap', -100, -100)")
    assert page.evaluate("window.atlas.hovered()") is None


def test_pair_selector_colours_by_overlap(page, built):
    from PIL import Image
    import io

    _, sample_ids, _, points = built
    options = page.eval_on_selector_all("#colour option", "els => els.map(e => [e.value, e.textContent])")
    assert ["overlap:0", "kNN overlap m1 vs m2"] in options
    page.select_option("#colour", "overlap:0")
    assert "Jaccard of the 5 nearest" in page.inner_text("#legend")
    viridis = page.evaluate("JSON.parse(document.getElementById('meta').textContent).viridis")
    last = N - 1  # drawn last, on top of any overlapping point
    pos = page.evaluate(f"window.atlas.screenPosition({int(sample_ids[last])}, 'm2/umap')")
    png = page.screenshot(clip={"x": pos["x"] - 0.5, "y": pos["y"] - 0.5, "width": 1, "height": 1})
    shown = tuple(np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[0, 0])
    expected = viridis[round(float(points["knn_overlap_k5"].iloc[last]) * 255)]
    assert np.abs(np.array(shown, int) - expected).max() <= 2
    page.evaluate("window.atlas.colourBy('class')")


def test_click_shows_each_models_neighbours_with_differences_marked(page, built):
    _, sample_ids, latents, _ = built
    i = 17
    sid = int(sample_ids[i])
    pos = page.evaluate(f"window.atlas.screenPosition({sid}, 'm2/pca')")
    page.mouse.click(pos["x"], pos["y"])
    drawn = page.evaluate("window.atlas.drawn()")
    assert drawn["focus"] == sid
    expected = [set(sample_ids[nearest_neighbours(z, K)[0][i]]) for z in latents]
    for name, want, other in (("m1", expected[0], expected[1]), ("m2", expected[1], expected[0])):
        got = drawn["models"][name]
        assert set(got["neighbours"]) == want and set(got["differ"]) == want - other
        grid = page.locator(f"#neighbours[data-model={name}]")
        shown = grid.locator("canvas").evaluate_all("els => els.map(e => +e.dataset.sample)")
        marked = grid.locator("figure.differs canvas").evaluate_all("els => els.map(e => +e.dataset.sample)")
        assert set(shown) == want and set(marked) == want - other
    assert drawn["latent"] == drawn["models"]["m1"]["neighbours"]
    assert set(drawn["maps"]["m2/umap"]["missing"]) <= expected[1]
    page.evaluate("window.atlas.clear()")


def test_measures_table_lists_the_pair(page):
    first = "#measures table:nth-of-type(1)"
    header = page.eval_on_selector_all(f"{first} th", "els => els.map(e => e.textContent)")
    assert header[:2] == ["a", "b"] and "linear_cka" in header and "model_a" not in header
    row = page.eval_on_selector_all(f"{first} tbody tr:first-child td", "els => els.map(e => e.textContent)")
    assert row[:2] == ["m1", "m2"] and row[header.index("linear_cka")] == "0.8123"
    assert page.locator(f"{first} tbody tr").count() == 1


def test_scores_table_shows_each_models_disentanglement_scores_side_by_side(page):
    """The attributes stage's scores (one row per model and score) become one row per model."""
    assert page.eval_on_selector_all("#measures h3", "els => els.map(e => e.textContent)") == [
        "Measures of each compared pair", "Disentanglement scores of each model"]
    second = "#measures table:nth-of-type(2)"
    header = page.eval_on_selector_all(f"{second} th", "els => els.map(e => e.textContent)")
    assert header[0] == "model" and header[1] == "MIG" and header[-1] == "factors" and len(header) == 7
    rows = [page.eval_on_selector_all(f"{second} tbody tr:nth-child({i}) td", "els => els.map(e => e.textContent)")
            for i in (1, 2)]
    assert rows[0][:2] == ["m1", "0.5000"] and rows[0][-1] == "shape, scale"
    assert rows[1][:2] == ["m2", "0.1250"] and rows[1][header.index("SAP")] == "0.0500" and rows[1][-1] == "shape"


def test_screenshot(page, built):
    sid = int(built[1][17])
    page.evaluate(f"window.atlas.focus({sid})")
    page.evaluate("window.atlas.colourBy('overlap:0')")
    shot = built[0].with_suffix(".png")
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("COMPARE_PAGE_SCREENSHOT"):
        shutil.copy(shot, os.environ["COMPARE_PAGE_SCREENSHOT"])
    assert not page.errors, page.errors
    assert CLASSES[0] in page.evaluate("JSON.parse(document.getElementById('meta').textContent).class_names")
