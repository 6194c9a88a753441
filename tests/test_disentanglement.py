"""The attributes stage's disentanglement scores: a code equal to the factors scores near 1, a
rotated copy scores what the rotation predicts, a duplicated factor loses completeness; MIG, DCI
and SAP agree with second implementations written here from the papers' definitions (and with
disent's, where it is installed); bad input is refused with messages that name what is wrong."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
from sklearn.linear_model import Lasso
from sklearn.metrics import balanced_accuracy_score, mutual_info_score
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from latent_atlas.attributes import disentanglement as dis

LEVELS = (3, 4, 5, 6, 8)
NOISE = 0.05  # the aligned code's noise, in units of a standardised factor


def _grid() -> np.ndarray:
    """Every combination of 5 factors of 3..8 values, (2880, 5) int64: the factors are independent
    and their centred columns exactly orthogonal."""
    axes = np.meshgrid(*[np.arange(m) for m in LEVELS], indexing="ij")
    return np.stack(axes, axis=-1).reshape(-1, len(LEVELS)).astype(np.int64)


def _aligned(V: np.ndarray, seed: int) -> np.ndarray:
    """The standardised factors plus Gaussian noise of sd NOISE: one dimension per factor."""
    return (V - V.mean(axis=0)) / V.std(axis=0) + NOISE * np.random.default_rng(seed).normal(size=V.shape)


def _haar_orthogonal(d: int, seed: int) -> np.ndarray:
    """A Haar-distributed random orthogonal (d, d) matrix: QR of a Gaussian matrix with the signs
    of R's diagonal moved into Q (Mezzadri 2007)."""
    Q, R = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return Q * np.sign(np.diag(R))


@pytest.fixture(scope="module")
def grid_codes():
    """Training and test codes on the full grid (the same factor values, independent noise)."""
    V = _grid()
    return V, _aligned(V, seed=1), _aligned(V, seed=2)


# --- what a disentangled, a rotated and a duplicated code score -------------------------------

def test_a_code_equal_to_the_factors_scores_near_one(grid_codes):
    V, Z_train, Z_test = grid_codes
    # MIG: the levels of a standardised factor of m <= 8 values lie >= 1/std = 0.44 apart, 8.7
    # noise sds, so a 20-bin histogram bin holds one level, except a bin that straddles the gap
    # between two levels' tails (m = 8 only): I(b_k; v_k) = H(v_k) = log m within 0.1 %. Another
    # dimension is independent of v_k on the grid; its plug-in MI is only the estimator's bias,
    # about (20 - 1)(m - 1) / (2 n) <= 19 * 7 / 5760 = 0.023 nats, 1.1 % of H = log 8. So every
    # gap is about 0.99, and 0.95 leaves room for the bias's spread.
    result = dis.mig(Z_train, V)
    assert result["factor_gaps"].min() > 0.95
    np.testing.assert_array_equal(result["top_dimension"], np.arange(5))
    np.testing.assert_allclose(result["mutual_information"][np.arange(5), np.arange(5)], np.log(LEVELS), rtol=1e-3)
    # SAP (every factor has > 2 values, so continuous): r²(z_k, v_k) = 1 / (1 + NOISE²) = 0.9975
    # and r² with another dimension is a sample correlation's square, O(1 / n); so gaps > 0.99.
    assert dis.sap(Z_train, V, Z_test, V)["factor_gaps"].min() > 0.99
    # DCI with the lasso: a coefficient stays exactly 0 while |corr(z_j, residual)| sd(residual)
    # <= alpha (the lasso's optimality condition on standardised inputs). On the grid z_j is
    # uncorrelated with v_k up to its noise, |corr| ~ NOISE / sqrt(n) ~ 1e-3 < alpha = 0.01: the
    # importance matrix is diagonal, and disentanglement and completeness are exactly 1.
    lasso = dis.dci(Z_train, V, Z_test, V, random_state=0, regressor="lasso")
    assert np.count_nonzero(lasso["importance"] - np.diag(np.diag(lasso["importance"]))) == 0
    assert lasso["disentanglement"] == pytest.approx(1.0) and lasso["completeness"] == pytest.approx(1.0)
    # The trees: a split on another dimension removes only chance variance, so the importance
    # concentrates on the diagonal; > 0.95 is a margin on that argument, not a derived bound
    # (both forests score 1.00 here).
    for regressor in ("extra_trees", "random_forest"):
        trees = dis.dci(Z_train, V, Z_test, V, random_state=0, regressor=regressor)
        assert trees["disentanglement"] > 0.95 and trees["completeness"] > 0.95
        assert trees["informativeness"] > 0.95


