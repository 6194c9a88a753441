"""The figure manifest (latent_atlas.figures.manifest): one row per figure file, a folder output
(the folder atlas) a row per file in it."""

from __future__ import annotations

import hashlib

from latent_atlas.figures.manifest import manifest_table


def test_a_folder_output_gives_a_row_per_file_with_the_folders_rule(tmp_path):
    (tmp_path / "b.png").write_bytes(b"png")
    atlas = tmp_path / "atlas"
    (atlas / "data").mkdir(parents=True)
    (atlas / "index.html").write_text("<html>")
    (atlas / "data" / "xy-0.js").write_text("ATLAS_DATA()")
    (atlas / ".snakemake_timestamp").write_text("")  # Snakemake's marker: not a figure
    figures = [str(tmp_path / "b.png"), str(atlas)]
    table = manifest_table(figures, {str(atlas): "atlas", str(tmp_path / "b.png"): "plot"}, "h")
    assert table["file"].tolist() == sorted([str(tmp_path / "b.png"), str(atlas / "index.html"),
                                             str(atlas / "data" / "xy-0.js")])
    rules = dict(zip(table["file"], table["rule"]))
    assert rules[str(atlas / "data" / "xy-0.js")] == "atlas" and rules[str(tmp_path / "b.png")] == "plot"
    sha = dict(zip(table["file"], table["sha256"]))
    assert sha[str(atlas / "index.html")] == hashlib.sha256(b"<html>").hexdigest()
    assert (table["config_hash"] == "h").all()
