"""The loop back into the pipeline (issue 27): an atlas page written by the workflow -> a
selection drawn and saved as selection.csv by the page in Chromium -> the importance stage
configured with that file -> it evaluates exactly the selected samples; saving another selection
over it reruns the stage."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from atlas_helpers import open_page
from conftest import run_snakemake
from latent_atlas.io import read_parquet, read_parquet_metadata

PAGE = "results/figures/digits/ae/atlas.html"
TABLE = "results/digits/ae/importance/latent_importance.parquet"


def _config(samples=None) -> dict:
    cfg = {
        "seed": 0, "numeric_threads": 1,
        "datasets": {"digits": {"source": "sklearn_digits"}},
        "models": {"ae": {"dataset": "digits", "arch": "dense_ae", "params": {"hidden": [16], "latent_dim": 2},
                          "train": {"epochs": 2, "batch_size": 256}}},
        "geometry": {"models": []}, "explain": {"models": []}, "featureviz": {"models": []},
        "atlas": {"models": ["ae"], "n_samples": 300},
        "importance": {"models": ["ae"] if samples else [], "n_perm": 1},
    }
    if samples:
        cfg["importance"]["samples"] = samples
    return cfg


def _save(page, name: str, target) -> None:
    page.fill("#sel-name", name)
    with page.expect_download() as download:
        page.click("#save-csv")
    shutil.copyfile(download.value.path(), target)


@pytest.mark.slow
def test_a_selection_saved_by_the_page_is_what_the_stage_evaluates(tmp_path, browser):
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(_config()))
    run_snakemake(tmp_path, "--cores", "2", PAGE, configfile=configfile)
    points = read_parquet(tmp_path / "results" / "digits" / "ae" / "atlas" / "points.parquet")
    x, y = points["x_pca"].to_numpy(np.float64), points["y_pca"].to_numpy(np.float64)
    cx, cy = float(np.median(x)), float(np.median(y))
    top, right, bottom, left = float(y.max() + 1), float(x.max() + 1), float(y.min() - 1), float(x.min() - 1)
    box = [[cx, cy], [right, cy], [right, top], [cx, top]]  # the upper right quarter
    expected = sorted(points.loc[(x > cx) & (y > cy), "sample_id"].tolist())
    assert 20 < len(expected) < len(points)

    page = open_page(browser, tmp_path / PAGE, 1400, 900)
    page.evaluate("box => window.atlas.select('pca', box)", box)
    assert sorted(page.evaluate("window.atlas.selection()")) == expected
    _save(page, "upper right", tmp_path / "selection.csv")

    samples = {"file": "selection.csv", "selection": "upper right"}
    configfile.write_text(yaml.safe_dump(_config(samples)))
    run_snakemake(tmp_path, "--cores", "2", TABLE, configfile=configfile)
    meta = read_parquet_metadata(tmp_path / TABLE)
    assert meta["samples"]["sample_ids"] == expected and meta["samples"]["selection"] == "upper right"

    # a second selection saved with the first: the file changes, the stage reruns on its own
    page.evaluate("() => window.atlas.clear()")
    page.evaluate("box => window.atlas.select('pca', box)", [[left, bottom], [cx, bottom], [cx, cy], [left, cy]])
    _save(page, "lower left", tmp_path / "selection.csv")
    assert not page.errors and not page.blocked, (page.errors, page.blocked)
    page.close()
    dry = run_snakemake(tmp_path, "-n", TABLE, configfile=configfile)
    out = dry.stdout + dry.stderr
    assert "rule latent_importance:" in out and "Updated input files: selection.csv" in out
    assert "rule train:" not in out
    run_snakemake(tmp_path, "--cores", "2", TABLE, configfile=configfile)
    assert read_parquet_metadata(tmp_path / TABLE)["samples"]["sample_ids"] == expected  # the same named selection
