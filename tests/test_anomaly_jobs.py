"""The anomaly stage's job on a model trained here the one-class way (train.classes): scores for
every sample, areas equal to scikit-learn's, thresholds from the samples training held out, the
baselines on the same splits, the top anomalies' error maps where the anomaly is; and its errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from latent_atlas.anomaly.jobs import anomaly_scores, normal_mask, plot_anomaly, validation_rows
from latent_atlas.anomaly.scores import threshold_at_fpr
from latent_atlas.data.store import Dataset, DataError, load_dataset, save_dataset
from latent_atlas.io import read_npz, read_parquet, read_parquet_metadata
from latent_atlas.runtime import Files, Job

CORNER = (slice(0, 4), slice(12, 16))  # where the anomalous class has a bright patch
TRAIN = {"classes": ["plain"], "epochs": 25, "batch_size": 32, "lr": 0.01, "validation_fraction": 0.2}


def _images(n: int, patch: bool, rng) -> np.ndarray:
    x = np.zeros((n, 1, 16, 16), np.float32)
    for i in range(n):
        r, c = rng.integers(5, 9, size=2)
        x[i, 0, r:r + 4, c - 2:c + 2] = rng.uniform(0.6, 1.0)
    if patch:
        x[:, 0, CORNER[0], CORNER[1]] = 1.0
    return np.round(x * 255) / np.float32(255)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A store (classes plain, patched, other), a dense AE trained on `plain` only, its latents,
    and the anomaly job's tables (baselines on raw inputs and latents)."""
    from latent_atlas.models import jobs

    folder = tmp_path_factory.mktemp("anomaly")
    rng = np.random.default_rng(0)
    counts = {"plain": 240, "patched": 40, "other": 40}
    images = np.concatenate([_images(240, False, rng), _images(40, True, rng), _images(40, True, rng)[:, :, ::-1]])
    labels = np.repeat([0, 1, 2], list(counts.values()))
    split = np.where(rng.random(len(labels)) < 0.3, "test", "train")
    save_dataset(Dataset(images, labels, list(counts), split, np.arange(len(labels)), "blobs"), folder / "data")
    data = [str(folder / "data" / "images.npy"), str(folder / "data" / "samples.parquet")]
    model = folder / "model.pt"
    jobs.train(Job(input=Files([data[0]]), output=Files(model=str(model), metrics=str(folder / "m.json"),
                                                      train_log=str(folder / "log.tsv")),
                   wildcards=Files(model="ae")), seed=0, numeric_threads=1, arch="dense_ae",
               arch_params={"hidden": [32], "latent_dim": 4}, training=_train_settings(),
               checkpoint_dir=str(folder / "ckpt"))
    jobs.extract_model(Job(input=Files(data=data, model=str(model)), output=Files(latents=str(folder / "latents.parquet")),
                           wildcards=Files(model="ae")), numeric_threads=1, config_hash="h",
                       settings={"batch_size": 64, "reconstructions_per_class": 1, "hidden_max_samples": 10})
    out = Files(**{k: str(folder / f"{k}.{'npz' if k == 'cells' else 'parquet'}")
                   for k in ("scores", "summary", "curves", "top", "cells")})
    anomaly_scores(Job(input=Files(data=data, model=str(model), latents=str(folder / "latents.parquet")), output=out,
                       wildcards=Files(dataset="blobs", model="ae")),
                   seed=0, numeric_threads=1, normal_classes=TRAIN["classes"], normal_attributes=None,
                   validation=_validation(), error="mse",
                   fpr=0.1,
                   top_k=5, batch_size=50,
                   baselines={"methods": ["iforest", "ecod", "knn"], "inputs": ["raw", "latent"], "max_fit": 500, "k": 3})
    return folder, data, out


def _train_settings():
    from latent_atlas.schema import with_defaults

    return with_defaults(TRAIN, "#/$defs/train", "train")


def _validation():
    settings = _train_settings()
    return {"classes": settings["classes"], "validation_fraction": settings["validation_fraction"],
            "max_train_samples": settings.get("max_train_samples")}


def test_every_sample_is_scored_and_the_areas_are_scikit_learns(run):
    folder, data, out = run
    scores, summary = read_parquet(out.scores), read_parquet(out.summary)
    ds = load_dataset(data)
    assert len(scores) == len(ds) and scores["score"].notna().all()
    assert list(scores["is_anomaly"]) == list(ds.labels != 0)
    test = scores["split"] == "test"
    for row in summary.itertuples():
        column = row.method if row.method == "score" else f"{row.method}_{row.input}"
        values = scores.loc[test, column].to_numpy()
        assert row.roc_auc == roc_auc_score(scores.loc[test, "is_anomaly"], values)
        assert row.average_precision == average_precision_score(scores.loc[test, "is_anomaly"], values)
    model = summary.set_index("method").loc["score"]
    assert model["roc_auc"] > 0.95  # the corner patch is far from anything the AE saw
    assert set(summary["input"]) == {"raw", "latent"} and len(summary) == 7
    assert read_parquet_metadata(out.scores)["normal_classes"] == ["plain"]


