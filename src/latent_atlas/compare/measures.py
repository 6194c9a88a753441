"""How alike two representations of the same samples are.

Every function takes X of shape (n_samples, d_a) and Y of shape (n_samples, d_b), float arrays
whose rows are the same samples in the same order (two models' latents, or one model at two
training snapshots), and computes in float64. What a measure ignores decides what "alike" means
for it; each docstring says it:

- CKA (linear, RBF), Procrustes, SVCCA and k-NN overlap ignore translation, isotropic scaling and
  rotations or reflections of either representation; SVCCA with k at the full rank also ignores
  any invertible linear map.
- The linear probe R² and the class-probe accuracy ignore translation and per-dimension scaling
  of the input (they standardise it), and ask how much a linear read-out recovers.
- `match_dimensions` asks whether the axes themselves correspond, so it is not rotation-invariant.

`pair_measures` runs them all for one pair.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from latent_atlas.atlas.neighbours import jaccard, nearest_neighbours, overlap
from latent_atlas.explain.quality import cross_validated_accuracy
from latent_atlas.projections import subsample_indices

# Ridge penalties for standardised features: the grid of the explain stage's ridge maps.
PROBE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
# Room for lbfgs to converge: scikit-learn's default cap is 100 iterations.
PROBE_MAX_ITER = 1000


def linear_cka(X: np.ndarray, Y: np.ndarray, debiased: bool = True) -> float:
    """Linear centred kernel alignment (CKA) of two representations of the same samples.

    CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with the linear kernels K = X X^T and
    L = Y Y^T (n x n).

    - Biased (Kornblith et al. 2019): HSIC(K, L) = tr(K H L H) / (n - 1)^2 with the centring matrix
      H = I - 11^T / n, so CKA = ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) for the
      column-centred Xc, Yc.
    - Debiased (the unbiased HSIC estimator of Song et al. 2012, as used by Nguyen, Raghu &
      Kornblith 2021): with K~, L~ the kernels with their diagonals set to 0,
      HSIC(K, L) = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n - 1)(n - 2)) - 2 / (n - 2) 1^T K~ L~ 1]
      / (n (n - 3)). It removes the biased estimator's pull towards 1 when the dimensions are
      large against n.

    No n x n matrix is formed: both estimators are unchanged by centring the columns, and with
    centred columns tr(K~ L~) = ||Xc^T Yc||_F^2 - r.s, K~ 1 = -r and 1^T K~ 1 = -sum(r), where r and s
    are the squared norms of the rows of Xc and Yc. Time O(n (d_a + d_b)^2).

    1 = identical up to translation, isotropic scaling and an orthogonal transform (rotation,
    reflection) of either representation, which CKA ignores; other invertible linear maps change
    it. The debiased value can fall slightly below 0 for unrelated representations.

    Parameters
    ----------
    X : ndarray of shape (n_samples, d_a)
    Y : ndarray of shape (n_samples, d_b)
    debiased : bool
        The unbiased HSIC estimator (needs n_samples >= 4), else the biased one.

    Returns
    -------
    float
    """
    X, Y = _paired(X, Y)
    X, Y = X - X.mean(axis=0), Y - Y.mean(axis=0)
    xy, xx, yy = (float(np.sum((a.T @ b) ** 2)) for a, b in ((X, Y), (X, X), (Y, Y)))
    if not debiased:
        return _cka(xy, xx, yy)
    n = _at_least_4(len(X))
    r, s = np.einsum("ij,ij->i", X, X), np.einsum("ij,ij->i", Y, Y)
    return _cka(_unbiased_hsic(xy - r @ s, -r.sum(), -s.sum(), r @ s, n),
                _unbiased_hsic(xx - r @ r, -r.sum(), -r.sum(), r @ r, n),
                _unbiased_hsic(yy - s @ s, -s.sum(), -s.sum(), s @ s, n))


def rbf_cka(X: np.ndarray, Y: np.ndarray, *, max_samples: int, random_state: int,
            sigma_fraction: float = 0.8) -> float:
    """Debiased CKA with Gaussian (RBF) kernels, on a seeded subsample of the samples.

    K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2)) with sigma = `sigma_fraction` x the median distance
    between distinct samples of X (likewise L for Y, with its own sigma); CKA from the unbiased
    HSIC estimator of `linear_cka`. Kornblith et al. (2019) set sigma to a fraction of the median
    distance and report 0.2, 0.4 and 0.8 of it; 0.8 is the default here (their code takes the
    median of the squared distances over the whole matrix, zero diagonal included: a hair
    smaller). The same rows, at
    most `max_samples` drawn with `random_state`, are used for X and Y; time O(m^2 (d_a + d_b))
    and a few m x m float64 arrays for m rows.

    1 = identical up to translation, isotropic scaling (sigma scales with the distances) and
    an orthogonal transform of either representation. It weighs local structure (distances
    below sigma) more than linear CKA does, the more so the smaller `sigma_fraction`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, d_a)
    Y : ndarray of shape (n_samples, d_b)
    max_samples : int
        At most this many rows (all of them if there are fewer; at least 4).
    random_state : int
        Seed of the subsample.
    sigma_fraction : float
        The kernels' width as a fraction of the median distance.

    Returns
    -------
    float
    """
    X, Y = _paired(X, Y)
    rows = subsample_indices(len(X), max_samples, random_state)
    n = _at_least_4(len(rows))
    K, L = _rbf_kernel(X[rows], sigma_fraction), _rbf_kernel(Y[rows], sigma_fraction)
    k_rows, l_rows = K.sum(axis=1), L.sum(axis=1)
    return _cka(_unbiased_hsic(np.vdot(K, L), k_rows.sum(), l_rows.sum(), k_rows @ l_rows, n),
                _unbiased_hsic(np.vdot(K, K), k_rows.sum(), k_rows.sum(), k_rows @ k_rows, n),
                _unbiased_hsic(np.vdot(L, L), l_rows.sum(), l_rows.sum(), l_rows @ l_rows, n))


def procrustes_disparity(X: np.ndarray, Y: np.ndarray) -> float:
    """Orthogonal Procrustes disparity: the share of one representation left unexplained by the
    other best rotated, scaled and translated onto it, in [0, 1].

    Each is centred and scaled to unit Frobenius norm (A, B); then
    disparity = min over orthogonal R and scalars c of ||A - c B R||_F^2
              = 1 - (sum of the singular values of A^T B)^2,
    the disparity of scipy.spatial.procrustes. Padding the narrower representation with zero
    columns (which that function needs, to make R square) leaves A^T B's singular values, and so
    the disparity, unchanged, so no padding is done. Symmetric in X and Y.

    0 = identical up to translation, isotropic scaling and an orthogonal transform (rotation,
    reflection) of either; 1 = A^T B = 0 (no direction of one correlates with any of the other).

    Parameters
    ----------
    X : ndarray of shape (n_samples, d_a)
    Y : ndarray of shape (n_samples, d_b)

    Returns
    -------
    float
    """
    X, Y = _paired(X, Y)
    A, B = _unit_frobenius(X), _unit_frobenius(Y)
    nuclear = np.linalg.svd(A.T @ B, compute_uv=False).sum()
    return float(max(0.0, 1.0 - nuclear ** 2))


def svcca(X: np.ndarray, Y: np.ndarray, k: int) -> float:
    """SVCCA (Raghu et al. 2017): the mean canonical correlation between the leading singular
    directions of the two representations.

    Each is centred and reduced by SVD to its k leading directions (the first k left singular
    vectors; k capped at the representation's numerical rank, since directions without variance
    would correlate arbitrarily). Both reduced representations have orthonormal columns, so their
    canonical correlations are the singular values of U_a^T U_b; the result is their mean, over
    min(k_a, k_b) of them. Raghu et al. keep the directions that explain 99 % of the variance; a
    fixed k compares every pair on the same footing.

    In [0, 1]; 1 = the same k-dimensional principal subspace. Ignores translation, isotropic
    scaling and orthogonal transforms of either representation, and, with k at the full rank,
    every invertible linear map (as CCA does).

    Parameters
    ----------
    X : ndarray of shape (n_samples, d_a)
    Y : ndarray of shape (n_samples, d_b)
    k : int
        Leading directions kept of each, >= 1.

    Returns
    -------
    float
    """
    X, Y = _paired(X, Y)
    if k < 1:
        raise ValueError(f"compare: SVCCA needs k >= 1, got {k}")
    correlations = np.linalg.svd(_leading_directions(X, k).T @ _leading_directions(Y, k), compute_uv=False)
    return float(np.clip(correlations, 0.0, 1.0).mean())


def knn_overlap(X: np.ndarray, Y: np.ndarray, k: int, *, random_state: int) -> np.ndarray:
    """Per sample, the Jaccard index of its k nearest neighbours in X and in Y.

    |N_X(i) & N_Y(i)| / |N_X(i) | N_Y(i)| with N(i) the k nearest other samples (Euclidean), found
    by the atlas's neighbour search (`atlas.neighbours.nearest_neighbours`: exact while cheap,
    NN-descent seeded with `random_state` above that). 1 = the same neighbours, 0 = none shared.

    Ignores translation, isotropic scaling and orthogonal transforms of either representation,
    and any other change that keeps every sample's nearest neighbours; it sees local structure
    only.

    Parameters
    ----------
    X : ndarray of shape (n_samples, d_a)
    Y : ndarray of shape (n_samples, d_b)
    k : int
        Neighbours per sample, 1 <= k < n_samples.
    random_state : int
        Seed of the approximate search (unused by the exact one).

    Returns
    -------
    ndarray of shape (n_samples,), float32
    """
    X, Y = _paired(X, Y)
    return _neighbour_jaccard(_neighbours(X, k, random_state), _neighbours(Y, k, random_state), k)


def linear_probe_r2(X: np.ndarray, Y: np.ndarray, *, cv_folds: int, random_state: int,
                    alphas: Sequence[float] = PROBE_ALPHAS) -> float:
    """How much of Y a linear map of X recovers: the out-of-fold R² of a ridge regression of Y on X.

    The samples are split into `cv_folds` shuffled, seeded folds (KFold). For each fold, X is
    standardised with the other folds' mean and standard deviation (StandardScaler), and a ridge
    regression with intercept of all columns of Y on it is fit on the other folds, its penalty
    chosen from `alphas` by generalised cross-validation on those folds (Golub, Heath & Wahba
    1979: the rotation-invariant form of RidgeCV's leave-one-out, computed from the eigenvalues of
    the d_a x d_a Gram matrix; one penalty for all columns, as RidgeCV's default); it predicts the
    held-out fold. R² = 1 - (sum of squared out-of-fold errors) / (sum of squares of Y about its
    mean), over all columns together: scikit-learn's variance-weighted R², where a column counts
    by its variance. RidgeCV itself would spend O(n d_a (d_a + d_b)) per penalty and fold; this
    spends it once per fold.

    1 = Y is an affine function of X; 0 = no better than Y's mean; negative = worse. Asymmetric
    (the stage reports both directions): a wide X recovers a narrow Y more easily than the
    reverse. Ignores translation and per-dimension scaling of X, and translation, isotropic
    scaling and orthogonal transforms of Y.

    Parameters
    ----------
    X : ndarray of shape (n_samples, d_a)
        The input of the probe.
    Y : ndarray of shape (n_samples, d_b)
        What it predicts.
    cv_folds : int
        Number of folds, >= 2.
    random_state : int
        Seed of the fold shuffle.
    alphas : sequence of float
        Ridge penalties to choose from (for standardised X).

    Returns
    -------
    float
    """
    X, Y = _paired(X, Y)
    predicted = np.empty_like(Y)
    for train, test in KFold(n_splits=cv_folds, shuffle=True, random_state=random_state).split(X):
        scaler = StandardScaler().fit(X[train])
        features = scaler.transform(X[train])
        y_mean = Y[train].mean(axis=0)
        targets = Y[train] - y_mean
        eigenvalues, V = np.linalg.eigh(features.T @ features)
        eigenvalues = np.clip(eigenvalues, 0.0, None)
        projected = V.T @ (features.T @ targets)  # X^T Y in X's eigenbasis
        alpha = _gcv_penalty(eigenvalues, np.sum(projected ** 2, axis=1), float(np.sum(targets ** 2)),
                             len(train), alphas)
        weights = V @ (projected / (eigenvalues + alpha)[:, None])
        predicted[test] = scaler.transform(X[test]) @ weights + y_mean
    return float(r2_score(Y, predicted, multioutput="variance_weighted"))


def class_probe_accuracy(X: np.ndarray, labels: np.ndarray, *, cv_folds: int, random_state: int) -> float:
    """How linearly separable the classes are in X: the cross-validated accuracy of a
    multinomial logistic regression on the standardised dimensions.

    StandardScaler, then LogisticRegression (L2 penalty, C = 1, lbfgs, up to `PROBE_MAX_ITER`
    iterations), on `cv_folds` stratified folds shuffled with `random_state`
    (`explain.quality.cross_validated_accuracy`, which also serves the explain stage's k-NN
    accuracy); the mean accuracy over the folds. Ignores translation and per-dimension scaling of
    X.

    Parameters
    ----------
    X : ndarray of shape (n_samples, d)
    labels : ndarray of shape (n_samples,)
        Class of each sample; every class needs at least 2 samples (fewer folds if a class has
        fewer than `cv_folds`).
    cv_folds : int
    random_state : int

    Returns
    -------
    float
    """
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER))
    return cross_validated_accuracy(model, X, labels, n_folds=cv_folds, random_state=random_state)[0]


def match_dimensions(X: np.ndarray, Y: np.ndarray) -> pd.DataFrame:
    """The dimensions of X and Y paired one to one so that the pairs correlate most.

    r_ij is the Pearson correlation of dimension i of X with dimension j of Y over the samples (a
    constant dimension correlates 0 with everything); the Hungarian algorithm
    (scipy.optimize.linear_sum_assignment) picks min(d_a, d_b) pairs, each dimension in at most
    one, with the largest sum of |r_ij|. Ignores translation and scaling (of either sign) of each
    dimension on its own and the order of the dimensions; it asks whether the axes themselves
    correspond, so a rotation changes it.

    Parameters
    ----------
    X : ndarray of shape (n_samples, d_a)
    Y : ndarray of shape (n_samples, d_b)

    Returns
    -------
    DataFrame with min(d_a, d_b) rows: dim_a, dim_b (int64, column indices), correlation (r,
    float64), abs_correlation (|r|); sorted by abs_correlation, largest first (ties by dim_a).
    """
    X, Y = _paired(X, Y)
    r = _standardised(X).T @ _standardised(Y) / len(X)
    dim_a, dim_b = linear_sum_assignment(np.abs(r), maximize=True)
    pairs = pd.DataFrame({"dim_a": dim_a.astype(np.int64), "dim_b": dim_b.astype(np.int64),
                          "correlation": r[dim_a, dim_b], "abs_correlation": np.abs(r[dim_a, dim_b])})
    return pairs.sort_values("abs_correlation", ascending=False, kind="stable").reset_index(drop=True)


def pair_measures(X: np.ndarray, Y: np.ndarray, labels: np.ndarray, *, ks: Sequence[int],
                  rbf_max_samples: int, svcca_k: int, cv_folds: int,
                  random_state: int) -> tuple[dict[str, float], pd.DataFrame]:
    """Every measure of one pair of representations, A = X and B = Y.

    Parameters
    ----------
    X : ndarray of shape (n_samples, d_a)
    Y : ndarray of shape (n_samples, d_b)
    labels : ndarray of shape (n_samples,)
        Class of each sample, for the class probes.
    ks : sequence of int
        Neighbour counts of the k-NN overlap (one search per representation, at the largest k).
    rbf_max_samples, svcca_k, cv_folds, random_state
        As in `rbf_cka`, `svcca` and the probes; `random_state` seeds every random choice.

    Returns
    -------
    measures : dict
        name -> float: linear_cka (debiased), linear_cka_biased, rbf_cka, procrustes, svcca,
        knn_overlap_k{k} (mean over the samples) for each k, probe_r2_ab (B from A),
        probe_r2_ba (A from B), class_accuracy_a, class_accuracy_b.
    per_sample : DataFrame
        One row per sample in the order of X: knn_overlap_k{k} (float32) for each k.
    `match_dimensions` pairs the dimensions.
    """
    X, Y = _paired(X, Y)
    ks = sorted(set(int(k) for k in ks))
    if not ks:
        raise ValueError("compare: pair_measures needs at least one k for the k-NN overlap")
    neighbours_a, neighbours_b = (_neighbours(Z, ks[-1], random_state) for Z in (X, Y))
    per_sample = pd.DataFrame({f"knn_overlap_k{k}": _neighbour_jaccard(neighbours_a, neighbours_b, k)
                               for k in ks})
    measures = {
        "linear_cka": linear_cka(X, Y, debiased=True),
        "linear_cka_biased": linear_cka(X, Y, debiased=False),
        "rbf_cka": rbf_cka(X, Y, max_samples=rbf_max_samples, random_state=random_state),
        "procrustes": procrustes_disparity(X, Y),
        "svcca": svcca(X, Y, svcca_k),
        **{column: float(per_sample[column].mean()) for column in per_sample},
        "probe_r2_ab": linear_probe_r2(X, Y, cv_folds=cv_folds, random_state=random_state),
        "probe_r2_ba": linear_probe_r2(Y, X, cv_folds=cv_folds, random_state=random_state),
        "class_accuracy_a": class_probe_accuracy(X, labels, cv_folds=cv_folds, random_state=random_state),
        "class_accuracy_b": class_probe_accuracy(Y, labels, cv_folds=cv_folds, random_state=random_state),
    }
    return measures, per_sample


def _paired(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X and Y as float64 2-D arrays of the same samples (rows)."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(f"compare: X and Y must be 2-D (n_samples, n_dims); got shapes {X.shape} and {Y.shape}")
    if len(X) != len(Y):
        raise ValueError(f"compare: X and Y must hold the same samples (rows); got {len(X)} and {len(Y)} rows")
    for name, Z in (("X", X), ("Y", Y)):
        if not np.ptp(Z, axis=0).any():
            raise ValueError(f"compare: {name} is constant (every sample the same); no measure is defined for it")
    return X, Y


def _at_least_4(n: int) -> int:
    if n < 4:
        raise ValueError(f"compare: the debiased HSIC estimator needs at least 4 samples, got {n}")
    return n


def _unbiased_hsic(trace_kl: float, sum_k: float, sum_l: float, rows_kl: float, n: int) -> float:
    """Song et al.'s unbiased HSIC from tr(K~ L~), 1^T K~ 1, 1^T L~ 1 and (K~ 1).(L~ 1)."""
    return (trace_kl + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * rows_kl) / (n * (n - 3))


def _cka(hsic_xy: float, hsic_xx: float, hsic_yy: float) -> float:
    if hsic_xx <= 0 or hsic_yy <= 0:  # the unbiased estimator can be, for a few samples
        raise ValueError("compare: CKA is undefined here: a representation's HSIC with itself is not positive")
    return float(hsic_xy / np.sqrt(hsic_xx * hsic_yy))


def _rbf_kernel(X: np.ndarray, sigma_fraction: float) -> np.ndarray:
    """The (m, m) Gaussian kernel of the rows of X, diagonal set to 0 (as the unbiased HSIC wants)."""
    X = X - X.mean(axis=0)  # the Gram identity below loses less to rounding near the origin
    norms = np.einsum("ij,ij->i", X, X)
    sq = norms[:, None] + norms[None, :] - 2.0 * (X @ X.T)
    np.maximum(sq, 0.0, out=sq)
    m = len(X)
    # Off the diagonal every pair appears twice, which leaves the median that of distinct pairs.
    median = float(np.median(np.sqrt(sq.ravel()[1:].reshape(m - 1, m + 1)[:, :-1]), overwrite_input=True))
    if median <= 0:
        raise ValueError("compare: RBF CKA needs a positive median distance; most samples coincide")
    sq *= -1.0 / (2.0 * (sigma_fraction * median) ** 2)
    kernel = np.exp(sq, out=sq)
    np.fill_diagonal(kernel, 0.0)
    return kernel


def _unit_frobenius(X: np.ndarray) -> np.ndarray:
    X = X - X.mean(axis=0)
    return X / np.linalg.norm(X)


def _leading_directions(X: np.ndarray, k: int) -> np.ndarray:
    """The first min(k, numerical rank) left singular vectors of the centred X, (n, k')."""
    U, s, _ = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
    rank = int(np.sum(s > s[0] * max(X.shape) * np.finfo(np.float64).eps))
    return U[:, :min(k, rank)]


def _neighbours(X: np.ndarray, k: int, random_state: int) -> np.ndarray:
    """Indices (n, k) of the k nearest other samples, nearest first."""
    if not 1 <= k < len(X):
        raise ValueError(f"compare: k-NN overlap needs 1 <= k < n_samples = {len(X)}, got k = {k}")
    return nearest_neighbours(X, k, random_state=random_state)[0]


def _neighbour_jaccard(neighbours_a: np.ndarray, neighbours_b: np.ndarray, k: int) -> np.ndarray:
    """Per sample, the Jaccard index of the first k of its neighbours in a and in b, (n,) float32."""
    return jaccard(overlap(neighbours_a[:, :k], neighbours_b[:, :k]), k)


def _gcv_penalty(eigenvalues: np.ndarray, projected_sq: np.ndarray, total_sq: float, n: int,
                 alphas: Sequence[float]) -> float:
    """The ridge penalty of least generalised cross-validation error n RSS / (n - df)^2.

    eigenvalues (p,) of the training Gram matrix X^T X; projected_sq (p,) the squared norms of the
    rows of V^T X^T Y (V its eigenvectors); total_sq = ||Y||_F^2 (Y centred). With W the ridge
    solution, RSS = ||Y - X W||_F^2 = total_sq - sum_j projected_sq_j (l_j + 2 alpha) / (l_j + alpha)^2
    and df = tr(X (X^T X + alpha)^-1 X^T) = sum_j l_j / (l_j + alpha).
    """
    a = np.asarray(alphas, np.float64)[:, None]
    rss = total_sq - np.sum(projected_sq * (eigenvalues + 2 * a) / (eigenvalues + a) ** 2, axis=1)
    df = np.sum(eigenvalues / (eigenvalues + a), axis=1)
    return float(a[np.argmin(np.maximum(rss, 0.0) / (n - df) ** 2), 0])


def _standardised(X: np.ndarray) -> np.ndarray:
    """Columns with mean 0 and standard deviation 1 (a constant column all 0)."""
    constant = np.ptp(X, axis=0) == 0  # exact, where the centred column's std is only rounding
    X = X - X.mean(axis=0)
    X[:, constant] = 0.0
    return X / np.where(constant, 1.0, X.std(axis=0))
