"""Tests of the explain stage: quality numbers, ridge maps, PCA contributions, transforms, first
layers of every arch, the jobs of an MLP classifier end to end, workflow outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from latent_atlas import projections
from latent_atlas.explain import clusters, features, figures, jobs, maps, pca, quality, ridge, samples
from latent_atlas.latents import ID_COLUMNS
from latent_atlas.runtime import Files, Job
from latent_atlas.schema import SCHEMA_PATH, with_defaults
from model_helpers import TINY_PARAMS, tiny_dataset


def _blobs(n=300, d=12, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(k, d))
    labels = np.arange(n) % k
    return centres[labels] + rng.normal(size=(n, d)), labels


def _ids_frame(labels):
    """Id columns of a latents table: the first half train, the second test; ids from 100."""
    n = len(labels)
    return pd.DataFrame({"sample_id": np.arange(100, 100 + n, dtype=np.int64),
                         "split": np.where(np.arange(n) < n // 2, "train", "test"),
                         "label": labels.astype(np.int64), "label_name": [f"c{c}" for c in labels]})


# --- quality numbers -------------------------------------------------------------------------

def test_trustworthiness_of_pca_on_a_plane_is_one():
    rng = np.random.default_rng(1)
    plane = rng.normal(size=(200, 2)) * [3.0, 1.0]
    basis = np.linalg.qr(rng.normal(size=(10, 2)))[0].T  # two orthonormal directions in 10-D
    X = plane @ basis + 5.0
    Y = projections.pca_fit(X, n_components=2).transform(X)
    assert quality.trustworthiness(X, Y, k=10) == pytest.approx(1.0, abs=1e-12)
    assert quality.continuity(X, Y, k=10) == pytest.approx(1.0, abs=1e-12)


def test_continuity_swaps_the_spaces():
    # A circle cut into 8 arcs laid out on a line in shuffled order with gaps: the map tears
    # true neighbours apart at every cut (continuity clearly below 1) but hardly ever puts far
    # points together (trustworthiness near 1; only the arc ends see one-sided neighbours).
    t = np.linspace(0, 2 * np.pi, 240, endpoint=False)
    X = np.c_[np.cos(t), np.sin(t)]
    arc = np.arange(240) // 30
    slot = np.argsort([3, 0, 6, 1, 7, 4, 2, 5])[arc]
    Y = np.c_[t + (1.5 * slot - arc) * 2 * np.pi / 8, np.zeros_like(t)]
    trust, cont = quality.trustworthiness(X, Y, k=5), quality.continuity(X, Y, k=5)
    assert trust > 0.995 and cont < 0.98
    # Gluing the arcs back into a circle is the mirror case: the numbers swap roles.
    assert quality.trustworthiness(Y, X, k=5) == pytest.approx(cont)
    assert quality.continuity(Y, X, k=5) == pytest.approx(trust)


def test_knn_accuracy_separates_blobs_and_chance():
    X, labels = _blobs()
    acc, sd = quality.knn_accuracy(X, labels, k=5, n_folds=5, random_state=0)
    assert acc > 0.98 and sd >= 0
    noise = np.random.default_rng(0).normal(size=X.shape)
    acc_noise, _ = quality.knn_accuracy(noise, labels, k=5, n_folds=5, random_state=0)
    assert acc_noise < 0.6
    assert quality.knn_accuracy(X, labels, 5, 5, 3) == quality.knn_accuracy(X, labels, 5, 5, 3)


def test_map_quality_table():
    X, labels = _blobs(n=200)
    coords = {"pca": X[:, :2], "tsne": X[:, 2:4], "umap": X[:, 4:6]}
    q = quality.map_quality(X, coords, labels, k=5, knn_k=5, n_folds=4)
    assert list(q["space"]) == ["full", "pca", "tsne", "umap"]
    assert q.loc[1:, "trustworthiness"].between(0, 1).all() and np.isnan(q.loc[0, "continuity"])
    with pytest.raises(ValueError, match="explain.quality.k"):
        quality.trustworthiness(X[:10], X[:10, :2], k=6)


# --- features ---------------------------------------------------------------------------------

def test_feature_stats_and_clustered_correlation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 400))
    X = np.c_[a, b, np.zeros(400), a + 0.01 * rng.normal(size=400), b * -2, 1e-5 * rng.normal(size=400)]
    cols = [f"z{i}" for i in range(X.shape[1])]
    stats = features.feature_stats(X, cols, near_constant=0.01)
    assert stats["dead"].tolist() == [False, False, True, False, False, False]
    assert stats["near_constant"].tolist() == [False, False, True, False, False, True]
    assert sorted(stats["order"]) == list(range(6))
    corr = features.clustered_correlation(X, cols)
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
    scores, coefs, preds = ridge.ridge_maps(X, coords, cols, alphas=(1e-3, 1e-2, 0.1), n_folds=5)
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
    fit = projections.pca_fit(X)
    x = X[7] + 0.3
    contrib = pca.pca_contributions(x, fit, cols, components=(1, 2, 3))
    coords = fit.transform(x[None])[0]
    for c in (1, 2, 3):
        assert contrib[contrib["component"] == c]["contribution"].sum() == pytest.approx(coords[c - 1])
    scree, loadings = pca.pca_tables(fit, cols, n_components=3)
    assert scree["cumulative"].iloc[-1] == pytest.approx(1.0)
    assert pca.variance_at(scree, 3) == pytest.approx(fit.explained_variance_ratio_[:3].sum())
    assert pca.variance_at(scree, 99) == pytest.approx(1.0)
    assert len(loadings) == 3 * 8


# --- maps and transforms -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted():
    X, labels = _blobs(n=240, d=10, k=3)
    coords, models = maps.embed_maps(
        X, tsne={"perplexity": 20, "n_iter": 200, "early_exaggeration_iter": 100},
        umap={"n_neighbors": 10}, random_state=0, n_jobs=1)
    return X, labels, coords, models


def test_transform_of_a_training_sample_lands_near_its_own_position(fitted):
    X, labels, coords, models = fitted
    rows = [0, 1, 2, 50, 101]
    placed = maps.place_samples(models, X[rows])
    for method in projections.METHODS:
        spread = np.ptp(coords[method], axis=0).max()
        dist = np.linalg.norm(placed[method] - coords[method][rows], axis=1)
        assert dist.max() < 0.1 * spread, method
        if method == "pca":
            np.testing.assert_allclose(placed[method], coords[method][rows], atol=1e-9)


def test_maps_are_deterministic_and_separate_classes(fitted):
    X, labels, coords, _ = fitted
    again, _ = maps.embed_maps(
        X, tsne={"perplexity": 20, "n_iter": 200, "early_exaggeration_iter": 100},
        umap={"n_neighbors": 10}, random_state=0, n_jobs=1)
    for method in projections.METHODS:
        np.testing.assert_array_equal(coords[method], again[method])
        acc, _ = quality.knn_accuracy(coords[method], labels, k=5, n_folds=5)
        assert acc > 0.95


def test_cluster_profiles_find_the_feature_a_class_turns_on(fitted):
    X, labels, coords, _ = fitted
    X = X.copy()
    X[labels == 1, 4] += 30.0
    cols = [f"z{i}" for i in range(X.shape[1])]
    assigned, names = clusters.cluster_assignments(labels, ["a", "b", "c"], coords["umap"], method="class",
                                                   n_clusters=None)
    assert names == ["a", "b", "c"]
    prof = clusters.cluster_profiles(X, cols, assigned, names)
    best = prof[(prof["cluster"] == 1) & (prof["rank"] == 1)]
    assert best["feature"].item() == "z4" and best["z"].item() > 0
    km, km_names = clusters.cluster_assignments(labels, ["a", "b", "c"], coords["umap"], method="kmeans",
                                                n_clusters=None)
    assert len(km_names) == 3 and set(km) == {0, 1, 2}
    # k-means on well-separated blobs recovers the classes up to renaming
    assert all(len(set(labels[km == c])) == 1 for c in range(3))
    with pytest.raises(ValueError, match="explain.clusters.method"):
        clusters.cluster_assignments(labels, ["a", "b", "c"], coords["umap"], method="dbscan", n_clusters=None)


def test_coords_table_roundtrip(fitted):
    X, labels, coords, _ = fitted
    ids = _ids_frame(labels)
    table = maps.coords_table(ids, coords)
    assert len(table) == 3 * len(X) and list(table.columns) == ["method", *ID_COLUMNS, "x", "y"]
    np.testing.assert_allclose(maps.coords_of(table, "umap"), coords["umap"], rtol=1e-6)


# --- which samples --------------------------------------------------------------------------------

def test_default_samples_and_subset():
    _, labels = _blobs(n=60)
    df = _ids_frame(labels)
    ids = samples.default_sample_ids(df, 2, "test")
    test = df[df["split"] == "test"]
    assert ids[0] == test["sample_id"].iloc[0]
    assert df.set_index("sample_id").loc[ids, "label"].nunique() == 2
    assert samples.explained_sample_ids(df, []) == ids
    assert samples.explained_sample_ids(df, [101, 105]) == [101, 105]
    with pytest.raises(ValueError, match="explain.samples.ids"):
        samples.explained_sample_ids(df, [5])
    subset = maps.map_subset(df, "test", 20, exclude=ids, random_state=0)
    assert len(subset) == 20 and np.all(np.diff(subset) > 0)
    chosen = df.iloc[subset]
    assert not chosen["sample_id"].isin(ids).any() and (chosen["split"] == "test").all()
    np.testing.assert_array_equal(maps.map_subset(df, "test", 20, exclude=ids, random_state=0), subset)
    assert len(maps.map_subset(df, "all", 100, exclude=ids)) == 58
    with pytest.raises(ValueError, match="explain.split"):
        maps.map_subset(df, "validation", 20)
    np.testing.assert_array_equal(samples.positions_of(df["sample_id"], [105, 100], "t"), [5, 0])
    with pytest.raises(ValueError, match="t: sample ids \\[7\\] not found"):
        samples.positions_of(df["sample_id"], [100, 7], "t")


def test_grid_shape():
    assert figures.grid_shape(128) == (8, 16)
    assert figures.grid_shape(32) == (4, 8)
    assert figures.grid_shape(7) == (1, 7)


def test_first_layer_activations_of_simple_models():
    torch = pytest.importorskip("torch")
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 8 * 8, 3))
    x = np.random.default_rng(0).normal(size=(2, 1, 8, 8)).astype(np.float32)
    acts, kind = samples.first_layer_activations(conv, x)
    assert kind == "conv" and acts.shape == (2, 4, 8, 8) and acts.min() >= 0
    dense = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5), torch.nn.Linear(5, 2))
    acts, kind = samples.first_layer_activations(dense, x)
    assert kind == "dense" and acts.shape == (2, 5) and acts.min() < 0  # linear: no nonlinearity


def _first_layer(model, x):
    """What each arch's first layer computes, written out: the expected activations."""
    torch = pytest.importorskip("torch")
    first = {"mlp_classifier": lambda: model.body[0](x.flatten(1)),
             "dense_ae": lambda: model.body[0](x.flatten(1)),
             "cnn_classifier": lambda: model.convs[0](x),
             "conv_ae": lambda: model.encoder[0](x)}[model.arch]
    return torch.relu(first())


