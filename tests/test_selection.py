"""Selections of samples (latent_atlas.selection) as the samples of explain, importance, featureviz
and compare: reading selection.csv, its errors, each stage's job on exactly the selected ids, and a
workflow run that reruns when the file changes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import run_snakemake
from latent_atlas.data.store import DataError
from latent_atlas.io import read_parquet, read_parquet_metadata
from latent_atlas.runtime import Files, Job
from latent_atlas.schema import ConfigError, defaults, with_defaults
from latent_atlas.selection import (explained_inputs, explained_samples, read_selection, restrict,
                                    selection_inputs, selection_params)

WHERE = "importance.samples.file"


def _csv(path, rows, header="sample_id,selection"):
    path.write_text(header + "\n" + "".join(f"{sid},{name}\n" for sid, name in rows))
    return path


# --- reading a selection file --------------------------------------------------------------------

def test_read_selection_gives_the_named_selection_sorted_and_unique(tmp_path):
    path = _csv(tmp_path / "sel.csv", [(12, "a"), (3, "a"), (12, "a"), (5, "selection 2"), (3, "selection 2")])
    ids = read_selection(path, "a", WHERE)
    assert ids.dtype == np.int64 and ids.tolist() == [3, 12]
    assert read_selection(path, "selection 2", WHERE).tolist() == [3, 5]
    assert read_selection(path, None, WHERE).tolist() == [3, 5, 12]


@pytest.mark.parametrize("content, selection, message", [
    (None, "a", "not found"),
    ("id,selection\n1,a\n", "a", "no `sample_id` column"),
    ("sample_id,selection\n1,a\nx7,a\n2.5,a\n", "a", "not non-negative integers: ['x7', '2.5']"),
    ("sample_id,selection\n1,a\n2,b\n", "c", "holds no selection 'c'; it holds ['a', 'b']"),
    ("sample_id,selection\n", None, "the file holds no samples"),
])
def test_read_selection_errors_name_the_key_and_the_file(tmp_path, content, selection, message):
    path = tmp_path / "sel.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError) as err:
        read_selection(path, selection, WHERE)
    assert str(err.value).startswith(f"{WHERE}: ") and str(path) in str(err.value) and message in str(err.value)


def test_restrict_finds_the_wanted_ids_and_names_at_most_ten_it_cannot():
    available = np.array([40, 10, 30, 20])
    assert restrict(np.array([10, 20, 40]), available, WHERE, "sel.csv").tolist() == [1, 3, 0]
    wanted = np.array([10, *range(100, 112)])
    with pytest.raises(DataError) as err:
        restrict(wanted, available, WHERE, "sel.csv", among="dataset 'digits'")
    text = str(err.value)
    assert text.startswith(WHERE) and "sel.csv" in text and "12 of the 13 samples" in text
    assert "dataset 'digits'" in text and "100, 101" in text and "109, ..." in text and "110" not in text


# --- config: absent by default, the rules' inputs and params -------------------------------------

def test_the_key_is_absent_by_default_and_the_rules_get_nothing_from_it():
    for section in ("importance", "featureviz", "compare"):
        filled = defaults(f"#/properties/{section}")
        assert "samples" not in filled
        assert selection_inputs(filled) == {} and selection_params(filled, section) == {}
    explain = defaults("#/properties/explain")["samples"]
    assert set(explain) == {"ids", "max_maps"} and explained_inputs(explain) == {}
    assert explained_samples(explain) == []
    assert explained_samples({**explain, "ids": [4, 2]}) == [4, 2]


def test_a_set_key_gives_the_file_as_input_and_the_selection_as_params():
    section = with_defaults({"samples": {"file": "sel.csv", "selection": "a"}}, "#/properties/importance",
                            "importance")
    assert selection_inputs(section) == {"samples": "sel.csv"}
    assert selection_params(section, "importance") == {
        "samples": {"key": "importance.samples", "file": "sel.csv", "selection": "a"}}
    explain = with_defaults({"samples": {"file": "sel.csv", "selection": None}}, "#/properties/explain",
                            "explain")["samples"]
    assert explained_inputs(explain) == {"samples": "sel.csv"}
    assert explained_samples(explain) == {"key": "explain.samples", "file": "sel.csv", "selection": None}
    with pytest.raises(ConfigError, match=r"explain.samples.ids or explain.samples.file, not both"):
        explained_samples({**explain, "ids": [1]})


def test_the_schema_takes_file_and_selection_and_nothing_else():
    import jsonschema

    from latent_atlas.schema import schema_node

    schema = schema_node("#")
    base = {"datasets": {"d": {"source": "sklearn_digits"}}, "models": {}}
    ok = {"importance": {"samples": {"file": "sel.csv", "selection": None}},
          "explain": {"samples": {"file": "sel.csv", "selection": "a"}}}
    jsonschema.validate({**base, **ok}, schema)
    for bad in ({"compare": {"samples": {"file": "sel.csv"}}},
                {"featureviz": {"samples": {"file": "sel.csv", "selection": "a", "other": 1}}},
                {"explain": {"samples": {"file": "sel.csv"}}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**base, **bad}, schema)


# --- each stage's job on exactly the selected ids ------------------------------------------------

# Tiny dataset (tests/model_helpers.tiny_dataset, n=80): ids 1000..1079, the last 20 the test split.
SELECTED = [1003, 1017, 1050, 1061, 1075]  # train and test samples


@pytest.fixture
def tiny(tmp_path):
    """The tiny dataset's store, an untrained dense_ae and mlp classifier on it, a latents table
    and a selection file (selection a: SELECTED; selection b: two other ids)."""
    from model_helpers import TINY_PARAMS, tiny_dataset

    from latent_atlas.data.store import save_dataset
    from latent_atlas.io import write_parquet
    from latent_atlas.latents import id_frame, latents_frame_of
    from latent_atlas.models.networks import build_model, save_model

    ds = tiny_dataset(n=80)
    save_dataset(ds, tmp_path / "tiny")
    torch.manual_seed(0)
    for arch in ("dense_ae", "mlp_classifier"):
        save_model(build_model(arch, (1, 16, 16), 3, TINY_PARAMS[arch]), tmp_path / f"{arch}.pt", ds.class_names)
    z = np.random.default_rng(0).normal(size=(len(ds), 5))
    for name, zz in (("a", z), ("b", z @ np.random.default_rng(1).normal(size=(5, 3)))):
        write_parquet(latents_frame_of(id_frame(ds.sample_id, ds.split, ds.labels, ds.class_names), zz),
                      tmp_path / f"latents_{name}.parquet")
    _csv(tmp_path / "sel.csv", [*((sid, "a") for sid in reversed(SELECTED)), (1001, "b"), (1070, "b")])
    return Files(data=str(tmp_path / "tiny"), ae=str(tmp_path / "dense_ae.pt"),
                 classifier=str(tmp_path / "mlp_classifier.pt"), latents_a=str(tmp_path / "latents_a.parquet"),
                 latents_b=str(tmp_path / "latents_b.parquet"), samples=str(tmp_path / "sel.csv"), ds=ds)


def _samples(section, selection="a", file="sel.csv"):
    return selection_params({"samples": {"file": file, "selection": selection}}, section)["samples"]


def test_importance_evaluates_on_the_selected_samples(tiny, tmp_path):
    """latent_importance and a block evaluate on the selection (both splits, sample_id order), and
    max_samples caps it, seeded; the latent table is the one computed on those images alone."""
    from rule_settings import importance_settings

    from latent_atlas.importance import jobs
    from latent_atlas.importance.evaluation import evaluation_set, latent_table
    from latent_atlas.importance.plan import plan
    from latent_atlas.io import write_json
    from latent_atlas.models.networks import load_model

    write_json(plan(tiny.data, 64), tmp_path / "plan.json")
    inputs = Files(data=tiny.data, model=tiny.ae, plan=str(tmp_path / "plan.json"), samples=tiny.samples)
    section = {"device": "cpu", "n_perm": 2, "block_size": 64}

    def run(job_function, output, **extra):
        job = Job(input=inputs, output=Files([str(tmp_path / output)]),
                  wildcards=Files(dataset="tiny", model="ae", block="0000"))
        job_function(job, samples=_samples("importance"),
                     **importance_settings(job_function, {**section, **extra}, kind="autoencoder", seed=3))
        return read_parquet(tmp_path / output), read_parquet_metadata(tmp_path / output)

    latent, meta = run(jobs.latent_importance, "latent.parquet")
    assert meta["samples"]["sample_ids"] == SELECTED and meta["samples"]["selection"] == "a"
    selected = tiny.ds.subset(np.searchsorted(tiny.ds.sample_id, SELECTED))
    images, labels, names = evaluation_set(selected, None, 3)
    expected = latent_table(load_model(tiny.ae), images, labels, names, n_perm=2, batch_size=8192,
                            confidence=0.95, seed=3, device="cpu")
    pd.testing.assert_frame_equal(latent, expected)
    _, meta = run(jobs.importance_block, "block.parquet")
    assert meta["samples"]["sample_ids"] == SELECTED
    _, meta = run(jobs.latent_importance, "capped.parquet", max_samples=3)
    capped = meta["samples"]["sample_ids"]
    assert len(capped) == 3 and set(capped) < set(SELECTED) and capped == sorted(capped)


def test_featureviz_gallery_searches_the_selected_samples(tiny, tmp_path, monkeypatch):
    from latent_atlas.featureviz import gallery as gallery_module
    from latent_atlas.featureviz.jobs import featureviz_gallery

    seen = []

    def fake_gallery(model, names, opt, *, layer, images, image_ids, **settings):
        seen.append((np.asarray(images), np.asarray(image_ids)))
        return pd.DataFrame({"unit": [0]}), np.zeros((1, 1, 16, 16), np.float32)

    monkeypatch.setattr(gallery_module, "gallery", fake_gallery)
    section = defaults("#/properties/featureviz")
    optimiser = {k: section[k] for k in ("lr", "output_objective", "clip_regulariser_gradients")}
    settings = {k: v for k, v in section["gallery"].items() if k != "layers"}
    job = Job(input=Files(model=tiny.classifier, data=tiny.data, samples=tiny.samples),
              output=Files(table=str(tmp_path / "g.parquet"), images=str(tmp_path / "g.npz")),
              wildcards=Files(dataset="tiny", model="m", layer="1"))
    featureviz_gallery(job, samples=_samples("featureviz"), seed=0, numeric_threads=1, optimiser=optimiser, settings=settings)
    featureviz_gallery(job, seed=0, numeric_threads=1, optimiser=optimiser, settings=settings)
    (images, ids), (_, test_ids) = seen
    assert ids.tolist() == SELECTED
    np.testing.assert_array_equal(images, tiny.ds.images[np.searchsorted(tiny.ds.sample_id, SELECTED)])
    assert sorted(test_ids.tolist()) == tiny.ds.sample_id[tiny.ds.split == "test"].tolist()


def test_compare_pair_and_its_maps_use_the_selected_samples(tiny, tmp_path):
    from latent_atlas.compare.jobs import compare_pair
    from latent_atlas.explain.jobs import explain_maps

    ids = list(range(1000, 1060, 2))  # 30 samples of every class: enough to map and to probe
    _csv(tmp_path / "many.csv", [(sid, "many") for sid in ids] + [(1001, "other")])
    inputs = Files(latents_a=tiny.latents_a, latents_b=tiny.latents_b, samples=str(tmp_path / "many.csv"))
    outputs = Files(**{name: str(tmp_path / f"{name}.parquet") for name in ("measures", "points", "dimensions")})
    job = Job(input=inputs, output=outputs, wildcards=Files(dataset="tiny", a="a", b="b"))
    compare_pair(job, samples=_samples("compare", "many", "many.csv"), seed=0, numeric_threads=1, split="test",
                 max_samples=20, k=[5], rbf_max_samples=100, svcca_k=3, cv_folds=3)
    assert read_parquet(outputs.points)["sample_id"].tolist() == ids
    assert read_parquet(outputs.measures)["n_samples"].tolist() == [len(ids)]

    settings = defaults("#/properties/explain")
    maps = Files(**{name: str(tmp_path / f"{name}.parquet")
                    for name in ("maps", "placement", "pca_scree", "pca_loadings", "pca_contributions")})
    job = Job(input=Files([tiny.latents_a], samples=str(tmp_path / "many.csv")), output=maps,
              wildcards=Files(dataset="tiny", model="a"))
    explain_maps(job, samples=_samples("compare", "many", "many.csv"), seed=0, numeric_threads=1, split="test",
                 n_samples=20, sample_ids=[], tsne={**settings["tsne"], "perplexity": 5, "n_iter": 50},
                 umap={**settings["umap"], "n_neighbors": 5}, loading_components=2)
    table = read_parquet(maps.maps)
    assert sorted(set(table["sample_id"])) == ids and table.groupby("method").size().eq(len(ids)).all()


def test_explain_explains_the_selected_samples(tiny, tmp_path):
    from latent_atlas.explain.jobs import explain_maps

    settings = defaults("#/properties/explain")
    maps = Files(**{name: str(tmp_path / f"{name}.parquet")
                    for name in ("maps", "placement", "pca_scree", "pca_loadings", "pca_contributions")})
    job = Job(input=Files([tiny.latents_a], samples=tiny.samples), output=maps,
              wildcards=Files(dataset="tiny", model="a"))
    explain_maps(job, seed=0, numeric_threads=1, split="all", n_samples=40,
                 sample_ids=explained_samples({"ids": [], "file": "sel.csv", "selection": "a"}),
                 tsne={**settings["tsne"], "perplexity": 5, "n_iter": 50},
                 umap={**settings["umap"], "n_neighbors": 5}, loading_components=2)
    placement = read_parquet(maps.placement)
    assert sorted(set(placement["sample_id"])) == SELECTED
    assert not set(read_parquet(maps.maps)["sample_id"]) & set(SELECTED)  # placed out of sample
    assert sorted(set(read_parquet(maps.pca_contributions)["sample_id"])) == SELECTED


def test_a_selected_id_the_stage_lacks_is_named(tiny, tmp_path):
    from latent_atlas.compare.jobs import compare_pair

    _csv(tmp_path / "far.csv", [(1003, "a"), (99999, "a")])
    outputs = Files(**{name: str(tmp_path / f"{name}.parquet") for name in ("measures", "points", "dimensions")})
    job = Job(input=Files(latents_a=tiny.latents_a, latents_b=tiny.latents_b, samples=str(tmp_path / "far.csv")),
              output=outputs, wildcards=Files(dataset="tiny", a="a", b="b"))
    with pytest.raises(DataError, match=r"compare.samples.file: 1 of the 2 samples selected in .*far.csv are not "
                                        r"in the latents .*latents_a.parquet: \[99999\]"):
        compare_pair(job, samples=_samples("compare", "a", "far.csv"), seed=0, numeric_threads=1, split="test",
                     max_samples=20, k=[5], rbf_max_samples=100, svcca_k=3, cv_folds=3)


# --- the workflow: the file is an input ----------------------------------------------------------

@pytest.mark.slow
def test_importance_on_a_selection_reruns_when_the_file_changes(tmp_path):
    """importance.samples reaches latent_importance: its table records exactly selection a's ids;
    an unchanged file needs no rerun, an edited one reruns the job."""
    cfg = {
        "seed": 0, "numeric_threads": 1,
        "datasets": {"digits": {"source": "sklearn_digits"}},
        "models": {"ae": {"dataset": "digits", "arch": "dense_ae", "params": {"hidden": [16], "latent_dim": 2},
                          "train": {"epochs": 1, "batch_size": 256}}},
        "importance": {"models": ["ae"], "n_perm": 1, "samples": {"file": "sel.csv", "selection": "a"}},
    }
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    _csv(tmp_path / "sel.csv", [(1500, "a"), (3, "a"), (10, "a"), (7, "b"), (8, "b")])
    target = "results/digits/ae/importance/latent_importance.parquet"
    run_snakemake(tmp_path, "--cores", "2", target, configfile=configfile)
    meta = read_parquet_metadata(tmp_path / target)
    assert meta["samples"]["sample_ids"] == [3, 10, 1500] and meta["samples"]["file"] == "sel.csv"

    again = run_snakemake(tmp_path, "-n", target, configfile=configfile)
    assert "Nothing to be done" in again.stdout + again.stderr
    _csv(tmp_path / "sel.csv", [(3, "a"), (11, "a"), (7, "b")])
    rerun = run_snakemake(tmp_path, "-n", target, configfile=configfile)
    out = rerun.stdout + rerun.stderr
    assert "rule latent_importance:" in out and "Updated input files: sel.csv" in out
    assert "rule train:" not in out  # the model does not read the file
