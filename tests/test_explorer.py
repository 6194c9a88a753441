"""The importance explorer: self-contained HTML, driven in a real headless Chromium (Playwright).

In CI (CI=true) a missing Chromium fails the browser tests; locally they skip with the install hint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from latent_atlas.importance import tables
from latent_atlas.importance.explorer import explorer_data, render_explorer, write_explorer

H, W, D = 5, 7, 6


def _tables():
    """Pixel and latent tables where class 0 relies on z0, z1 and class 1 on z4, z5; z3 unused."""
    rows, cols = np.divmod(np.arange(H * W), W)
    pixel = pd.DataFrame({
        "pixel": np.repeat(np.arange(H * W), D), "row": np.repeat(rows, D),
        "col": np.repeat(cols, D), "dim": np.tile(np.arange(D), H * W)})
    rng = np.random.default_rng(0)
    pixel["importance"] = rng.random(len(pixel)) * 0.01
    pixel.loc[pixel["dim"] == 3, "importance"] = 0.0
    hot = (pixel["row"] == 0) & (pixel["col"] == W - 1)  # top-right corner: orientation check
    pixel.loc[hot, "importance"] = 1.0
    pixel["std"] = pixel["importance"] * 0.1
    pixel["sign"] = np.where(pixel["col"] < W // 2, -1, 1).astype(np.int8)
    pixel["directional"] = pixel["sign"] * pixel["importance"]
    imp_by_class = np.array([[9, 8, 1, 0, 2, 3], [1, 2, 3, 0, 8, 9.0]])
    latent = tables.latent_frame(tables.LatentImportance(np.array([0, 1]), None, imp_by_class,
                                                   imp_by_class * 0.1, imp_by_class, imp_by_class),
                              ["T-shirt/top", "Shirt </script>"])
    return pixel, latent


def test_explorer_html_is_self_contained(tmp_path):
    pixel, latent = _tables()
    path = tmp_path / "explorer.html"
    write_explorer(pixel, latent, path, title="test <model>", top_k=2, n_perm=4)
    text = path.read_text()
    assert "<script src" not in text and "http://" not in text.replace(
        'http://www.w3.org/2000/svg', "") and "https://" not in text
    assert "test &lt;model&gt;" in text
    assert "Shirt </script>" not in text  # a '</' in the data cannot end the script early
    payload = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    data = json.loads(payload.group(1))
    assert data["height"] == H and data["width"] == W and data["dims"] == list(range(D))
    assert data["classes"][1]["name"] == "Shirt </script>"
    # a pixel's value sits at row * W + col
    assert data["pixel"]["importance"][0][W - 1] == 1.0
    assert render_explorer(explorer_data(pixel, latent, "test <model>", 2, 4)) == text


def _shown(page):
    return [int(v) for v in page.eval_on_selector_all("#maps .map", "els => els.map(e => e.dataset.dim)")]


def test_explorer_in_chromium(browser, tmp_path):
    pixel, latent = _tables()
    path = tmp_path / "explorer.html"
    write_explorer(pixel, latent, path, title="digits / dense_ae", top_k=2, n_perm=4)
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_selector("#maps .map")
    assert _shown(page) == [0, 1]
    assert page.locator("#bars rect.bar").count() == D

    page.select_option("#class", label="Shirt </script>")
    page.wait_for_function("document.querySelector('#maps .map').dataset.dim === '5'")
    assert _shown(page) == [5, 4]  # the shown dimensions change with the class

    page.fill("#topk", "3")
    page.dispatch_event("#topk", "change")
    assert _shown(page) == [5, 4, 2]
    page.uncheck("#sort")
    assert _shown(page) == [2, 4, 5]
    bars = page.eval_on_selector_all("#bars rect.bar", "els => els.map(e => +e.dataset.dim)")
    assert bars == list(range(D))
    page.check("#hide")  # z3 has importance 0 for every class
    bars = page.eval_on_selector_all("#bars rect.bar", "els => els.map(e => +e.dataset.dim)")
    assert 3 not in bars and len(bars) == D - 1
    page.check("#sort")

    # Orientation: the hot pixel (row 0, col W-1) is drawn top-right; rotate 90 moves it bottom-right.
    def hot_corner():
        return page.evaluate("""() => {
          const cv = document.querySelector('#maps .map canvas');
          const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
          let best = -1, at = null;
          for (let y = 0; y < cv.height; y++) for (let x = 0; x < cv.width; x++) {
            const i = (y * cv.width + x) * 4, redness = d[i] - d[i + 2];
            if (redness > best) { best = redness; at = [y, x, cv.height, cv.width]; }
          }
          return at; }""")
    page.select_option("#value", "importance")
    assert hot_corner() == [0, W - 1, H, W]
    page.select_option("#rotate", "90")
    assert hot_corner() == [W - 1, H - 1, W, H]
    page.select_option("#rotate", "0")
    page.check("#flipx")
    assert hot_corner() == [0, 0, H, W]
    page.uncheck("#flipx")

    # Values on hover.
    box = page.locator("#maps .map canvas").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * (W - 0.5) / W, box["y"] + box["height"] * 0.5 / H)
    tip = page.locator("#tooltip")
    assert tip.is_visible() and "row 0, col 6" in tip.inner_text()

    page.check("#theme")
    assert "dark" in page.evaluate("document.body.className")
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg != "rgb(255, 255, 255)"
    shot = tmp_path / "explorer.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 5000
    if os.environ.get("IMPORTANCE_SCREENSHOT"):
        shutil.copy(shot, os.environ["IMPORTANCE_SCREENSHOT"])
    assert not errors, errors
    assert all(u.startswith("file://") or u.startswith("data:") for u in requests), requests
    page.close()


def _spectrogram_axes():
    from latent_atlas.data.store import ImageAxes

    # row 0 is the highest frequency, so low frequencies are drawn at the bottom
    return ImageAxes(rows=np.linspace(3500, 100, H), cols=(np.arange(W) + 0.5) * 0.125,
                     row_label="frequency (Hz)", col_label="time (s)")


def test_explorer_data_carries_the_axes():
    pixel, latent = _tables()
    data = explorer_data(pixel, latent, "fsdd / fsdd_ae", 2, 4, axes=_spectrogram_axes())
    assert data["axes"]["rows"][0] == 3500 and data["axes"]["rows"][-1] == 100
    assert data["axes"]["cols"] == [0.0625 + 0.125 * c for c in range(W)]
    assert (data["axes"]["row_label"], data["axes"]["col_label"]) == ("frequency (Hz)", "time (s)")
    assert "axes" not in explorer_data(pixel, latent, "digits", 2, 4)
    wrong = _spectrogram_axes()
    wrong.rows = wrong.rows[:-1]
    with pytest.raises(ValueError, match=f"4 x {W} do not match the importance maps of {H} x {W}"):
        explorer_data(pixel, latent, "fsdd", 2, 4, axes=wrong)


def test_explorer_in_chromium_ticks_hz_and_seconds(browser, tmp_path):
    pixel, latent = _tables()
    path = tmp_path / "explorer.html"
    write_explorer(pixel, latent, path, title="fsdd / fsdd_ae", top_k=2, n_perm=4, axes=_spectrogram_axes())
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_selector("#maps .map svg.ax")

    def axes():  # per axis of the first map: its label and its ticks as (value, position along it)
        return page.evaluate("""() => [...document.querySelector('#maps .map').querySelectorAll('svg.ax')]
          .map(svg => { const t = [...svg.querySelectorAll('text')];
            const vertical = +svg.getAttribute('height') > +svg.getAttribute('width');
            return {label: t[t.length - 1].textContent,
                    ticks: t.slice(0, -1).map(e => [+e.textContent, +e.getAttribute(vertical ? 'y' : 'x')])}; })""")

    left, bottom = axes()
    assert (left["label"], bottom["label"]) == ("frequency (Hz)", "time (s)")
    assert len(left["ticks"]) >= 3 and len(bottom["ticks"]) >= 3
    hz = sorted(left["ticks"], key=lambda t: t[1])  # top to bottom
    assert [v for v, _ in hz] == sorted((v for v, _ in hz), reverse=True)  # high frequencies on top
    assert all(100 <= v <= 3500 for v, _ in hz)
    s = sorted(bottom["ticks"], key=lambda t: t[1])
    assert [v for v, _ in s] == sorted(v for v, _ in s) and all(0.0625 <= v <= 0.8125 for v, _ in s)

    # the top-right pixel is the highest frequency at the last time
    box = page.locator("#maps .map canvas").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * (W - 0.5) / W, box["y"] + box["height"] * 0.5 / H)
    assert "3500 Hz, 0.8125 s" in page.locator("#tooltip").inner_text()

    page.select_option("#rotate", "90")  # time now runs down, frequency across
    left, bottom = axes()
    assert (left["label"], bottom["label"]) == ("time (s)", "frequency (Hz)")
    assert not errors, errors
    page.close()


def _tested_tables():
    """_tables with the significance test: declared where importance > 0.005 (z3 nowhere), and
    an interval over images and permutations."""
    pixel, latent = _tables()
    pixel["group"] = pixel["pixel"]
    pixel["se"] = pixel["std"] * 2
    pixel["interval_low"] = pixel["importance"] - 2 * pixel["se"]
    pixel["interval_high"] = pixel["importance"] + 2 * pixel["se"]
    pixel["p_value"] = np.where(pixel["importance"] > 0.005, 1e-4, 0.5)
    pixel["significant"] = pixel["importance"] > 0.005
    return pixel, latent


def test_explorer_data_carries_the_mask_of_tested_tables_only():
    pixel, latent = _tested_tables()
    data = explorer_data(pixel, latent, "digits", 2, 4, fdr=0.05)
    assert data["fdr"] == 0.05
    declared = np.array(data["declared"])
    assert declared.shape == (D, H * W) and set(np.unique(declared)) == {0, 1}
    at = pixel["dim"].to_numpy(), pixel["row"].to_numpy() * W + pixel["col"].to_numpy()
    np.testing.assert_array_equal(declared[at], pixel["significant"].astype(int))  # row * W + col
    assert data["pixel"]["interval_low"][0][W - 1] == pytest.approx(1.0 - 0.4)
    assert data["pixel"]["interval_high"][0][W - 1] == pytest.approx(1.0 + 0.4)

    old, _ = _tables()  # a table written before the test: the data of older pages
    data = explorer_data(old, latent, "digits", 2, 4, fdr=0.05)
    assert "declared" not in data and "fdr" not in data
    assert sorted(data["pixel"]) == ["directional", "importance", "std"]
    tested = explorer_data(pixel.drop(columns=["group", "se", "interval_low", "interval_high",
                                               "p_value", "significant"]), latent, "digits", 2, 4)
    assert tested == data


def test_explorer_in_chromium_greys_undeclared_pixels(browser, tmp_path):
    """Tested tables: undeclared pixels grey by default, the checkbox shows the unmasked map, the
    readout gives the interval over images and permutations; older tables: no mask control."""
    pixel, latent = _tested_tables()
    path = tmp_path / "explorer.html"
    write_explorer(pixel, latent, path, title="digits / dense_ae", top_k=2, n_perm=4, fdr=0.05)
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_selector("#maps .map")
    assert page.is_visible("#unmasked") and not page.is_checked("#unmasked")
    assert page.inner_text("#masknote") == "not declared at FDR 0.05"

    def grey():  # (H, W) bools of the first map: drawn in the mask's grey
        return np.array(page.evaluate("""() => {
          const cv = document.querySelector('#maps .map canvas');
          const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data, out = [];
          for (let i = 0; i < d.length; i += 4) out.push(d[i] === 217 && d[i + 1] === 217 && d[i + 2] === 217);
          return out; }""")).reshape(H, W)

    dim = int(page.eval_on_selector("#maps .map", "e => e.dataset.dim"))
    sub = pixel[pixel["dim"] == dim]
    undeclared = np.zeros((H, W), dtype=bool)
    undeclared[sub["row"], sub["col"]] = ~sub["significant"].to_numpy()
    assert undeclared.any() and not undeclared.all()
    np.testing.assert_array_equal(grey(), undeclared)
    page.check("#unmasked")
    assert not grey().any() and not page.is_visible("#masklegend")
    page.uncheck("#unmasked")
    assert page.is_visible("#masklegend")

    box = page.locator("#maps .map canvas").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * (W - 0.5) / W, box["y"] + box["height"] * 0.5 / H)
    tip = page.locator("#tooltip").inner_text()
    assert "interval over images and permutations [0.6000, 1.400]" in tip and tip.endswith(", declared")
    assert "±" not in tip
    assert not errors, errors
    page.close()

    old, _ = _tables()
    write_explorer(old, latent, path, title="digits / dense_ae", top_k=2, n_perm=4)
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.goto(path.as_uri())
    page.wait_for_selector("#maps .map")
    assert not page.is_visible("#unmasked") and not page.is_visible("#masklegend")
    assert not grey().any()
    page.mouse.move(box["x"] + box["width"] * (W - 0.5) / W, box["y"] + box["height"] * 0.5 / H)
    tip = page.locator("#tooltip").inner_text()
    assert "± 0.1000" in tip and "interval" not in tip and "declared" not in tip
    page.close()
