"""The compare stage's measures: invariances, CKA against its n x n definition and against a
published implementation (pytorch-cka), Procrustes against scipy, the probes against
scikit-learn, and the shared neighbour search (exact below its threshold, seeded NN-descent
above it)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import procrustes
from scipy.spatial.distance import pdist, squareform
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from latent_atlas.atlas import neighbours
from latent_atlas.compare import measures


def _clustered(n=120, d=8, classes=4, seed=0):
    """Latents of `classes` Gaussian blobs, (n, d), and their labels (n,)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    return rng.normal(scale=3.0, size=(classes, d))[labels] + rng.normal(size=(n, d)), labels


def _orthonormal_rows(d, width, seed):
    """A (d, width) matrix with orthonormal rows (width >= d): an isometry into width dims."""
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(width, d)))[0].T


def _related(X, seed=1, noise=1.0):
    """A noisy, rotated, 5-D-wider copy of X: related to it, but not identical."""
    rng = np.random.default_rng(seed)
    return X @ _orthonormal_rows(X.shape[1], X.shape[1] + 5, seed) + noise * rng.normal(size=(len(X), X.shape[1] + 5))


# --- invariances -----------------------------------------------------------------------------

@pytest.mark.parametrize("transform", ["orthogonal", "wider isometry", "isotropic scaling", "translation"])
def test_similarity_is_perfect_under_what_the_measures_ignore(transform):
    X, _ = _clustered()
    Y = {"orthogonal": X @ _orthonormal_rows(8, 8, seed=2),
         "wider isometry": X @ _orthonormal_rows(8, 11, seed=3),
         "isotropic scaling": 3.7 * X,
         "translation": X + np.arange(8.0) * 10}[transform]
    assert measures.linear_cka(X, Y) == pytest.approx(1.0, abs=1e-10)
    assert measures.linear_cka(X, Y, debiased=False) == pytest.approx(1.0, abs=1e-10)
    assert measures.rbf_cka(X, Y, max_samples=80, random_state=0) == pytest.approx(1.0, abs=1e-10)
    assert measures.procrustes_disparity(X, Y) == pytest.approx(0.0, abs=1e-10)
    assert measures.svcca(X, Y, k=5) == pytest.approx(1.0, abs=1e-10)
    assert measures.knn_overlap(X, Y, 10, random_state=0).min() == 1.0


def test_svcca_at_full_rank_ignores_any_invertible_linear_map_and_cka_does_not():
    X, _ = _clustered()
    Y = X @ np.random.default_rng(4).normal(size=(8, 8)) + 1.0
    assert measures.svcca(X, Y, k=8) == pytest.approx(1.0, abs=1e-10)
    assert measures.linear_cka(X, Y) < 0.99


def test_knn_overlap_of_a_representation_with_itself_is_one_everywhere():
    X, _ = _clustered()
    overlap = measures.knn_overlap(X, X, 7, random_state=0)
    assert overlap.shape == (len(X),) and overlap.dtype == np.float32 and (overlap == 1).all()


def test_unrelated_representations_score_low():
    X, _ = _clustered(n=300)
    Z = np.random.default_rng(5).normal(size=(300, 6))
    assert abs(measures.linear_cka(X, Z)) < 0.05
    assert measures.procrustes_disparity(X, Z) > 0.9
    assert measures.knn_overlap(X, Z, 10, random_state=0).mean() < 0.1
    assert measures.linear_probe_r2(X, Z, cv_folds=5, random_state=0) < 0.05


def test_match_dimensions_recovers_a_permuted_sign_flipped_copy():
    X, _ = _clustered(d=9)
    rng = np.random.default_rng(6)
    perm, sign = rng.permutation(9), rng.choice([-1.0, 1.0], size=9)
    pairs = measures.match_dimensions(X, X[:, perm] * sign * 2.0 + 3.0)
    assert list(pairs.columns) == ["dim_a", "dim_b", "correlation", "abs_correlation"]
    assert len(pairs) == 9 and pairs["abs_correlation"].is_monotonic_decreasing
    matched = dict(zip(pairs["dim_b"], pairs["dim_a"]))
    assert [matched[j] for j in range(9)] == perm.tolist()
    np.testing.assert_allclose(pairs["abs_correlation"], 1.0, atol=1e-12)
    np.testing.assert_allclose(pairs["correlation"], sign[pairs["dim_b"]], atol=1e-12)
    narrower = measures.match_dimensions(X, X[:, perm[:4]])
    assert sorted(zip(narrower["dim_a"], narrower["dim_b"])) == sorted(zip(perm[:4], range(4)))


