"""docs/gallery.md: every image it names exists, every gallery image is named, sizes stay small,
and scripts/make_gallery.py downscales deterministically (no pipeline run needed)."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
from PIL import Image

from conftest import ROOT

GALLERY_DIR = ROOT / "docs" / "gallery"
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+\.png)\)|<img [^>]*src=\"([^\"]+\.png)\"")


def _images_named(markdown: str) -> list[str]:
    return [a or b for a, b in IMAGE_LINK.findall(markdown)]


def _script():
    spec = importlib.util.spec_from_file_location("make_gallery", ROOT / "scripts" / "make_gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_image_the_gallery_names_exists_and_every_gallery_image_is_named():
    named = _images_named((ROOT / "docs" / "gallery.md").read_text())
    assert named, "docs/gallery.md names no images"
    missing = [p for p in named if not (ROOT / "docs" / p).is_file()]
    assert not missing, f"docs/gallery.md names missing images: {missing}"
    on_disk = {p.name for p in GALLERY_DIR.glob("*.png")}
    unnamed = on_disk - {p.split("/")[-1] for p in named}
    assert not unnamed, f"docs/gallery/ holds images docs/gallery.md does not show: {sorted(unnamed)}"
    # `make gallery` regenerates every image the page shows.
    script = _script()
    regenerated = {g[1] for g in script.GALLERY} | {p[1] for p in script.PAGES}
    assert {p.split("/")[-1] for p in named} <= regenerated


def test_readme_thumbnails_exist_and_gallery_images_stay_small():
    thumbs = _images_named((ROOT / "README.md").read_text())
    assert 3 <= len([t for t in thumbs if t.startswith("docs/gallery/")]) <= 4
    assert all((ROOT / t).is_file() for t in thumbs), thumbs
    sizes = {p.name: p.stat().st_size for p in GALLERY_DIR.glob("*.png")}
    assert max(sizes.values()) <= 150_000, sizes
    assert sum(sizes.values()) <= 4_000_000


def test_downscaling_is_deterministic_and_bounded(tmp_path):
    script = _script()
    rng = np.random.default_rng(0)
    src = tmp_path / "figures" / "big.png"
    src.parent.mkdir()
    Image.fromarray(rng.integers(0, 255, (700, 1800, 3), dtype=np.uint8)).save(src)
    first, second = script.downscale(src), script.downscale(src)
    assert first == second
    with Image.open(src.parent / "big.png") as original, Image.open(__import__("io").BytesIO(first)) as small:
        assert small.width == script.MAX_WIDTH and small.height == round(700 * script.MAX_WIDTH / 1800)
        assert original.width == 1800
    script.GALLERY = [("figures/big.png", "big.png"), ("figures/absent.png", "absent.png")]
    written, missing = script.make_gallery([tmp_path], tmp_path / "out", pages=False)
    assert written == ["big.png"] and missing == ["figures/absent.png"]
    assert (tmp_path / "out" / "big.png").stat().st_size <= script.MAX_BYTES
