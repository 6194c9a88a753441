"""Tests of the explain stage: quality numbers, ridge maps, PCA contributions, transforms, outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from latent_atlas import explain, projections


def _blobs(n=300, d=12, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(k, d))
    labels = np.arange(n) % k
    return centres[labels] + rng.normal(size=(n, d)), labels


def _latents_frame(X, labels, split=None):
    n = len(X)
    df = pd.DataFrame({"sample_id": np.arange(100, 100 + n, dtype=np.int64),
                       "split": split if split is not None else np.where(np.arange(n) < n // 2, "train", "test"),
                       "label": labels.astype(np.int64), "label_name": [f"c{c}" for c in labels]})
    for i in range(X.shape[1]):
        df[f"z{i}"] = X[:, i].astype(np.float32)
    return df


# --- quality numbers -------------------------------------------------------------------------

def test_trustworthiness_of_pca_on_a_plane_is_one():
    rng = np.random.default_rng(1)
    plane = rng.normal(size=(200, 2)) * [3.0, 1.0]
    basis = np.linalg.qr(rng.normal(size=(10, 2)))[0].T  # two orthonormal directions in 10-D
    X = plane @ basis + 5.0
    Y = projections.pca_fit(X, n_components=2).transform(X)
    assert explain.trustworthiness(X, Y, k=10) == pytest.approx(1.0, abs=1e-12)
    assert explain.continuity(X, Y, k=10) == pytest.approx(1.0, abs=1e-12)


def test_continuity_swaps_the_spaces():
    # A circle cut into 8 arcs laid out on a line in shuffled order with gaps: the map tears
    # true neighbours apart at every cut (continuity clearly below 1) but hardly ever puts far
    # points together (trustworthiness near 1; only the arc ends see one-sided neighbours).
    t = np.linspace(0, 2 * np.pi, 240, endpoint=False)
    X = np.c_[np.cos(t), np.sin(t)]
    arc = np.arange(240) // 30
    slot = np.argsort([3, 0, 6, 1, 7, 4, 2, 5])[arc]
    Y = np.c_[t + (1.5 * slot - arc) * 2 * np.pi / 8, np.zeros_like(t)]
    trust, cont = explain.trustworthiness(X, Y, k=5), explain.continuity(X, Y, k=5)
    assert trust > 0.995 and cont < 0.98
    # Gluing the arcs back into a circle is the mirror case: the numbers swap roles.
    assert explain.trustworthiness(Y, X, k=5) == pytest.approx(cont)
    assert explain.continuity(Y, X, k=5) == pytest.approx(trust)


def test_knn_accuracy_separates_blobs_and_chance():
    X, labels = _blobs()
    acc, sd = explain.knn_accuracy(X, labels, k=5, n_folds=5, random_state=0)
    assert acc > 0.98 and sd >= 0
    noise = np.random.default_rng(0).normal(size=X.shape)
    acc_noise, _ = explain.knn_accuracy(noise, labels, k=5, n_folds=5, random_state=0)
    assert acc_noise < 0.6
    assert explain.knn_accuracy(X, labels, 5, 5, 3) == explain.knn_accuracy(X, labels, 5, 5, 3)


def test_map_quality_table():
    X, labels = _blobs(n=200)
    coords = {"pca": X[:, :2], "tsne": X[:, 2:4], "umap": X[:, 4:6]}
    q = explain.map_quality(X, coords, labels, k=5, knn_k=5, n_folds=4)
    assert list(q["space"]) == ["full", "pca", "tsne", "umap"]
    assert q.loc[1:, "trustworthiness"].between(0, 1).all() and np.isnan(q.loc[0, "continuity"])
    with pytest.raises(ValueError, match="explain.quality.k"):
        explain.trustworthiness(X[:10], X[:10, :2], k=6)


# --- features ---------------------------------------------------------------------------------

def test_feature_stats_and_clustered_correlation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 400))
    X = np.c_[a, b, np.zeros(400), a + 0.01 * rng.normal(size=400), b * -2, 1e-5 * rng.normal(size=400)]
    cols = [f"z{i}" for i in range(X.shape[1])]
    stats = explain.feature_stats(X, cols, near_constant=0.01)
    assert stats["dead"].tolist() == [False, False, True, False, False, False]
    assert stats["near_constant"].tolist() == [False, False, True, False, False, True]
    assert sorted(stats["order"]) == list(range(6))
    corr = explain.clustered_correlation(X, cols)
    assert len(corr) == 36
    pos = dict(zip(stats["feature"], stats["order"]))
    assert abs(pos["z0"] - pos["z3"]) == 1 and abs(pos["z1"] - pos["z4"]) == 1  # correlated pairs adjacent
    r = corr.set_index(["feature_a", "feature_b"])["r"]
    assert r[("z1", "z4")] == pytest.approx(-1.0, abs=1e-6)
    assert np.isnan(r[("z2", "z2")]) and np.isnan(r[("z2", "z0")])


# --- ridge ------------------------------------------------------------------------------------

def test_ridge_r2_near_one_for_a_linear_map():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 20))
    W = rng.normal(size=(20, 2))
    coords = {"tsne": X @ W, "umap": np.tanh(rng.normal(size=(400, 2)))}
    cols = [f"z{i}" for i in range(20)]
    scores, coefs, preds = explain.ridge_maps(X, coords, cols, alphas=(1e-3, 1e-2, 0.1), n_folds=5)
    s = scores.set_index(["method", "axis"])["r2"]
    assert s[("tsne", "x")] > 0.999 and s[("tsne", "y")] > 0.999
    assert s[("umap", "x")] < 0.2  # unrelated to the features
    top = coefs[(coefs["method"] == "tsne") & (coefs["axis"] == "x")].sort_values("rank")
    assert top["feature"].iloc[0] == cols[int(np.argmax(np.abs(W[:, 0] * X.std(axis=0))))]
    assert len(preds) == 4 * 400


# --- PCA ---------------------------------------------------------------------------------------

def test_pca_contributions_sum_to_the_coordinate():
    X, _ = _blobs(n=150, d=8)
    cols = [f"z{i}" for i in range(8)]
    pca = projections.pca_fit(X)
    x = X[7] + 0.3
    contrib = explain.pca_contributions(x, pca, cols, components=(1, 2, 3))
    coords = pca.transform(x[None])[0]
    for c in (1, 2, 3):
        assert contrib[contrib["component"] == c]["contribution"].sum() == pytest.approx(coords[c - 1])
    scree, loadings = explain.pca_tables(pca, cols, n_components=3)
    assert scree["cumulative"].iloc[-1] == pytest.approx(1.0)
    assert explain.variance_at(scree, 3) == pytest.approx(pca.explained_variance_ratio_[:3].sum())
    assert explain.variance_at(scree, 99) == pytest.approx(1.0)
    assert len(loadings) == 3 * 8


# --- maps and transforms -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted():
    X, labels = _blobs(n=240, d=10, k=3)
    coords, models = explain.embed_maps(
        X, tsne={"perplexity": 20, "n_iter": 200, "early_exaggeration_iter": 100},
        umap={"n_neighbors": 10}, random_state=0, n_jobs=1)
    return X, labels, coords, models


def test_transform_of_a_training_sample_lands_near_its_own_position(fitted):
    X, labels, coords, models = fitted
    rows = [0, 1, 2, 50, 101]
    placed = explain.place_samples(models, X[rows])
    for method in explain.METHODS:
        spread = np.ptp(coords[method], axis=0).max()
        dist = np.linalg.norm(placed[method] - coords[method][rows], axis=1)
        assert dist.max() < 0.1 * spread, method
        if method == "pca":
            np.testing.assert_allclose(placed[method], coords[method][rows], atol=1e-9)


def test_maps_are_deterministic_and_separate_classes(fitted):
    X, labels, coords, _ = fitted
    again, _ = explain.embed_maps(
        X, tsne={"perplexity": 20, "n_iter": 200, "early_exaggeration_iter": 100},
        umap={"n_neighbors": 10}, random_state=0, n_jobs=1)
    for method in explain.METHODS:
        np.testing.assert_array_equal(coords[method], again[method])
        acc, _ = explain.knn_accuracy(coords[method], labels, k=5)
        assert acc > 0.95


def test_cluster_profiles_find_the_feature_a_class_turns_on(fitted):
    X, labels, coords, _ = fitted
    X = X.copy()
    X[labels == 1, 4] += 30.0
    cols = [f"z{i}" for i in range(X.shape[1])]
    clusters, names = explain.cluster_assignments(labels, ["a", "b", "c"], coords["umap"])
    assert names == ["a", "b", "c"]
    prof = explain.cluster_profiles(X, cols, clusters, names)
    best = prof[(prof["cluster"] == 1) & (prof["rank"] == 1)]
    assert best["feature"].item() == "z4" and best["z"].item() > 0
    km, km_names = explain.cluster_assignments(labels, ["a", "b", "c"], coords["umap"], method="kmeans")
    assert len(km_names) == 3 and set(km) == {0, 1, 2}
    # k-means on well-separated blobs recovers the classes up to renaming
    assert all(len(set(labels[km == c])) == 1 for c in range(3))
    with pytest.raises(ValueError, match="explain.clusters.method"):
        explain.cluster_assignments(labels, ["a", "b", "c"], coords["umap"], method="dbscan")


def test_coords_table_roundtrip(fitted):
    X, labels, coords, _ = fitted
    ids = _latents_frame(X, labels)
    table = explain.coords_table(ids, coords)
    assert len(table) == 3 * len(X)
    np.testing.assert_allclose(explain.coords_of(table, "umap"), coords["umap"], rtol=1e-6)


# --- which samples --------------------------------------------------------------------------------

def test_default_samples_and_subset():
    X, labels = _blobs(n=60)
    df = _latents_frame(X, labels)
    ids = explain.default_sample_ids(df)
    test = df[df["split"] == "test"]
    assert ids[0] == test["sample_id"].iloc[0]
    assert df.set_index("sample_id").loc[ids, "label"].nunique() == 2
    assert explain.explained_sample_ids(df, []) == ids
    assert explain.explained_sample_ids(df, [101, 105]) == [101, 105]
    with pytest.raises(ValueError, match="explain.samples.ids"):
        explain.explained_sample_ids(df, [5])
    subset = explain.map_subset(df, "test", 20, exclude=ids, random_state=0)
    assert len(subset) == 20 and not subset["sample_id"].isin(ids).any()
    assert (subset["split"] == "test").all()
    assert explain.map_subset(df, "test", 20, exclude=ids, random_state=0).equals(subset)
    with pytest.raises(ValueError, match="explain.split"):
        explain.map_subset(df, "validation", 20)


def test_grid_shape():
    assert explain.grid_shape(128) == (8, 16)
    assert explain.grid_shape(32) == (4, 8)
    assert explain.grid_shape(7) == (1, 7)


def test_first_layer_activations_of_simple_models():
    torch = pytest.importorskip("torch")
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 8 * 8, 3))
    x = torch.randn(2, 1, 8, 8)
    acts, kind = explain.first_layer_activations(conv, x)
    assert kind == "conv" and acts.shape == (2, 4, 8, 8) and acts.min() >= 0
    dense = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5), torch.nn.Linear(5, 2))
    acts, kind = explain.first_layer_activations(dense, x)
    assert kind == "dense" and acts.shape == (2, 5) and acts.min() < 0  # linear: no nonlinearity


# --- config ---------------------------------------------------------------------------------------

def test_schema_fills_explain_defaults(root):
    import yaml
    from snakemake.utils import validate

    cfg = {"datasets": {"d": {"source": "sklearn_digits"}}, "models": {}, "explain": {"tsne": {"perplexity": 10}}}
    validate(cfg, str(root / "workflow" / "schemas" / "config.schema.yaml"))
    ex = cfg["explain"]
    assert ex["n_samples"] == 2000 and ex["split"] == "test"
    assert ex["tsne"] == {"perplexity": 10, "early_exaggeration": 12, "early_exaggeration_iter": 250,
                          "n_iter": 500, "initialization": "pca", "metric": "euclidean"}
    assert ex["quality"]["k"] == 10 and ex["clusters"]["method"] == "class" and ex["samples"]["ids"] == []
    for name in ("config.yaml", "test.yaml"):
        full = yaml.safe_load((root / "config" / name).read_text())
        validate(full, str(root / "workflow" / "schemas" / "config.schema.yaml"))
        assert "cnn" in full["explain"]["models"]
    bad = {"datasets": {"d": {"source": "sklearn_digits"}}, "models": {},
           "explain": {"clusters": {"method": "dbscan"}}}
    with pytest.raises(Exception, match="dbscan"):
        validate(bad, str(root / "workflow" / "schemas" / "config.schema.yaml"))


# --- the workflow on config/test.yaml --------------------------------------------------------------

EXPLAIN_TABLES = ["maps", "placement", "quality", "feature_stats", "feature_correlation", "umap_clusters",
                  "cluster_profiles", "ridge_scores", "ridge_coefficients", "ridge_predictions", "pca_scree",
                  "pca_loadings", "pca_contributions"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cnn"])
def test_workflow_explain_outputs(e2e_run, model):
    from latent_atlas.io import read_npz, read_parquet, read_parquet_metadata

    d = e2e_run / "results" / "digits" / model / "explain"
    tables = {name: read_parquet(d / f"{name}.parquet") for name in EXPLAIN_TABLES}
    assert read_parquet_metadata(d / "quality.parquet")["model"] == model

    maps = tables["maps"]
    n = (maps["method"] == "pca").sum()
    assert sorted(maps["method"].unique()) == ["pca", "tsne", "umap"] and len(maps) == 3 * n
    q = tables["quality"].set_index("space")
    assert q.loc[["pca", "tsne", "umap"], ["trustworthiness", "continuity"]].stack().between(0.5, 1).all()
    assert q.loc["full", "knn_accuracy"] > 0.3  # 10 classes: chance is 0.1

    # the explained samples are placed, not mapped, and their PCA parts add up to the placement
    placement = tables["placement"]
    ids = placement["sample_id"].unique()
    assert len(ids) == 2 and not maps["sample_id"].isin(ids).any()
    assert placement.drop_duplicates("sample_id")["label"].nunique() == 2
    contrib = tables["pca_contributions"]
    for sid in ids:
        p = placement[(placement["method"] == "pca") & (placement["sample_id"] == sid)].iloc[0]
        parts = contrib[contrib["sample_id"] == sid].groupby("component")["contribution"].sum()
        assert parts[1] == pytest.approx(p["x"], abs=1e-3) and parts[2] == pytest.approx(p["y"], abs=1e-3)

    scree = tables["pca_scree"]
    assert scree["cumulative"].iloc[-1] == pytest.approx(1.0)
    assert set(tables["ridge_scores"]["method"]) == {"tsne", "umap"}
    assert tables["ridge_scores"]["r2"].between(-1, 1).all()
    d_features = len(tables["feature_stats"])
    assert len(tables["feature_correlation"]) == d_features ** 2

    samples = read_npz(d / "samples.npz")
    assert list(samples["sample_id"]) == list(ids)
    assert samples["features"].shape == (2, d_features)
    assert samples["first_layer"].ndim == (4 if model == "cnn" else 2)
    assert str(samples["first_layer_kind"]) == ("conv" if model == "cnn" else "dense")

    figures = e2e_run / "results" / "figures" / "digits" / model
    for what in ("maps", "correlation", "ridge", "pca", "umap_features", "samples"):
        assert (figures / f"explain_{what}.png").stat().st_size > 10_000