@pytest.mark.parametrize("arch,kind", [("mlp_classifier", "dense"), ("dense_ae", "dense"),
                                       ("cnn_classifier", "conv"), ("conv_ae", "conv")])
def test_first_layer_activations_of_every_arch(arch, kind):
    # The MLP classifier alone takes the generic path for a classifier: the first Linear found among
    # the modules, its ReLU found after it, the whole model run (autoencoders run their encoder;
    # the CNN classifier's functional ReLU has its own branch).
    torch = pytest.importorskip("torch")
    from latent_atlas.models.networks import build_model

    torch.manual_seed(0)
    model = build_model(arch, (1, 16, 16), 3, TINY_PARAMS[arch]).eval()
    images = tiny_dataset(n=6).images
    acts, got = samples.first_layer_activations(model, images)
    with torch.no_grad():
        expected = _first_layer(model, torch.from_numpy(images)).numpy()
    assert got == kind and acts.dtype == np.float32
    np.testing.assert_array_equal(acts, expected)
    if arch == "mlp_classifier":
        assert acts.shape == (6, TINY_PARAMS[arch]["hidden"][0]) and acts.min() == 0 and acts.max() > 0


# --- the jobs of an MLP classifier, end to end --------------------------------------------------

def _files(folder, names, suffix=".parquet"):
    return Files({name: str(folder / f"{name}{suffix}") for name in names})


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    """Every explain job on an untrained MLP classifier's features: a dense first layer (its units
    after ReLU) where the workflow test's CNN has feature maps."""
    torch = pytest.importorskip("torch")
    from latent_atlas.data.store import save_dataset
    from latent_atlas.io import write_parquet
    from latent_atlas.latents import id_frame
    from latent_atlas.models.networks import build_model, save_model

    d = tmp_path_factory.mktemp("explain_mlp")
    ds = tiny_dataset(n=240, n_classes=3)
    torch.manual_seed(0)
    model = build_model("mlp_classifier", ds.images.shape[1:], 3, TINY_PARAMS["mlp_classifier"]).eval()
    with torch.no_grad():
        z = model.features(torch.from_numpy(ds.images)).numpy()
    table = id_frame(ds.sample_id, ds.split, ds.labels, ds.class_names)
    for i in range(z.shape[1]):
        table[f"z{i}"] = z[:, i]
    base = Files(data=str(d / "tiny"), model=str(d / "model.pt"), latents=str(d / "latents.parquet"))
    save_dataset(ds, base.data)
    save_model(model, base.model, class_names=ds.class_names)
    write_parquet(table, base.latents)

    settings = with_defaults({"split": "all", "n_samples": 150, "tsne": {"perplexity": 15, "n_iter": 100,
                                                                         "early_exaggeration_iter": 50},
                              "umap": {"n_neighbors": 10}, "quality": {"k": 5, "knn_k": 5, "cv_folds": 3},
                              "ridge": {"cv_folds": 3}, "samples": {"max_maps": 4}},
                             "#/properties/explain", "explain")
    tables = _files(d, ["maps", "placement", "pca_scree", "pca_loadings", "pca_contributions", "quality",
                        "stats", "correlation", "clusters", "profiles", "scores", "coefficients", "predictions"])
    sample_file = str(d / "samples.npz")
    figure_files = Files({what: [str(d / f"explain_{what}.png")]
                          for what in ("maps", "correlation", "ridge", "pca", "umap_features", "samples")})

    def job(input, output):
        return Job(input=input, output=output, wildcards=Files(dataset="tiny", model="mlp"))

    seeded = {"seed": 0, "numeric_threads": 1}
    on_maps = Files(latents=base.latents, maps=tables.maps)
    jobs.explain_maps(job(Files([base.latents]), Files({k: tables[k] for k in ("maps", "placement", "pca_scree",
                                                                               "pca_loadings", "pca_contributions")})),
                      split=settings["split"], n_samples=settings["n_samples"], sample_ids=settings["samples"]["ids"],
                      tsne=settings["tsne"], umap=settings["umap"],
                      loading_components=settings["pca"]["loading_components"], **seeded)
    jobs.explain_quality(job(on_maps, Files([tables.quality])), quality=settings["quality"], **seeded)
    jobs.explain_features(job(on_maps, Files({k: tables[k] for k in ("stats", "correlation", "clusters", "profiles")})),
                          near_constant=settings["features"]["near_constant"],
                          clusters={k: settings["clusters"][k] for k in ("method", "n_clusters")}, **seeded)
    jobs.explain_ridge(job(on_maps, Files({k: tables[k] for k in ("scores", "coefficients", "predictions")})),
                       alphas=settings["ridge"]["alphas"], cv_folds=settings["ridge"]["cv_folds"], **seeded)
    jobs.explain_samples(job(Files(data=base.data, model=base.model, latents=base.latents,
                                   placement=tables.placement), Files([sample_file])), numeric_threads=1)
    plot_inputs = Files(maps=tables.maps, quality=tables.quality, correlation=tables.correlation,
                        stats=tables.stats, ridge_scores=tables.scores, ridge_coefficients=tables.coefficients,
                        ridge_predictions=tables.predictions, loadings=tables.pca_loadings,
                        scree=tables.pca_scree, profiles=tables.profiles, clusters=tables.clusters,
                        samples=sample_file, placement=tables.placement, contributions=tables.pca_contributions)
    jobs.plot_explain(job(plot_inputs, figure_files), title="mlp on tiny", ridge_top=12, arrows=8, cluster_top=3,
                      contributors_top=8, max_maps=4)
    return ds, model, z, tables, sample_file, figure_files


