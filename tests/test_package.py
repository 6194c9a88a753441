"""`pip install .` ships the whole library: every file under src/latent_atlas (templates, the
config schema, the matplotlib style), and the pages it writes from an installed copy are the
source tree's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "src" / "latent_atlas"

# Writes, with the latent_atlas found on PYTHONPATH, one atlas page, one importance explorer, a
# figure in the bundled style and the schema's train defaults into argv[1]; prints where the
# library came from. Library functions, not jobs: they read the data files and take tiny inputs.
WRITE_PAGES = r"""
import json, sys
from pathlib import Path

import numpy as np
import pandas as pd

import latent_atlas
from latent_atlas.atlas.page import atlas_document
from latent_atlas.atlas.sprites import sprite_sheets
from latent_atlas.importance.explorer import write_explorer
from latent_atlas.plotting import save_figure, use_style
from latent_atlas.schema import defaults

out = Path(sys.argv[1])
sprites = sprite_sheets(np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4))
arrays = {"x": np.array([0.0, 1.0, 2.0], np.float32), "label": np.array([0, 1, 1], np.uint8)}
(out / "atlas.html").write_text(atlas_document({"title": "wheel"}, arrays, sprites, channels=1))
pixel = pd.DataFrame({"pixel": [0, 1, 2, 3] * 2, "row": [0, 0, 1, 1] * 2, "col": [0, 1, 0, 1] * 2,
                      "dim": [0] * 4 + [1] * 4, "importance": np.linspace(0, 1, 8),
                      "std": 0.1, "directional": np.linspace(-1, 1, 8)})
latent = pd.DataFrame({"class": [0, 0], "class_name": ["zero"] * 2, "dim": [0, 1],
                       "importance": [0.5, 0.25], "std": [0.01, 0.02], "rank": [1, 2]})
write_explorer(pixel, latent, out / "explorer.html", title="wheel")
use_style()
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.plot([0, 1], [1, 0])
save_figure(fig, out / "figure.png")
(out / "train_defaults.json").write_text(json.dumps(defaults("#/$defs/train"), sort_keys=True))
print(latent_atlas.__file__)
"""


def _pip(*args: str, cwd: Path) -> None:
    # --no-index: the build and install must work offline (setuptools comes from the venv).
    proc = subprocess.run([sys.executable, "-m", "pip", *args, "--no-deps", "--no-index", "--quiet"],
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _write_pages(pythonpath: Path, out: Path, cwd: Path) -> Path:
    """Run WRITE_PAGES with only `pythonpath` ahead of the venv; return latent_atlas's location."""
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(pythonpath), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", WRITE_PAGES, str(out)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1]).resolve()


def test_wheel_ships_every_package_file_and_writes_the_pages(tmp_path):
    # Build from a copy, so no build/ or *.egg-info lands in the source tree.
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _pip("wheel", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source), cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("latent_atlas-*.whl")

    package_files = {p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts}
    assert {"latent_atlas/atlas/templates/atlas.html", "latent_atlas/config.schema.yaml"} <= package_files
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert sorted(package_files - shipped) == []

    site = tmp_path / "site"
    _pip("install", "--target", str(site), str(wheel), cwd=tmp_path)
    installed = _write_pages(site, tmp_path / "installed", cwd=tmp_path)
    assert installed.is_relative_to(site.resolve()), installed
    source_tree = _write_pages(PACKAGE.parent, tmp_path / "source_tree", cwd=tmp_path)
    assert source_tree.is_relative_to(PACKAGE), source_tree

    for name in ("atlas.html", "explorer.html", "figure.png", "train_defaults.json"):
        assert (tmp_path / "installed" / name).read_bytes() == (tmp_path / "source_tree" / name).read_bytes(), name
    assert json.loads((tmp_path / "installed" / "train_defaults.json").read_text())["epochs"] > 0
    assert "<canvas" in (tmp_path / "installed" / "atlas.html").read_text()