def test_a_rotated_code_scores_what_the_rotation_predicts(grid_codes):
    V, Z_train, Z_test = grid_codes
    Q = _haar_orthogonal(5, seed=0)
    rotated_train, rotated_test = Z_train @ Q, Z_test @ Q
    # On the grid the aligned code's columns are uncorrelated with variance 1 + NOISE², so the
    # rotated code z' = z Q has cov(z'_i, v_k) = Q_ki and var(z'_i) = 1 + NOISE²: up to terms in
    # NOISE / sqrt(n) ~ 1e-3,
    # - SAP: S_ik = r²(z'_i, v_k) = Q_ki² / (1 + NOISE²);
    # - the lasso: the standardised rotated design is orthonormal, where the lasso soft-thresholds
    #   the least-squares coefficients Q_ki / sqrt(1 + NOISE²) by alpha, so
    #   R_ik = max(|Q_ki| / sqrt(1 + NOISE²) - alpha, 0).
    predicted_scores = (Q ** 2).T / (1 + NOISE ** 2)
    sap = dis.sap(rotated_train, V, rotated_test, V)
    np.testing.assert_allclose(sap["scores"], predicted_scores, atol=0.01)
    top_two = np.sort(predicted_scores, axis=0)[-2:]
    predicted_sap = float(np.mean(top_two[1] - top_two[0]))
    assert sap["sap"] == pytest.approx(predicted_sap, abs=0.01)
    lasso = dis.dci(rotated_train, V, rotated_test, V, random_state=0, regressor="lasso")
    predicted_importance = np.maximum(np.abs(Q.T) / math.sqrt(1 + NOISE ** 2) - 0.01, 0.0)
    np.testing.assert_allclose(lasso["importance"], predicted_importance, atol=0.01)
    predicted = _reference_dci(predicted_importance)
    assert lasso["disentanglement"] == pytest.approx(predicted[0], abs=0.02)
    assert lasso["completeness"] == pytest.approx(predicted[1], abs=0.02)
    # For this Q the predictions are far below the aligned code's 1, and the rotation loses no
    # information: a linear read-out still predicts every factor.
    assert predicted_sap < 0.3 and max(predicted[:2]) < 0.3
    assert lasso["informativeness"] > 0.99
    # MIG and the forests have no such closed form; these bounds are empirical (over eight seeded
    # rotations MIG ranged 0.04-0.41 and the extra trees' disentanglement 0.30-0.66; this one
    # scores 0.31 and 0.51).
    assert dis.mig(rotated_train, V)["mig"] < 0.5
    assert dis.dci(rotated_train, V, rotated_test, V, random_state=0)["disentanglement"] < 0.7


def test_a_factor_copied_into_two_dimensions_loses_completeness(grid_codes):
    V, Z_train, Z_test = grid_codes
    noise = np.random.default_rng(3).normal(size=(2, len(V)))
    copy = (V[:, 0] - V[:, 0].mean()) / V[:, 0].std()
    train = np.column_stack([Z_train[:, 0], copy + NOISE * noise[0], Z_train[:, 1:]])
    test = np.column_stack([Z_test[:, 0], copy + NOISE * noise[1], Z_test[:, 1:]])
    d = train.shape[1]
    # Factor 0's importance sits on dimensions 0 and 1 with shares 1/2 + e and 1/2 - e, so
    # C_0 = 1 - H_d = 1 - (log 2 - 2 e² + O(e^4)) / log d. The lasso splits evenly: both copies
    # are equally noisy, averaging them halves the noise, and the L1 penalty is the same for any
    # split of the same sum; e is sampling noise. + 0.01 allows e up to 0.08.
    bound = 1 - math.log(2) / math.log(d)
    lasso = dis.dci(train, V, test, V, random_state=0, regressor="lasso")
    assert lasso["factor_completeness"][0] <= bound + 0.01
    assert lasso["factor_completeness"][1:].min() > 0.99
    # The trees split by chance (whichever copy's cut is better at a node): shares of 0.3/0.7 give
    # C_0 = 1 - h(0.3) / log 6 = 0.66; the bound here is empirical.
    trees = dis.dci(train, V, test, V, random_state=0)
    assert trees["factor_completeness"][0] < 0.75 and trees["factor_completeness"][1:].min() > 0.95
    # MIG: each copy's bins resolve every level, so both have I = H(v_0) exactly and the gap is 0.
    assert dis.mig(train, V)["factor_gaps"][0] == pytest.approx(0.0, abs=1e-12)


