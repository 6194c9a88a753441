"""Disentanglement scores of a code against discrete factors of variation.

Every function takes a code Z of shape (n_samples, d), float (a model's latents), and factors V of
shape (n_samples, K), integer, whose column k holds factor k's value for each sample: a generator's
factor indices (shape, scale, rotation, x, y) or a data set's attributes (CelebA's 40 binary
ones). Rows are the same samples in the same order; computation is in float64. The supervised
scores take a training and a test split of both. Each score asks its own question and ignores
its own things:

- MIG (`mig`, Chen et al. 2018) asks whether each factor is carried by one dimension above all
  others, by the mutual information (`mutual_information`) of the factor with each dimension cut
  into equal-width bins. It ignores the order of the dimensions and any affine map (sign
  included) of each dimension on its own, which keep its bins.
- DCI (`dci`, Eastwood & Williams 2018) fits one regressor per factor on all dimensions and reads
  an importance matrix from it: disentanglement asks whether each dimension serves one factor,
  completeness whether each factor is served by one dimension, informativeness how well all the
  dimensions together predict the factor (test R²). It ignores the order of the dimensions and,
  up to the forests' randomness, any affine map of each (a tree's cuts move with the values; the
  lasso standardises them).
- SAP (`sap`, Kumar et al. 2018) scores each dimension alone as a predictor of each factor (r² of
  a line, or the balanced accuracy of a threshold) and asks for a gap between the best two. It
  ignores the order of the dimensions and any affine map of each, sign included.

None ignores a rotation: a rotated copy of a disentangled code keeps every bit of information
(DCI's informativeness barely moves) and loses most of its MIG, SAP and DCI disentanglement.
Each function refuses a factor that takes one value only (no score is defined for it), naming
the factor by `names` (default "factor k").

What the numbers mean on CelebA. Its attributes are binary, unbalanced (Bald: 2 % of the faces)
and correlated (Male with Goatee, No_Beard, Heavy_Makeup, Wearing_Lipstick). Correlation lowers
every score of a code that is perfectly aligned with the attributes: if z_1 carries Male and z_2
Heavy_Makeup, z_2 still tells much about Male, so Male's second-best dimension is informative, its
MIG and SAP top-2 gaps shrink (a gap of at most 1 - I(Male; Makeup) / H(Male) for MIG), and the
regressors spread importance over both dimensions, lowering DCI disentanglement and completeness.
Two attributes that share one direction of the code share its top dimension, and one of them
counts as spread. A code can also be fully informative and score low on all three: a model owes no
alignment of its axes with human labels, and a linear probe may read every attribute from a
rotated code (`compare.measures.class_probe_accuracy` asks that question; these scores ask about
the axes). Binary factors cap SAP's gaps near 0.5 (a threshold's balanced accuracy starts at
chance, 0.5) and entropies of rare attributes are small, so MIG's normalised gap of a rare
attribute is noisy. Label noise caps informativeness. So CelebA numbers are not comparable with
dSprites or 3D Shapes numbers, whose factors are independent by construction (a full grid),
noiseless and multi-valued: compare models on the same factors only.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
from sklearn.linear_model import Lasso
from sklearn.metrics import r2_score
from sklearn.tree import DecisionTreeClassifier

# Histogram bins per dimension for the mutual information: disentanglement_lib's default.
N_BINS = 20
# DCI's tree ensembles by name (`dci`'s regressor).
FORESTS = {"extra_trees": ExtraTreesRegressor, "random_forest": RandomForestRegressor}
# The lasso's room to converge: scikit-learn's default cap (1000 sweeps) can stop short on
# strongly correlated dimensions, such as a rotated code's.
LASSO_MAX_ITER = 10000


def factor_entropy(V: np.ndarray, *, names: Sequence[str] | None = None) -> np.ndarray:
    """The entropy of each factor's empirical distribution, in nats.

    H(v_k) = -sum_c p_c log p_c with p_c the share of samples whose factor k has value c.

    Parameters
    ----------
    V : ndarray of shape (n_samples, K), integer
    names : sequence of K str, optional
        The factors' names for error messages.

    Returns
    -------
    ndarray of shape (K,), float64
    """
    _, labels, _ = _factors(V, names, "V")
    return _entropies(labels)


def mutual_information(Z: np.ndarray, V: np.ndarray, n_bins: int = N_BINS, *,
                       names: Sequence[str] | None = None) -> np.ndarray:
    """The mutual information, in nats, between each dimension of the code, cut into equal-width
    bins, and each factor.

    Each dimension is cut into `n_bins` equal-width bins spanning its range over the samples (the
    edges of np.histogram; the maximum falls in the last bin), and I(b_i; v_k) is the plug-in
    estimate from the joint counts: sum over bins b and values c of p(b, c) log(p(b, c) / (p(b)
    p(c))). This is disentanglement_lib's estimator (Locatello et al. 2019), the one behind most
    published MIG numbers; Chen et al. (2018) estimate I(z_i; v_k) from the encoder's posterior
    q(z|x) instead, which a plain code does not provide. The estimate is at most H(v_k) (the binned
    dimension is a function of the sample) and biased upwards by about (n_bins - 1)(m_k - 1) / (2
    n_samples) for a factor of m_k values; a constant dimension has 0. Ignores any affine map of a
    dimension (sign included), which moves its bin edges with it (up to rounding at the edges).
    10,000 samples of a 256-d code and 40 factors take 0.4 s.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, d)
    V : ndarray of shape (n_samples, K), integer
    n_bins : int
        Bins per dimension, >= 2.
    names : sequence of K str, optional
        The factors' names for error messages.

    Returns
    -------
    ndarray of shape (d, K), float64
    """
    Z, _, labels, _ = _code_and_factors(Z, V, names, "Z", "V")
    return _mutual_information(Z, labels, n_bins)


def mig(Z: np.ndarray, V: np.ndarray, n_bins: int = N_BINS, *,
        names: Sequence[str] | None = None) -> dict:
    """Mutual information gap (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs").

    For each factor, the gap between the largest and the second-largest mutual information of a
    dimension with it (`mutual_information`, binned), divided by the factor's entropy:
    gap_k = (I(b_top1; v_k) - I(b_top2; v_k)) / H(v_k), in [0, 1]; MIG is its mean over the
    factors. 1 = each factor fully determined by one dimension's bin and no other dimension
    informative about it; 0 = the two best dimensions tie. The gap does not ask whether one
    dimension serves several factors (DCI's disentanglement does). Ignores the order of the
    dimensions and any affine map of each. The plug-in estimates' upward bias (see
    `mutual_information`) lifts the second-best dimension most for a factor of many values and
    small entropy, and so lowers its gap.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, d)
        d >= 2: the score is a gap between two dimensions.
    V : ndarray of shape (n_samples, K), integer
    n_bins : int
        Bins per dimension, >= 2.
    names : sequence of K str, optional
        The factors' names for error messages.

    Returns
    -------
    dict
        mig (float); factor_gaps (K,), the normalised gap of each factor; top_dimension (K,) int64,
        the dimension of largest mutual information with each factor; mutual_information (d, K);
        factor_entropy (K,), nats.
    """
    Z, _, labels, _ = _code_and_factors(Z, V, names, "Z", "V")
    _at_least_two_dimensions(Z, "MIG")
    mi = _mutual_information(Z, labels, n_bins)
    entropy = _entropies(labels)
    gaps = _top_two_gaps(mi) / entropy
    return {"mig": float(gaps.mean()), "factor_gaps": gaps, "top_dimension": np.argmax(mi, axis=0),
            "mutual_information": mi, "factor_entropy": entropy}


def dci(Z_train: np.ndarray, V_train: np.ndarray, Z_test: np.ndarray, V_test: np.ndarray, *,
        random_state: int, regressor: str = "extra_trees", n_estimators: int = 5,
        max_depth: int | None = 6, alpha: float = 0.01, names: Sequence[str] | None = None) -> dict:
    """Disentanglement, completeness and informativeness (Eastwood & Williams 2018, "A framework
    for the quantitative evaluation of disentangled representations").

    One regressor per factor predicts the factor's value (its integer value, as a number, which
    orders even an unordered factor such as shape) from all d dimensions, fit on the training
    split. Its importances fill the factor's column of the
    importance matrix R (d, K), R_ij >= 0:

    - "extra_trees" (the default) or "random_forest": a forest of `n_estimators` trees of depth at
      most `max_depth` (scikit-learn's ExtraTreesRegressor or RandomForestRegressor, n_jobs=1,
      seeded by `random_state`), every split choosing among all d dimensions; R_ij is the forest's
      impurity-based feature_importances_, which sum to 1 over i for each factor (0 if no tree
      split). Eastwood & Williams use a random forest; its splits sort every dimension's values
      at every node, 3 s per factor on 10,000 samples of a 256-d code. Extremely randomised trees
      (Geurts et al. 2006) draw one random threshold per dimension and node instead and take a
      sixth of that; their importances are the same kind (mean decrease in impurity), and both
      forests score a code equal to the factors 1. Letting each split see only a few dimensions
      (max_features="sqrt") would be fast too, but spreads the importance over dimensions that
      carry nothing: a 5-d code equal to the factors then scores 0.89, and at d = 256 a factor's
      dimension is a candidate at 1 split in 16.
    - "lasso": the dimensions and the factor standardised with the training split's mean and
      standard deviation (a constant dimension left at 0), a Lasso of penalty `alpha` (scikit-
      learn's objective, per sample); R_ij = |coefficient|. Deterministic: `random_state` is unused.

    With P_ij = R_ij / sum_k R_ik (dimension i's importance spread over the factors) and
    P~_ij = R_ij / sum_i R_ij (factor j's spread over the dimensions), `dci_from_importance`
    computes

    - disentanglement = sum_i rho_i (1 - H_K(P_i.)), entropy in base K, weighted by the share
      rho_i = sum_j R_ij / sum R of each dimension in the total importance: 1 = every dimension
      that matters serves one factor only;
    - completeness = the mean over factors of C_j = 1 - H_d(P~_.j), entropy in base d: 1 = every
      factor is read from one dimension only. disentanglement_lib weighs C_j by the factor's share
      of the total importance instead; the forests' importances sum to 1 for every factor and the
      two agree; with the lasso they differ.

    and informativeness = the mean over factors of the regressors' R² on the test split. The paper
    reports a prediction error (lower is better); R² is reported here so that, like the other two,
    higher is better (1 = every factor predicted exactly, 0 = no better than its mean).

    Degenerate cases: a dimension of zero total importance has rho_i = 0 and disentanglement 0
    (it serves nothing); a factor of zero total importance (the lasso shrank every coefficient to
    0, or no tree split) has C_j = 0; all of R zero gives disentanglement 0. With K = 1 (an
    entropy of base 1) every used dimension serves the one factor: disentanglement 1. With d = 1
    the one dimension carries every factor it is used for: C_j = 1 for those.

    Cost, measured on one core of a shared 2-core machine (10,000 training and 5,000 test samples
    of a 256-d code, 40 binary factors): 20 s with the defaults, 120 s with "random_forest", 2 s
    with "lasso".

    Parameters
    ----------
    Z_train : ndarray of shape (n_train, d)
    V_train : ndarray of shape (n_train, K), integer
    Z_test : ndarray of shape (n_test, d)
    V_test : ndarray of shape (n_test, K), integer
    random_state : int
        Seed of the forests (thresholds, bootstrap samples).
    regressor : {"extra_trees", "random_forest", "lasso"}
    n_estimators, max_depth
        The forest's trees and their depth (6: 64 leaves, enough for a factor of 64 values).
    alpha : float
        The lasso's penalty.
    names : sequence of K str, optional
        The factors' names for error messages.

    Returns
    -------
    dict
        disentanglement, completeness, informativeness (floats); importance (d, K), R;
        dimension_disentanglement (d,), 1 - H_K(P_i.); dimension_weight (d,), rho;
        factor_completeness (K,), C_j; factor_informativeness (K,), the test R² of each factor.
    """
    Z_train, V_train, Z_test, V_test, _, _ = _splits(Z_train, V_train, Z_test, V_test, names)
    if regressor not in (*FORESTS, "lasso"):
        raise ValueError(f"dci: regressor must be one of {[*FORESTS, 'lasso']}, got {regressor!r}")
    d, K = Z_train.shape[1], V_train.shape[1]
    importance, r2 = np.empty((d, K)), np.empty(K)
    if regressor == "lasso":
        mean, scale = _standardiser(Z_train)
        Z_train, Z_test = (Z_train - mean) / scale, (Z_test - mean) / scale
    for k in range(K):
        y_train, y_test = V_train[:, k], V_test[:, k]
        if regressor == "lasso":
            # R² is unchanged by standardising the target: the same affine map moves y and its
            # prediction.
            y_mean, y_scale = y_train.mean(), y_train.std()
            y_train, y_test = (y_train - y_mean) / y_scale, (y_test - y_mean) / y_scale
            model = Lasso(alpha=alpha, max_iter=LASSO_MAX_ITER).fit(Z_train, y_train)
            importance[:, k] = np.abs(model.coef_)
        else:
            model = FORESTS[regressor](n_estimators=n_estimators, max_depth=max_depth, max_features=1.0,
                                       n_jobs=1, random_state=random_state).fit(Z_train, y_train)
            importance[:, k] = model.feature_importances_
        r2[k] = r2_score(y_test, model.predict(Z_test))
    return {**dci_from_importance(importance), "informativeness": float(r2.mean()),
            "factor_informativeness": r2}


def dci_from_importance(importance: np.ndarray) -> dict:
    """DCI's disentanglement and completeness of an importance matrix (see `dci`).

    Parameters
    ----------
    importance : ndarray of shape (d, K)
        R_ij >= 0: how much dimension i serves factor j.

    Returns
    -------
    dict
        disentanglement, completeness (floats); importance (d, K); dimension_disentanglement (d,);
        dimension_weight (d,); factor_completeness (K,).
    """
    R = np.asarray(importance, np.float64)
    if R.ndim != 2 or (R < 0).any() or not np.isfinite(R).all():
        raise ValueError(f"dci: the importance matrix must be 2-D (d, K), finite and >= 0; got shape {R.shape}")
    d, K = R.shape
    per_dimension, per_factor = R.sum(axis=1), R.sum(axis=0)
    dimension_disentanglement = np.where(per_dimension > 0, 1.0 - _normalised_entropy(R, per_dimension, K, axis=1), 0.0)
    factor_completeness = np.where(per_factor > 0, 1.0 - _normalised_entropy(R, per_factor, d, axis=0), 0.0)
    total = per_dimension.sum()
    weight = per_dimension / total if total > 0 else np.zeros(d)
    return {"disentanglement": float(weight @ dimension_disentanglement),
            "completeness": float(factor_completeness.mean()), "importance": R,
            "dimension_disentanglement": dimension_disentanglement, "dimension_weight": weight,
            "factor_completeness": factor_completeness}


def sap(Z_train: np.ndarray, V_train: np.ndarray, Z_test: np.ndarray, V_test: np.ndarray,
        continuous: Sequence[bool] | None = None, *, names: Sequence[str] | None = None) -> dict:
    """Separated attribute predictability (Kumar et al. 2018, "Variational Inference of
    Disentangled Latent Concepts from Unlabeled Observations").

    A score matrix S (d, K) rates each dimension alone as a predictor of each factor:

    - a continuous (ordinal) factor: S_ij = the R² of a least-squares line predicting the factor
      from z_i, i.e. the squared Pearson correlation, on the training split (as Kumar et al. and
      disentanglement_lib; one slope and one intercept barely overfit); 0 for a constant dimension;
    - a binary factor (categorical, 2 values): the balanced accuracy on the test split of the best
      threshold of z_i, the cut between two consecutive distinct training values (and the side of
      it) of highest training balanced accuracy, the lowest such cut on ties; "no cut" (predict one
      value everywhere) is a candidate and the only one for a constant dimension, scoring 0.5;
    - a categorical factor of m > 2 values: the test balanced accuracy of a decision tree of depth
      ceil(log2 m) on z_i alone (at most m intervals of the line), classes weighted to balance,
      fit on the training split.

    Balanced accuracy = the mean over the values present in the test split of the share of their
    samples predicted right; chance is 1 / m. SAP is the mean over the factors of the gap between
    the two largest scores in the factor's column. A categorical factor's scores start at chance,
    so its gap is at most 1 - 1/m (0.5 for a binary one); disentanglement_lib classifies with a
    linear SVM and plain accuracy instead. Ignores the order of the dimensions and any affine map
    of each, sign included. 10,000 training and 5,000 test samples of a 256-d code and 40 binary
    factors take 4 s on one core.

    Parameters
    ----------
    Z_train : ndarray of shape (n_train, d)
        d >= 2: the score is a gap between two dimensions.
    V_train : ndarray of shape (n_train, K), integer
    Z_test : ndarray of shape (n_test, d)
    V_test : ndarray of shape (n_test, K), integer
    continuous : sequence of K bool, optional
        Which factors are continuous (ordinal); by default a factor with more than 2 values in
        the training split is (a generator's scale, rotation and position indices), and a binary
        one is categorical (CelebA's attributes). Pass it for an unordered factor such as shape.
    names : sequence of K str, optional
        The factors' names for error messages.

    Returns
    -------
    dict
        sap (float); factor_gaps (K,); scores (d, K), S; continuous (K,) bool, as used.
    """
    Z_train, V_train, Z_test, V_test, labels_train, _ = _splits(Z_train, V_train, Z_test, V_test, names)
    _at_least_two_dimensions(Z_train, "SAP")
    levels = labels_train.max(axis=0) + 1
    K = V_train.shape[1]
    if continuous is None:
        continuous = levels > 2
    else:
        continuous = np.asarray(continuous, bool)
        if continuous.shape != (K,):
            raise ValueError(f"sap: continuous must hold one bool per factor ({K}), got shape {continuous.shape}")
    scores = np.empty((Z_train.shape[1], K))
    scores[:, continuous] = _squared_correlations(Z_train, V_train[:, continuous])
    binary = ~continuous & (levels == 2)
    if binary.any():
        scores[:, binary] = _threshold_accuracies(Z_train, V_train[:, binary], Z_test, V_test[:, binary])
    for k in np.flatnonzero(~continuous & (levels > 2)):
        scores[:, k] = [_tree_accuracy(z_train, V_train[:, k], z_test, V_test[:, k], int(levels[k]))
                        for z_train, z_test in zip(Z_train.T, Z_test.T)]
    gaps = _top_two_gaps(scores)
    return {"sap": float(gaps.mean()), "factor_gaps": gaps, "scores": scores, "continuous": continuous}


def _mutual_information(Z: np.ndarray, labels: np.ndarray, n_bins: int) -> np.ndarray:
    """(d, K) binned mutual information of each dimension with each factor (labels 0..m_k-1)."""
    if n_bins < 2:
        raise ValueError(f"mutual information: n_bins must be >= 2, got {n_bins}")
    n, d = Z.shape
    cells = np.arange(d) * n_bins + _histogram_bins(Z, n_bins)  # (n, d): dimension and bin as one index
    mi = np.empty((d, labels.shape[1]))
    for k, v in enumerate(labels.T):
        m = int(v.max()) + 1
        joint = np.bincount((cells * m + v[:, None]).ravel(), minlength=d * n_bins * m)
        joint = joint.reshape(d, n_bins, m) / n
        independent = joint.sum(axis=2, keepdims=True) * joint.sum(axis=1, keepdims=True)
        seen = joint > 0
        terms = np.zeros_like(joint)
        terms[seen] = joint[seen] * np.log(joint[seen] / independent[seen])
        mi[:, k] = terms.sum(axis=(1, 2))
    return np.maximum(mi, 0.0)  # rounding can leave a hair below 0 for an independent pair


def _histogram_bins(Z: np.ndarray, n_bins: int) -> np.ndarray:
    """(n, d) int64: each value's bin among n_bins equal-width bins over its dimension's range."""
    bins = np.empty(Z.shape, np.int64)
    for i, z in enumerate(Z.T):
        inner_edges = np.histogram_bin_edges(z, bins=n_bins)[1:-1]
        bins[:, i] = np.searchsorted(inner_edges, z, side="right")
    return bins


def _entropies(labels: np.ndarray) -> np.ndarray:
    """(K,) entropy in nats of each column of labels (0..m_k-1)."""
    out = np.empty(labels.shape[1])
    for k, v in enumerate(labels.T):
        p = np.bincount(v) / len(v)
        p = p[p > 0]
        out[k] = -np.sum(p * np.log(p))
    return out


def _top_two_gaps(scores: np.ndarray) -> np.ndarray:
    """(K,) the largest minus the second-largest entry of each column of scores (d >= 2, K)."""
    top_two = np.sort(scores, axis=0)[-2:]
    return top_two[1] - top_two[0]


def _normalised_entropy(R: np.ndarray, sums: np.ndarray, base: int, axis: int) -> np.ndarray:
    """The entropy, in base `base`, of R normalised along `axis` (its sums there: `sums`), one per
    line of R; 0 with base 1, where a distribution over one outcome has no uncertainty. A line of
    zero sum comes out as 0 too; callers mask it."""
    if base == 1:
        return np.zeros(R.shape[1 - axis])
    P = R / np.expand_dims(np.where(sums > 0, sums, 1.0), axis)
    terms = np.zeros_like(P)
    terms[P > 0] = P[P > 0] * np.log(P[P > 0])
    return -terms.sum(axis=axis) / math.log(base)


def _standardiser(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean (d,) and standard deviation (d,) of each column, 1 for a constant column (which
    then standardises to 0)."""
    scale = Z.std(axis=0)
    return Z.mean(axis=0), np.where(np.ptp(Z, axis=0) > 0, scale, 1.0)


def _squared_correlations(Z: np.ndarray, V: np.ndarray) -> np.ndarray:
    """(d, k) squared Pearson correlation of each column of Z with each column of V; 0 for a
    constant column of Z."""
    mean, scale = _standardiser(Z)
    Zs = (Z - mean) / scale
    Vs = (V - V.mean(axis=0)) / V.std(axis=0)
    return (Zs.T @ Vs / len(Z)) ** 2


def _threshold_accuracies(Z_train: np.ndarray, V_train: np.ndarray, Z_test: np.ndarray,
                          V_test: np.ndarray) -> np.ndarray:
    """(d, k) test balanced accuracy of the best training threshold of each dimension for each
    binary factor (columns of V)."""
    n, d = Z_train.shape
    high = V_train.max(axis=0)
    positive = V_train == high  # (n, k): the factor at its larger value
    n_pos = positive.sum(axis=0)
    n_neg = n - n_pos
    below = np.arange(1, n + 1)[:, None]  # samples at or below the cut after sorted position j
    out = np.empty((d, V_train.shape[1]))
    for i in range(d):
        order = np.argsort(Z_train[:, i], kind="stable")
        z = Z_train[order, i]
        pos_below = np.cumsum(positive[order], axis=0)  # (n, k)
        neg_below = below - pos_below
        # Balanced accuracy of "larger value above the cut" and of "larger value below it".
        above = 0.5 * ((n_pos - pos_below) / n_pos + neg_below / n_neg)
        under = 0.5 * (pos_below / n_pos + (n_neg - neg_below) / n_neg)
        sides = np.stack([above, under], axis=1)  # (n, 2, k)
        cut = np.append(z[1:] > z[:-1], True)  # between distinct values; the last = no cut
        sides[~cut] = -np.inf
        best = np.argmax(sides.reshape(2 * n, -1), axis=0)  # lowest cut first, "above" first
        j, side = best // 2, best % 2
        threshold = np.where(j < n - 1, (z[j] + z[np.minimum(j + 1, n - 1)]) / 2, np.inf)
        predicted_high = (Z_test[:, i, None] > threshold) != side.astype(bool)
        predicted = np.where(predicted_high, high, V_train.min(axis=0))
        out[i] = [_balanced_accuracy(V_test[:, k], predicted[:, k]) for k in range(V_train.shape[1])]
    return out


def _tree_accuracy(z_train: np.ndarray, v_train: np.ndarray, z_test: np.ndarray, v_test: np.ndarray,
                   levels: int) -> float:
    """Test balanced accuracy of a class-balanced decision tree of depth ceil(log2 levels) on one
    dimension."""
    # One feature: the tree's random feature order has nothing to permute, so the seed is moot.
    tree = DecisionTreeClassifier(max_depth=math.ceil(math.log2(levels)), class_weight="balanced",
                                  random_state=0).fit(z_train[:, None], v_train)
    return _balanced_accuracy(v_test, tree.predict(z_test[:, None]))


def _balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """The mean over the values in `truth` of the share of their samples predicted right."""
    return float(np.mean([np.mean(predicted[truth == c] == c) for c in np.unique(truth)]))


def _at_least_two_dimensions(Z: np.ndarray, score: str) -> None:
    if Z.shape[1] < 2:
        raise ValueError(f"{score} needs a code of at least 2 dimensions (it is a gap between the best two), "
                         f"got {Z.shape[1]}")


def _code(Z: np.ndarray, label: str) -> np.ndarray:
    Z = np.asarray(Z, np.float64)
    if Z.ndim != 2:
        raise ValueError(f"disentanglement: {label} must be 2-D (n_samples, d), got shape {Z.shape}")
    if not np.isfinite(Z).all():
        raise ValueError(f"disentanglement: {label} holds NaN or infinite values")
    return Z


def _factors(V: np.ndarray, names: Sequence[str] | None, label: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """V as int64 (n, K), its columns relabelled 0..m_k-1 (n, K), and the factors' names; refuses
    a factor of one value."""
    V = np.asarray(V)
    if V.ndim != 2:
        raise ValueError(f"disentanglement: {label} must be 2-D (n_samples, K), got shape {V.shape}")
    if not (np.issubdtype(V.dtype, np.integer) or V.dtype == bool):
        raise ValueError(f"disentanglement: {label} must hold integer factor values, got dtype {V.dtype}")
    V = V.astype(np.int64)
    names = [f"factor {k}" for k in range(V.shape[1])] if names is None else [str(name) for name in names]
    if len(names) != V.shape[1]:
        raise ValueError(f"disentanglement: {len(names)} names for the {V.shape[1]} factors of {label}")
    labels = np.empty_like(V)
    for k, v in enumerate(V.T):
        values, labels[:, k] = np.unique(v, return_inverse=True)
        if len(values) < 2:
            raise ValueError(f"disentanglement: {names[k]!r} takes one value only in {label} "
                             f"({values[0] if len(values) else 'no samples'}); no score is defined for it")
    return V, labels, names


def _code_and_factors(Z, V, names, z_label: str, v_label: str):
    """Z as float64 (n, d), V as int64 (n, K), V's labels (n, K) and the names, after checking
    that the rows match."""
    Z = _code(Z, z_label)
    V, labels, names = _factors(V, names, v_label)
    if len(Z) != len(V):
        raise ValueError(f"disentanglement: {z_label} and {v_label} must hold the same samples (rows); "
                         f"got {z_label} of shape {Z.shape} and {v_label} of shape {V.shape}")
    return Z, V, labels, names


def _splits(Z_train, V_train, Z_test, V_test, names):
    """The training and test splits checked: rows match within each, d and K across them."""
    for what, train, test in (("dimensions", Z_train, Z_test), ("factors", V_train, V_test)):
        if np.ndim(train) == np.ndim(test) == 2 and np.shape(train)[1] != np.shape(test)[1]:
            raise ValueError(f"disentanglement: the training and test splits must have the same {what}; "
                             f"got shapes {np.shape(train)} and {np.shape(test)}")
    Z_train, V_train, labels_train, names = _code_and_factors(Z_train, V_train, names, "Z_train", "V_train")
    Z_test, V_test, _, _ = _code_and_factors(Z_test, V_test, names, "Z_test", "V_test")
    return Z_train, V_train, Z_test, V_test, labels_train, names