def test_match_dimensions_gives_a_constant_dimension_correlation_zero():
    X, _ = _clustered(d=3)
    Y = np.c_[X[:, 0], np.full(len(X), 0.1)]
    pairs = measures.match_dimensions(X, Y).set_index("dim_b")
    assert pairs.loc[1, "correlation"] == 0.0 and pairs.loc[0, "abs_correlation"] == pytest.approx(1.0)


# --- CKA against its definition and a published implementation ------------------------------

def _hsic_biased(K, L):
    n = len(K)
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def _hsic_unbiased(K, L):
    """Song et al. (2012), eq. 5, written out on the n x n kernels."""
    n = len(K)
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    one = np.ones(n)
    return (np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ K @ L @ one)) / (n * (n - 3))


@pytest.mark.parametrize("debiased", [True, False])
def test_linear_cka_equals_its_definition_on_the_gram_matrices(debiased):
    X, _ = _clustered(n=50)
    X = X + 5.0  # uncentred: the feature-space form centres, the definition does not need to
    Y = _related(X)
    hsic = _hsic_unbiased if debiased else _hsic_biased
    K, L = X @ X.T, Y @ Y.T
    expected = hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))
    assert 0.2 < expected < 0.99
    assert measures.linear_cka(X, Y, debiased=debiased) == pytest.approx(expected, abs=1e-10)


def test_cka_matches_pytorch_cka():
    """pytorch-cka (PyPI, MIT) computes the debiased CKA only (Song et al.'s unbiased HSIC, as in
    Nguyen et al. 2021; it clips to [0, 1]): linear from features, and any kernel from its Gram
    matrices, which the test builds with the RBF width defined in `rbf_cka` (0.8 x the median
    distance between distinct samples). The biased form is checked against its definition above."""
    torch = pytest.importorskip("torch")
    from cka import cka_from_features, hsic

    X, _ = _clustered(n=90)
    Y = _related(X, noise=2.0)
    published = float(cka_from_features(torch.from_numpy(X), torch.from_numpy(Y)))
    assert 0.2 < published < 0.99
    assert measures.linear_cka(X, Y) == pytest.approx(published, abs=1e-6)

    def rbf_gram(Z):
        distances = pdist(Z)
        sigma = 0.8 * np.median(distances)
        return torch.from_numpy(np.exp(-squareform(distances) ** 2 / (2 * sigma ** 2)))[None]

    xy, xx, yy = (float(h) for h in hsic(rbf_gram(X), rbf_gram(Y)))
    published_rbf = xy / np.sqrt(xx * yy)
    assert 0.2 < published_rbf < 0.99
    assert measures.rbf_cka(X, Y, max_samples=90, random_state=0) == pytest.approx(published_rbf, abs=1e-6)


def test_rbf_cka_uses_the_same_seeded_rows_for_both():
    X, _ = _clustered(n=200)
    Y = _related(X)
    once = measures.rbf_cka(X, Y, max_samples=60, random_state=3)
    assert once == measures.rbf_cka(X, Y, max_samples=60, random_state=3)
    assert once != measures.rbf_cka(X, Y, max_samples=60, random_state=4)
    assert measures.rbf_cka(X, X[:, ::-1], max_samples=60, random_state=3) == pytest.approx(1.0, abs=1e-10)


# --- Procrustes, SVCCA ------------------------------------------------------------------------

def test_procrustes_disparity_is_scipys_also_for_different_widths():
    X, _ = _clustered()
    Y = _related(X, noise=3.0)[:, :8]
    expected = procrustes(X, Y)[2]
    assert 0.05 < expected < 0.95
    assert measures.procrustes_disparity(X, Y) == pytest.approx(expected, abs=1e-10)
    wider = _related(X, noise=3.0)
    padded = np.c_[X, np.zeros((len(X), wider.shape[1] - X.shape[1]))]
    assert measures.procrustes_disparity(X, wider) == pytest.approx(procrustes(padded, wider)[2], abs=1e-10)
    assert measures.procrustes_disparity(wider, X) == pytest.approx(measures.procrustes_disparity(X, wider), abs=1e-12)