def test_mlp_jobs_explain_the_first_layer_units(mlp_run):
    torch = pytest.importorskip("torch")
    from latent_atlas.io import read_npz, read_parquet, read_parquet_metadata

    ds, model, z, tables, sample_file, _ = mlp_run
    placement = read_parquet(tables.placement)
    ids = placement["sample_id"].unique().tolist()
    test = ds.split == "test"
    assert ids[0] == ds.sample_id[test][0] and len(ids) == 2  # default: two test samples of two classes
    rows = [int(np.flatnonzero(ds.sample_id == s)[0]) for s in ids]
    out = read_npz(sample_file)
    assert str(out["first_layer_kind"]) == "dense"
    with torch.no_grad():
        units = torch.relu(model.body[0](torch.from_numpy(ds.images[rows]).flatten(1))).numpy()
    np.testing.assert_array_equal(out["first_layer"], units)  # the first Linear's units after ReLU
    np.testing.assert_array_equal(out["features"], z[rows])
    np.testing.assert_array_equal(out["image"], ds.images[rows])
    assert out["class_names"].tolist() == ds.class_names
    assert read_parquet_metadata(tables.quality)["model"] == "mlp"
    maps_table = read_parquet(tables.maps)
    assert not maps_table["sample_id"].isin(ids).any() and len(maps_table) == 3 * 150
    # the explained samples' PCA parts add up to where they are placed
    contrib = read_parquet(tables.pca_contributions)
    for sid in ids:
        p = placement[(placement["method"] == "pca") & (placement["sample_id"] == sid)].iloc[0]
        parts = contrib[contrib["sample_id"] == sid].groupby("component")["contribution"].sum()
        assert parts[1] == pytest.approx(p["x"], abs=1e-4) and parts[2] == pytest.approx(p["y"], abs=1e-4)