def test_factor_entropy_of_a_full_grid_is_log_of_the_levels_whatever_the_values():
    np.testing.assert_allclose(dis.factor_entropy(_grid()), np.log(LEVELS), rtol=1e-12)
    # CelebA's raw attributes are -1 / 1: the values are labels, not indices.
    np.testing.assert_allclose(dis.factor_entropy(np.array([[-1], [1], [1], [-1]])), [math.log(2)], rtol=1e-12)


# --- second implementations, from the papers' definitions ------------------------------------

def _reference_mig(Z: np.ndarray, V: np.ndarray, n_bins: int = 20) -> tuple[float, np.ndarray]:
    """MIG by loops: np.histogram's edges with np.digitize, scikit-learn's mutual_info_score."""
    d, K = Z.shape[1], V.shape[1]
    mi = np.zeros((d, K))
    for i in range(d):
        binned = np.digitize(Z[:, i], np.histogram(Z[:, i], bins=n_bins)[1][:-1])
        for k in range(K):
            mi[i, k] = mutual_info_score(V[:, k], binned)
    gaps = []
    for k in range(K):
        first, second = sorted(mi[:, k], reverse=True)[:2]
        gaps.append((first - second) / mutual_info_score(V[:, k], V[:, k]))
    return sum(gaps) / K, mi


def _reference_dci(R: np.ndarray) -> tuple[float, float]:
    """Disentanglement and completeness of an importance matrix by explicit entropy loops."""
    d, K = R.shape
    total = float(R.sum())
    disentanglement = 0.0
    for i in range(d):
        row_sum = float(R[i].sum())
        if row_sum == 0:
            continue
        entropy = -sum(p * math.log(p, K) for p in R[i] / row_sum if p > 0) if K > 1 else 0.0
        disentanglement += row_sum / total * (1 - entropy)
    completeness = []
    for j in range(K):
        column_sum = float(R[:, j].sum())
        if column_sum == 0:
            completeness.append(0.0)
            continue
        entropy = -sum(p * math.log(p, d) for p in R[:, j] / column_sum if p > 0) if d > 1 else 0.0
        completeness.append(1 - entropy)
    return disentanglement, sum(completeness) / K


def _reference_importance(Z_train, V_train, Z_test, V_test, regressor: str):
    """The importance matrix and test R² of each factor, refit here (scikit-learn's scaler)."""
    d, K = Z_train.shape[1], V_train.shape[1]
    R, r2 = np.zeros((d, K)), np.zeros(K)
    if regressor == "lasso":
        scaler = StandardScaler().fit(Z_train)
        Z_train, Z_test = scaler.transform(Z_train), scaler.transform(Z_test)
    for k in range(K):
        y_train, y_test = V_train[:, k].astype(float), V_test[:, k].astype(float)
        if regressor == "lasso":
            mean, sd = y_train.mean(), y_train.std()
            model = Lasso(alpha=0.01, max_iter=10000).fit(Z_train, (y_train - mean) / sd)
            R[:, k] = np.abs(model.coef_)
            predicted = model.predict(Z_test) * sd + mean
        else:
            forest = {"extra_trees": ExtraTreesRegressor, "random_forest": RandomForestRegressor}[regressor]
            model = forest(n_estimators=5, max_depth=6, max_features=1.0, n_jobs=1, random_state=0)
            model.fit(Z_train, y_train)
            R[:, k] = model.feature_importances_
            predicted = model.predict(Z_test)
        r2[k] = 1 - np.sum((y_test - predicted) ** 2) / np.sum((y_test - y_test.mean()) ** 2)
    return R, r2