def test_svcca_is_the_mean_canonical_correlation_of_the_leading_directions():
    X, _ = _clustered(n=200, d=10)
    Y = _related(X, noise=3.0)

    def scores(Z, k):  # principal component scores span the leading left singular vectors
        Z = Z - Z.mean(axis=0)
        return Z @ np.linalg.eigh(Z.T @ Z)[1][:, ::-1][:, :k]

    def whiten(Z):  # orthonormal columns spanning the same space
        return Z @ np.linalg.inv(np.linalg.cholesky(Z.T @ Z)).T

    expected = np.linalg.svd(whiten(scores(X, 4)).T @ whiten(scores(Y, 4)), compute_uv=False).mean()
    assert 0.3 < expected < 0.99
    assert measures.svcca(X, Y, k=4) == pytest.approx(expected, abs=1e-10)


def test_svcca_caps_k_at_the_rank():
    X, _ = _clustered(n=200, d=10)
    Y = _related(X, noise=3.0)
    with_constant = np.c_[X, np.full(len(X), 2.0)]
    assert measures.svcca(with_constant, Y, k=11) == pytest.approx(measures.svcca(X, Y, k=11), abs=1e-10)
    assert measures.svcca(with_constant, Y, k=11) != measures.svcca(X, Y, k=10)  # Y keeps 11


# --- probes ----------------------------------------------------------------------------------

def test_linear_probe_r2_equals_scikit_learns_ridge_pipeline_for_one_penalty():
    X, _ = _clustered(n=150)
    Y = _related(X, noise=2.0)
    folds = KFold(n_splits=4, shuffle=True, random_state=2)
    oof = cross_val_predict(make_pipeline(StandardScaler(), Ridge(alpha=3.0)), X, Y, cv=folds)
    expected = r2_score(Y, oof, multioutput="variance_weighted")
    assert 0.2 < expected < 0.99
    r2 = measures.linear_probe_r2(X, Y, cv_folds=4, random_state=2, alphas=[3.0])
    assert r2 == pytest.approx(expected, abs=1e-10)


def test_linear_probe_picks_the_penalty_of_least_generalised_cross_validation_error():
    X, _ = _clustered(n=80, d=20)
    Y = _related(X, noise=6.0)
    alphas = [0.1, 10.0, 1000.0]
    folds = KFold(n_splits=3, shuffle=True, random_state=0)
    oof = np.empty_like(Y)
    for train, test in folds.split(X):
        scaler = StandardScaler().fit(X[train])
        Xt = scaler.transform(X[train])

        def gcv(alpha):  # n RSS / (n - tr(hat))^2 with the hat matrix written out
            hat = Xt @ np.linalg.solve(Xt.T @ Xt + alpha * np.eye(Xt.shape[1]), Xt.T)
            residual = (Y[train] - Y[train].mean(axis=0)) - hat @ (Y[train] - Y[train].mean(axis=0))
            return len(train) * np.sum(residual ** 2) / (len(train) - np.trace(hat)) ** 2

        best = min(alphas, key=gcv)
        oof[test] = Ridge(alpha=best).fit(Xt, Y[train]).predict(scaler.transform(X[test]))
    expected = r2_score(Y, oof, multioutput="variance_weighted")
    r2 = measures.linear_probe_r2(X, Y, cv_folds=3, random_state=0, alphas=alphas)
    assert r2 == pytest.approx(expected, abs=1e-10)


def test_linear_probe_recovers_an_affine_map_and_is_asymmetric():
    X, _ = _clustered(n=200)
    Y = X[:, :3] @ np.random.default_rng(7).normal(size=(3, 3)) + 2.0
    assert measures.linear_probe_r2(X, Y, cv_folds=5, random_state=0) > 0.999
    assert measures.linear_probe_r2(Y, X, cv_folds=5, random_state=0) < 0.9