def test_mlp_samples_figure_draws_the_units_as_one_image(mlp_run):
    import matplotlib.pyplot as plt

    from latent_atlas.io import read_npz, read_parquet

    ds, _, _, tables, sample_file, figure_files = mlp_run
    for paths in figure_files.items():
        assert open(paths[1][0], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    out = read_npz(sample_file)
    fig = figures.plot_samples(out, read_parquet(tables.placement), read_parquet(tables.maps),
                               read_parquet(tables.pca_contributions), ds.class_names, top=8, max_maps=4)
    units = TINY_PARAMS["mlp_classifier"]["hidden"][0]
    layer = [ax for ax in fig.axes if ax.get_title() == f"first layer: {units} units"]
    assert len(layer) == 2  # one panel per sample, not a grid of feature maps
    image = layer[0].get_images()[0]
    assert image.get_array().shape == figures.grid_shape(units) and image.get_cmap().name == "magma"
    plt.close(fig)


# --- config ---------------------------------------------------------------------------------------

def test_schema_fills_explain_defaults(root):
    import yaml
    from snakemake.utils import validate

    cfg = {"datasets": {"d": {"source": "sklearn_digits"}}, "models": {}, "explain": {"tsne": {"perplexity": 10}}}
    validate(cfg, str(SCHEMA_PATH))
    ex = cfg["explain"]
    assert ex["n_samples"] == 2000 and ex["split"] == "test"
    assert ex["tsne"] == {"perplexity": 10, "early_exaggeration": 12, "early_exaggeration_iter": 250,
                          "n_iter": 500, "initialization": "pca", "metric": "euclidean"}
    assert ex["quality"]["k"] == 10 and ex["clusters"]["method"] == "class" and ex["samples"]["ids"] == []
    for name in ("config.yaml", "test.yaml"):
        full = yaml.safe_load((root / "config" / name).read_text())
        validate(full, str(SCHEMA_PATH))
        assert "cnn" in full["explain"]["models"]
    bad = {"datasets": {"d": {"source": "sklearn_digits"}}, "models": {},
           "explain": {"clusters": {"method": "dbscan"}}}
    with pytest.raises(Exception, match="dbscan"):
        validate(bad, str(SCHEMA_PATH))


# --- the workflow on config/test.yaml --------------------------------------------------------------

EXPLAIN_TABLES = ["maps", "placement", "quality", "feature_stats", "feature_correlation", "umap_clusters",
                  "cluster_profiles", "ridge_scores", "ridge_coefficients", "ridge_predictions", "pca_scree",
                  "pca_loadings", "pca_contributions"]


@pytest.mark.slow
def test_workflow_explain_outputs(e2e_run):
    # config/test.yaml explains the CNN classifier (conv first layer); the MLP's dense first layer
    # is covered by the jobs test above.
    from latent_atlas.io import read_npz, read_parquet, read_parquet_metadata

    model = "cnn"
    d = e2e_run / "results" / "digits" / model / "explain"
    tables = {name: read_parquet(d / f"{name}.parquet") for name in EXPLAIN_TABLES}
    assert read_parquet_metadata(d / "quality.parquet")["model"] == model

    map_rows = tables["maps"]
    n = (map_rows["method"] == "pca").sum()
    assert sorted(map_rows["method"].unique()) == ["pca", "tsne", "umap"] and len(map_rows) == 3 * n
    q = tables["quality"].set_index("space")
    assert q.loc[["pca", "tsne", "umap"], ["trustworthiness", "continuity"]].stack().between(0.5, 1).all()
    assert q.loc["full", "knn_accuracy"] > 0.3  # 10 classes: chance is 0.1

    # the explained samples are placed, not mapped, and their PCA parts add up to the placement
    placement = tables["placement"]
    ids = placement["sample_id"].unique()
    assert len(ids) == 2 and not map_rows["sample_id"].isin(ids).any()
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

    arrays = read_npz(d / "samples.npz")
    assert list(arrays["sample_id"]) == list(ids)
    assert arrays["features"].shape == (2, d_features)
    assert arrays["first_layer"].ndim == 4 and str(arrays["first_layer_kind"]) == "conv"

    figure_dir = e2e_run / "results" / "figures" / "digits" / model
    for what in ("maps", "correlation", "ridge", "pca", "umap_features", "samples"):
        assert (figure_dir / f"explain_{what}.png").stat().st_size > 10_000