def _reference_sap(Z_train, V_train, Z_test, V_test, continuous) -> tuple[float, np.ndarray]:
    """SAP by loops: np.corrcoef for continuous factors; for binary ones every cut between two
    distinct training values, lowest first, "larger value above" before "below", then no cut; a
    decision tree for other categorical ones; scikit-learn's balanced accuracy."""
    d, K = Z_train.shape[1], V_train.shape[1]
    S = np.zeros((d, K))
    for i in range(d):
        z, z_test = Z_train[:, i], Z_test[:, i]
        for k in range(K):
            v, v_test = V_train[:, k], V_test[:, k]
            values = np.unique(v)
            if continuous[k]:
                S[i, k] = 0.0 if np.ptp(z) == 0 else np.corrcoef(z, v)[0, 1] ** 2
            elif len(values) == 2:
                low, high = values
                n_high, n_low = np.sum(v == high), np.sum(v == low)
                distinct = np.unique(z)
                cuts = [(a + b) / 2 for a, b in zip(distinct[:-1], distinct[1:])] + [np.inf]
                best, rule = -1.0, None
                for cut in cuts:
                    for high_above in (True, False):
                        predicted_high = (z > cut) if high_above else (z <= cut)
                        hits_high = np.sum(predicted_high & (v == high))
                        hits_low = np.sum(~predicted_high & (v == low))
                        accuracy = 0.5 * (hits_high / n_high + hits_low / n_low)
                        if accuracy > best:
                            best, rule = accuracy, (cut, high_above)
                cut, high_above = rule
                predicted_high = (z_test > cut) if high_above else (z_test <= cut)
                S[i, k] = balanced_accuracy_score(v_test, np.where(predicted_high, high, low))
            else:
                tree = DecisionTreeClassifier(max_depth=math.ceil(math.log2(len(values))),
                                              class_weight="balanced", random_state=0)
                tree.fit(z[:, None], v)
                S[i, k] = balanced_accuracy_score(v_test, tree.predict(z_test[:, None]))
    gaps = [sorted(S[:, k])[-1] - sorted(S[:, k])[-2] for k in range(K)]
    return sum(gaps) / K, S


def _mixed_codes():
    """A few codes of 7 dimensions on a sample of the grid plus a binary attribute: the aligned
    code, a rotation, a partly mixed one with a constant and a coarsely rounded dimension (ties)."""
    rng = np.random.default_rng(5)
    V = _grid()[rng.choice(2880, size=1000, replace=False)]
    attribute = (V[:, 4] + rng.integers(0, 4, size=len(V)) > 6).astype(np.int64)  # correlated with factor 4
    V = np.column_stack([V, attribute])
    aligned = np.column_stack([_aligned(V[:, :5], seed=6), rng.normal(size=(len(V), 2))])
    mixed = aligned @ (np.eye(7) + 0.4 * rng.normal(size=(7, 7)))
    mixed[:, 5] = 3.0
    mixed[:, 6] = np.round(mixed[:, 6], 1)
    codes = {"aligned": aligned, "rotated": aligned @ _haar_orthogonal(7, seed=7), "mixed": mixed}
    return V, codes


@pytest.mark.parametrize("code", ["aligned", "rotated", "mixed"])
def test_mig_agrees_with_a_loop_over_mutual_info_score(code):
    V, codes = _mixed_codes()
    expected, mi = _reference_mig(codes[code], V)
    result = dis.mig(codes[code], V)
    np.testing.assert_allclose(result["mutual_information"], mi, rtol=1e-9, atol=1e-12)
    assert result["mig"] == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("regressor", ["extra_trees", "random_forest", "lasso"])