def test_class_probe_accuracy_separates_blobs_from_noise():
    X, labels = _clustered(n=200)
    assert measures.class_probe_accuracy(X, labels, cv_folds=5, random_state=0) > 0.95
    noise = np.random.default_rng(8).normal(size=(200, 8))
    assert measures.class_probe_accuracy(noise, labels, cv_folds=5, random_state=0) < 0.5


# --- one pair, all measures ------------------------------------------------------------------

def test_pair_measures_returns_every_measure_and_per_sample_overlaps():
    X, labels = _clustered(n=100)
    Y = _related(X)
    values, per_sample = measures.pair_measures(X, Y, labels, ks=(10, 5), rbf_max_samples=80, svcca_k=4,
                                                cv_folds=3, random_state=0)
    assert list(values) == ["linear_cka", "linear_cka_biased", "rbf_cka", "procrustes", "svcca",
                            "knn_overlap_k5", "knn_overlap_k10", "probe_r2_ab", "probe_r2_ba",
                            "class_accuracy_a", "class_accuracy_b"]
    assert all(isinstance(v, float) for v in values.values())
    assert list(per_sample.columns) == ["knn_overlap_k5", "knn_overlap_k10"] and len(per_sample) == 100
    for k in (5, 10):
        np.testing.assert_array_equal(per_sample[f"knn_overlap_k{k}"], measures.knn_overlap(X, Y, k, random_state=0))
        assert values[f"knn_overlap_k{k}"] == pytest.approx(per_sample[f"knn_overlap_k{k}"].mean())
    assert values["linear_cka"] == measures.linear_cka(X, Y)
    assert values["svcca"] == measures.svcca(X, Y, 4)
    assert values["probe_r2_ba"] == measures.linear_probe_r2(Y, X, cv_folds=3, random_state=0)


def test_measures_refuse_misaligned_or_constant_representations():
    X, _ = _clustered()
    with pytest.raises(ValueError, match="same samples"):
        measures.linear_cka(X, X[:-1])
    with pytest.raises(ValueError, match="Y is constant"):
        measures.procrustes_disparity(X, np.ones((len(X), 3)))
    with pytest.raises(ValueError, match="k-NN overlap needs"):
        measures.knn_overlap(X, X, len(X), random_state=0)


# --- the shared neighbour search ------------------------------------------------------------

def test_neighbour_search_is_exact_below_its_threshold():
    X, _ = _clustered(n=300, d=16)
    assert 300 ** 2 * 16 <= neighbours.EXACT_MAX_COST
    idx, dist = neighbours.nearest_neighbours(X, 6)
    exact_idx, exact_dist = neighbours.nearest_neighbours(X, 6, search="exact")
    np.testing.assert_array_equal(idx, exact_idx)
    np.testing.assert_array_equal(dist, exact_dist)
    sk_dist, sk_idx = NearestNeighbors(n_neighbors=7).fit(X).kneighbors(X)
    np.testing.assert_array_equal(idx, sk_idx[:, 1:])  # no duplicates here: the point itself comes first
    np.testing.assert_array_equal(dist, sk_dist[:, 1:])


@pytest.mark.slow  # pynndescent's numba compilation takes 20-60 s in a fresh process
def test_nndescent_search_is_seeded_deterministic_and_near_exact():
    import numba

    X, _ = _clustered(n=1500, d=24)
    threads = numba.get_num_threads()
    idx, dist = neighbours.nearest_neighbours(X, 10, search="nndescent", random_state=0)
    assert numba.get_num_threads() == threads
    again = neighbours.nearest_neighbours(X, 10, search="nndescent", random_state=0)
    np.testing.assert_array_equal(idx, again[0])
    np.testing.assert_array_equal(dist, again[1])
    assert idx.shape == (1500, 10) and idx.dtype == np.int64 and not (idx == np.arange(1500)[:, None]).any()
    np.testing.assert_allclose(dist, np.linalg.norm(X[:, None] - X[idx], axis=2), rtol=1e-12)
    assert (np.diff(dist, axis=1) >= 0).all()
    exact = neighbours.nearest_neighbours(X, 10, search="exact")[0]
    recall = neighbours.overlap(idx, exact).mean() / 10
    assert recall > 0.98
    other = neighbours.nearest_neighbours(X, 10, search="nndescent", random_state=1)[0]
    assert neighbours.overlap(other, exact).mean() / 10 > 0.98