def test_thresholds_come_from_the_normal_samples_training_held_out(run):
    folder, data, out = run
    ds = load_dataset(data)
    scores, summary = read_parquet(out.scores), read_parquet(out.summary)
    held = validation_rows(ds.labels, ds.split, ds.class_names, _validation(), 0, "k")
    plain_train = np.flatnonzero((ds.labels == 0) & (ds.split == "train"))
    assert set(held) <= set(plain_train) and len(held) == round(0.2 * len(plain_train))
    assert (summary["threshold_on"] == "validation").all()
    for row in summary.itertuples():
        column = row.method if row.method == "score" else f"{row.method}_{row.input}"
        assert row.threshold == threshold_at_fpr(scores[column].to_numpy()[held], 0.1)
    # the baselines scored exactly the test split and the held-out normals, nothing else
    scored = np.zeros(len(ds), bool)
    scored[held] = True
    scored |= ds.split == "test"
    np.testing.assert_array_equal(scores["knn_raw"].notna().to_numpy(), scored)


def test_the_top_anomalies_are_test_samples_with_the_error_in_the_corner(run):
    folder, data, out = run
    top, cells = read_parquet(out.top), read_npz(out.cells)
    scores = read_parquet(out.scores).set_index("sample_id")
    assert list(top["rank"]) == [1, 2, 3, 4, 5]
    assert (scores.loc[top["sample_id"], "split"] == "test").all() and top["is_anomaly"].all()
    assert np.all(np.diff(top["score"]) <= 0)
    assert cells["error"].shape == (5, 1, 16, 16)
    np.testing.assert_allclose(cells["error"].reshape(5, -1).mean(1), top["score"], rtol=1e-5)
    # the patch: top right for `patched`, bottom right for `other` (the same images upside down)
    rows = [CORNER[0] if name == "patched" else slice(12, 16) for name in top["label_name"]]
    corner = np.array([cells["error"][i, 0, r, CORNER[1]].sum() for i, r in enumerate(rows)])
    assert np.all(corner > 0.5 * cells["error"].sum(axis=(1, 2, 3)))


def test_the_figures_draw(run, tmp_path):
    folder, data, out = run
    paths = {k: [str(tmp_path / f"{k}.png")] for k in ("curves", "distribution", "top", "summary")}
    plot_anomaly(Job(input=Files(**{k: out[k] for k in out.keys()}, samples=data[1]), output=Files(**paths)))
    assert all((tmp_path / f"{k}.png").stat().st_size > 5000 for k in paths)


def test_which_samples_are_normal():
    labels = np.array([0, 1, 2, 1])
    np.testing.assert_array_equal(normal_mask(labels, ["a", "b", "c"], ["b", 0], "anomaly.normal_classes"),
                                  [True, True, False, True])
    np.testing.assert_array_equal(normal_mask(np.array([0, 1]), ["normal", "anomaly"], None, "k"), [True, False])
    assert normal_mask(labels, ["a", "b", "c"], None, "k") is None
    with pytest.raises(DataError, match="anomaly.normal_classes: unknown class 'z'"):
        normal_mask(labels, ["a", "b", "c"], ["z"], "anomaly.normal_classes")
    with pytest.raises(DataError, match="anomaly.normal_classes: every class is normal"):
        normal_mask(labels, ["a", "b", "c"], ["a", "b", "c"], "anomaly.normal_classes")


def test_without_labels_the_summary_is_empty_and_scores_remain(run, tmp_path):
    folder, data, _ = run
    out = Files(**{k: str(tmp_path / f"{k}.{'npz' if k == 'cells' else 'parquet'}")
                   for k in ("scores", "summary", "curves", "top", "cells")})
    anomaly_scores(Job(input=Files(data=data, model=str(folder / "model.pt"), latents=str(folder / "latents.parquet")),
                       output=out, wildcards=Files(dataset="blobs", model="ae")),
                   seed=0, numeric_threads=1, normal_classes=None, normal_attributes=None, validation=None,
                   error="standardised", fpr=0.1,
                   top_k=3, batch_size=64, baselines={"methods": ["ecod"], "inputs": ["latent"], "max_fit": 50, "k": 3})
    assert len(read_parquet(out.summary)) == 0 and len(read_parquet(out.curves)) == 0
    scores = read_parquet(out.scores)
    assert scores["score"].notna().all() and not scores["is_anomaly"].any() and "ecod_latent" in scores
    assert pd.isna(read_parquet_metadata(out.scores)["normal_classes"])