def test_dci_agrees_with_refit_regressors_and_explicit_entropies(regressor):
    V, codes = _mixed_codes()
    Z = codes["mixed"]
    train, test = slice(0, 600), slice(600, None)
    result = dis.dci(Z[train], V[train], Z[test], V[test], random_state=0, regressor=regressor)
    R, r2 = _reference_importance(Z[train], V[train], Z[test], V[test], regressor)
    np.testing.assert_allclose(result["importance"], R, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result["factor_informativeness"], r2, rtol=1e-9, atol=1e-12)
    disentanglement, completeness = _reference_dci(result["importance"])
    assert result["disentanglement"] == pytest.approx(disentanglement, rel=1e-9, abs=1e-12)
    assert result["completeness"] == pytest.approx(completeness, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("code", ["aligned", "rotated", "mixed"])
def test_sap_agrees_with_loops_over_lines_cuts_and_trees(code):
    V, codes = _mixed_codes()
    Z = codes[code]
    train, test = slice(0, 600), slice(600, None)
    # Factor 0 (3 values) as categorical: the tree; factors 1-4 continuous (more than 2 values);
    # the binary attribute: the cut.
    continuous = [False, True, True, True, True, False]
    expected, S = _reference_sap(Z[train], V[train], Z[test], V[test], continuous)
    result = dis.sap(Z[train], V[train], Z[test], V[test], continuous=continuous)
    np.testing.assert_allclose(result["scores"], S, rtol=1e-9, atol=1e-12)
    assert result["sap"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    default = dis.sap(Z[train], V[train], Z[test], V[test])
    np.testing.assert_array_equal(default["continuous"], [True, True, True, True, True, False])


def test_dci_of_degenerate_importance_matrices_is_as_documented():
    one_factor = dis.dci_from_importance(np.array([[0.2], [0.0], [0.8]]))
    assert one_factor["disentanglement"] == 1.0
    assert one_factor["completeness"] == pytest.approx(_reference_dci(np.array([[0.2], [0.0], [0.8]]))[1])
    one_dimension = dis.dci_from_importance(np.array([[0.5, 0.0, 0.5]]))
    np.testing.assert_array_equal(one_dimension["factor_completeness"], [1.0, 0.0, 1.0])
    assert one_dimension["disentanglement"] == pytest.approx(1 - math.log(2) / math.log(3))
    nothing = dis.dci_from_importance(np.zeros((3, 2)))
    assert nothing["disentanglement"] == 0.0 and nothing["completeness"] == 0.0


def test_against_disent_where_it_is_installed():
    """disent (MIT; not in requirements.txt) on the same codes: its MIG discretises and estimates
    as ours; its DCI entropies add 1e-11 to every importance (so agreement to ~1e-8, not 1e-12)
    and weigh completeness by factor importance (equal here: forest importances sum to 1 per
    factor); its SAP on continuous factors is the same r². Importing its metrics needs torch,
    torchvision, lightning and h5py."""
    pytest.importorskip("disent.metrics")
    from disent.metrics._dci import _completeness, _disentanglement
    from disent.metrics._mig import _compute_mig
    from disent.metrics._sap import _compute_sap

    V, codes = _mixed_codes()
    train, test = slice(0, 600), slice(600, None)
    for Z in codes.values():
        theirs = _compute_mig(Z.T, V.T)["mig.discrete_score"]
        assert dis.mig(Z, V)["mig"] == pytest.approx(theirs, rel=1e-9, abs=1e-12)
        ours = dis.dci(Z[train], V[train], Z[test], V[test], random_state=0)
        assert ours["disentanglement"] == pytest.approx(_disentanglement(ours["importance"]), abs=1e-8)
        assert ours["completeness"] == pytest.approx(_completeness(ours["importance"]), abs=1e-8)
        theirs = _compute_sap(Z[train].T, V[train].T, Z[test].T, V[test].T, continuous_factors=True)["sap.score"]
        ours = dis.sap(Z[train], V[train], Z[test], V[test], continuous=[True] * V.shape[1])["sap"]
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


# --- bad input ------------------------------------------------------------------------------

def test_a_factor_with_one_value_is_refused_by_name():
    V = _grid()[np.random.default_rng(0).choice(2880, size=200, replace=False)]
    Z = _aligned(V, seed=0)
    V[:, 2] = 1
    names = ["shape", "scale", "Bald", "x", "y"]
    for call in (lambda: dis.mig(Z, V, names=names),
                 lambda: dis.mutual_information(Z, V, names=names),
                 lambda: dis.dci(Z, V, Z, V, random_state=0, names=names),
                 lambda: dis.sap(Z, V, Z, V, names=names)):
        with pytest.raises(ValueError, match="'Bald' takes one value only"):
            call()
    with pytest.raises(ValueError, match="'factor 2' takes one value only"):
        dis.factor_entropy(V)


def test_mismatched_shapes_are_refused_naming_both():
    Z, V = np.zeros((10, 3)), np.tile([[0, 1], [1, 0]], (5, 1))
    with pytest.raises(ValueError, match=r"\(9, 3\).*\(10, 2\)"):
        dis.mig(Z[:9], V)
    with pytest.raises(ValueError, match=r"Z_test of shape \(10, 3\) and V_test of shape \(8, 2\)"):
        dis.dci(Z, V, Z, V[:8], random_state=0)
    with pytest.raises(ValueError, match=r"same dimensions; got shapes \(10, 3\) and \(10, 2\)"):
        dis.sap(Z, V, Z[:, :2], V)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        dis.mig(Z[:, :1], V)
    with pytest.raises(ValueError, match="integer factor values"):
        dis.mig(Z, V.astype(float))
