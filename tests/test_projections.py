"""Shared projections: shapes, determinism, subsampling."""

from pathlib import Path

import numpy as np
import pytest

from latent_atlas.projections import pca_fit, project, subsample_indices


@pytest.fixture(scope="module")
def cloud():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4, size=(3, 8))
    return np.concatenate([c + rng.normal(size=(80, 8)) for c in centres])


def test_pca_fit_caps_components_and_checks_its_input(cloud):
    assert pca_fit(cloud).n_components_ == 8  # None keeps every component
    assert pca_fit(cloud, n_components=3).n_components_ == 3
    assert pca_fit(cloud, n_components=99).n_components_ == 8  # capped at min(n_samples, n_features)
    assert pca_fit(cloud[:5], n_components=None).n_components_ == 5
    with pytest.raises(ValueError, match="n_components must be >= 1"):
        pca_fit(cloud, n_components=0)
    with pytest.raises(ValueError, match="shape \\(n_samples, n_features\\)"):
        pca_fit(cloud[0])
    with pytest.raises(ValueError, match="at least 2 samples"):
        pca_fit(cloud[:1])
    bad = cloud.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        pca_fit(bad)


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


def test_knn_indices_equal_umaps_own_with_ties():
    """projections.knn_indices, which umap_fit has umap-learn use for small data sets, gives the
    indices of umap's `fast_knn_indices` (its Python body: no numba compile), ties included
    (duplicate samples: equal distances go to the lower index in both)."""
    import umap.umap_
    import umap.utils
    from scipy.spatial.distance import cdist

    from latent_atlas.projections import knn_indices, umap_fit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3)).round(1)
    x[60:70] = x[:10]  # duplicates: distance 0 ties
    d = cdist(x, x)
    for k in (1, 5, 16):
        got = knn_indices(d, k)
        assert got.dtype == np.int32 and got.shape == (120, k)
        np.testing.assert_array_equal(got, umap.utils.fast_knn_indices.py_func(d, k))
    umap_fit(x[:20], n_neighbors=5)
    assert umap.umap_.fast_knn_indices is knn_indices  # the fit used it


NUMBA_CACHE_PROBE = """
import numpy as np
from latent_atlas.numba_cache import enable_cache
import umap.umap_ as u
print(enable_cache("umap"), enable_cache("umap"), u.smooth_knn_dist._cache._cache_path)
dist = np.sort(np.random.default_rng(0).random((50, 5)), axis=1)
print(u.smooth_knn_dist(dist, 5.0)[0][:3].tolist(), sum(u.smooth_knn_dist.stats.cache_hits.values()))
"""


def test_numba_cache_keeps_umaps_compiled_code_for_the_next_process():
    """enable_cache gives umap-learn's numba functions numba's disk cache where numba keeps it
    (beside the package): after one process has compiled a function, the next loads it (a cache
    hit) and computes the same numbers; a second call in a process enables nothing more."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))

    def probe():
        out = subprocess.run([sys.executable, "-c", NUMBA_CACHE_PROBE], env=env, capture_output=True,
                             text=True, check=True).stdout.splitlines()
        return out[-2].split(), out[-1].rsplit(" ", 1)

    (enabled, again, folder), (values, _) = probe()
    assert int(enabled) > 100 and int(again) == 0
    assert any(p.name.startswith("umap_.smooth_knn_dist") for p in Path(folder).glob("*.nbi"))
    _, (values2, hits) = probe()
    assert int(hits) >= 1 and values2 == values