# ---------------------------------------------------------------------------------------------
# Normal samples by attribute values (the classes stay what they are)
# ---------------------------------------------------------------------------------------------


def _attribute_table(folder, data) -> str:
    """An attribute table of the fixture's store: `kind` usual for class plain, odd for the others."""
    from latent_atlas.data.attributes import attribute_frame
    from latent_atlas.io import write_parquet

    ds = load_dataset(data[0])
    frame, described = attribute_frame(ds.sample_id, ds.labels, ds.class_names, {"kind": (ds.labels != 0).astype(int)},
                                       {"kind": ["usual", "odd"]}, None, None, "datasets.blobs")
    path = str(folder / "attributes.parquet")
    write_parquet(frame, path, metadata={"dataset": "blobs", "attributes": described})
    return path


def test_attribute_mask_and_training_mask(run, tmp_path):
    from latent_atlas.data.attributes import attribute_mask
    from latent_atlas.models.jobs import training_mask

    folder, data, _ = run
    path = _attribute_table(tmp_path, data)
    ds = load_dataset(data[0])
    usual = attribute_mask(path, ds.sample_id, {"kind": ["usual"]}, "k")
    np.testing.assert_array_equal(usual, ds.labels == 0)
    np.testing.assert_array_equal(attribute_mask(path, ds.sample_id, {"kind": ["usual", "odd"], "class": ["other"]}, "k"),
                                  ds.labels == 2)
    np.testing.assert_array_equal(training_mask(ds, {"classes": ["plain", "patched"], "attributes": {"kind": ["odd"]}},
                                                path, "models.ae.train"), ds.labels == 1)
    assert training_mask(ds, {"classes": None}, None, "models.ae.train") is None
    with pytest.raises(DataError, match=r"models\.ae\.train\.attributes: the dataset has no attribute\(s\) 'voice'.*class, kind"):
        training_mask(ds, {"attributes": {"voice": ["x"]}}, path, "models.ae.train")
    with pytest.raises(DataError, match=r"k\.kind: no value 'weird'; attribute 'kind' takes: usual, odd"):
        attribute_mask(path, ds.sample_id, {"kind": ["weird"]}, "k")
    with pytest.raises(DataError, match="does not list the dataset store's samples"):
        attribute_mask(path, ds.sample_id[::-1], {"kind": ["odd"]}, "k")


def test_validation_rows_by_attributes_are_those_by_the_same_classes(run, tmp_path):
    from latent_atlas.data.attributes import attribute_mask

    folder, data, _ = run
    ds = load_dataset(data[0])
    usual = attribute_mask(_attribute_table(tmp_path, data), ds.sample_id, {"kind": ["usual"]}, "k")
    by_class = validation_rows(ds.labels, ds.split, ds.class_names, _validation(), 0, "k")
    by_attribute = validation_rows(ds.labels, ds.split, ds.class_names,
                                   {**_validation(), "classes": None, "attributes": {"kind": ["usual"]}}, 0, "k", usual)
    assert len(by_class) > 0
    np.testing.assert_array_equal(by_attribute, by_class)


def test_normal_attributes_give_the_classes_answer(run, tmp_path):
    """Normal samples named by an attribute (`kind: usual`, which is class plain) give the same
    anomalies, thresholds and areas as naming the class."""
    folder, data, out = run
    path = _attribute_table(tmp_path, data)
    mine = Files(**{k: str(tmp_path / f"{k}.{'npz' if k == 'cells' else 'parquet'}")
                    for k in ("scores", "summary", "curves", "top", "cells")})
    anomaly_scores(Job(input=Files(data=data, model=str(folder / "model.pt"), latents=str(folder / "latents.parquet"),
                                   attributes=path), output=mine, wildcards=Files(dataset="blobs", model="ae")),
                   seed=0, numeric_threads=1, normal_classes=None, normal_attributes={"kind": ["usual"]},
                   validation={**_validation(), "classes": None, "attributes": {"kind": ["usual"]}}, error="mse",
                   fpr=0.1, top_k=5, batch_size=50,
                   baselines={"methods": ["iforest", "ecod", "knn"], "inputs": ["raw", "latent"], "max_fit": 500, "k": 3})
    ours, theirs = read_parquet(mine.scores), read_parquet(out.scores)
    np.testing.assert_array_equal(ours["is_anomaly"], theirs["is_anomaly"])
    assert ours["is_anomaly"].sum() == 80
    pd.testing.assert_frame_equal(read_parquet(mine.summary), read_parquet(out.summary))
    assert read_parquet_metadata(mine.scores)["normal_attributes"] == {"kind": ["usual"]}
