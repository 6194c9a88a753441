"""Shared projections: shapes, determinism, subsampling."""

import numpy as np
import pytest

from latent_atlas.projections import pca_fit, project, subsample_indices


@pytest.fixture(scope="module")
def cloud():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4, size=(3, 8))
    return np.concatenate([c + rng.normal(size=(80, 8)) for c in centres])


def test_pca_variance_sums_to_one(cloud):
    pca = pca_fit(cloud)
    assert pca.n_components_ == 8
    assert np.isclose(pca.explained_variance_ratio_.sum(), 1.0)


# UMAP once only: numba compiles its kernels in every new process (~30 s).
@pytest.mark.parametrize("method,params,k", [
    ("pca", {}, None),
    ("pca", {}, 3),
    ("tsne", {"perplexity": 10, "n_iter": 100, "early_exaggeration_iter": 50}, None),
    ("tsne", {"perplexity": 10, "n_iter": 100, "early_exaggeration_iter": 50}, 3),
    ("umap", {"n_neighbors": 10}, 3),
])
def test_projection_one_row_per_sample_and_deterministic(cloud, method, params, k):
    a, model = project(cloud, method, params, pca_components=k, random_state=3, n_jobs=1)
    b, _ = project(cloud, method, params, pca_components=k, random_state=3, n_jobs=1)
    assert a.shape == (len(cloud), 2) and a.dtype == np.float32
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert model.transform(cloud[:4]).shape == (4, 2)
    assert (model.pca is None) == (k is None)


def test_projection_rejects_unknown_method_and_params(cloud):
    with pytest.raises(ValueError, match="unknown projection method"):
        project(cloud, "mds", {})
    with pytest.raises(ValueError, match="unknown tsne parameter"):
        project(cloud, "tsne", {"perplexityy": 5})


def test_subsample_indices_sorted_deterministic_stratified():
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    a = subsample_indices(1000, 100, 7, labels=labels)
    assert np.array_equal(a, subsample_indices(1000, 100, 7, labels=labels))
    assert len(a) == 100 and np.all(np.diff(a) > 0)
    assert np.bincount(labels[a]).tolist() == [50, 30, 20]
    assert not np.array_equal(a, subsample_indices(1000, 100, 8, labels=labels))
    assert np.array_equal(subsample_indices(50, 80, 0), np.arange(50))
    assert len(np.unique(subsample_indices(1000, 999, 1))) == 999
