"""Which latent directions and dimensions carry which attribute.

Every function takes latents Z of shape (n_samples, d), float, and an attribute's values y of
shape (n_samples,), integers (a binary attribute 0/1, a class, or a factor's level), and computes
in float64:

- `probe`: a cross-validated linear probe (logistic regression on standardised latents): balanced
  accuracy and ROC AUC (one-vs-rest, macro, for more than two values) on held-out folds.
- `directions`: the attribute's direction in latent space, two ways: the difference of class means
  (mean with - mean without; for an ordered attribute, highest level - lowest level) and the
  probe's normal (the logistic regression's weights for a binary attribute, a ridge regression's
  for an ordered one), both in latent units (weights on standardised latents divided by each
  dimension's std). Equal directions say the mean shift is what a linear read-out uses; a large
  angle says the classes differ along some direction that the read-out discounts (e.g. one of
  large within-class variance). A categorical attribute of more than two unordered values (a class
  such as T-shirt vs Sneaker vs Bag) has no single direction: it gets none.
- `dimension_scores`: per latent dimension, the mutual information with the attribute (the
  dimension binned into equal-width bins, `disentanglement.mutual_information`) and the
  |correlation| (|Pearson r| for binary and ordered attributes; the correlation ratio eta for
  unordered ones: the share of the dimension's std explained by the attribute's means).
- `angle`: the angle in degrees between two directions (0..180; near 90 = unrelated).

All are invariant to translating Z; the probe and the mean difference are not rotation-invariant
in their coordinates, but their angles are (both rotate with Z).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

# Room for lbfgs to converge (scikit-learn's default is 100 iterations), as compare's probes.
PROBE_MAX_ITER = 1000


def check_attribute(values: np.ndarray, name: str, key: str) -> np.ndarray:
    """The values of attribute `name` as int64; an attribute with a single value (nothing to
    probe or score) is a ValueError naming it and `key` (the config key that selected it)."""
    values = np.asarray(values).astype(np.int64)
    if len(np.unique(values)) < 2:
        raise ValueError(f"{key}: attribute {name!r} has a single value ({int(values[0]) if len(values) else 'none'}) "
                         f"on the {len(values)} samples analysed; nothing to probe or score (leave it out)")
    return values


def _standardise(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z standardised per dimension, and each dimension's std (a constant dimension: std 1)."""
    Z = np.asarray(Z, np.float64)
    std = Z.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (Z - Z.mean(axis=0)) / std, std


def _logistic(random_state: int) -> LogisticRegression:
    return LogisticRegression(max_iter=PROBE_MAX_ITER, random_state=random_state)


def probe(Z: np.ndarray, y: np.ndarray, cv_folds: int, random_state: int = 0) -> dict[str, float]:
    """Cross-validated linear probe of attribute values `y` from latents `Z`.

    Folds are stratified and shuffled with `random_state` (at most `cv_folds`, no more than the
    rarest value has samples). The scaler is fitted inside each fold. Returns balanced_accuracy,
    roc_auc and their stds over folds, `n_folds`, `positive_rate` (the share of the most common
    value: a constant guess's accuracy)."""
    y = np.asarray(y, np.int64)
    counts = np.unique(y, return_counts=True)[1]
    n_folds = max(2, min(int(cv_folds), int(counts.min())))
    if counts.min() < 2:
        raise ValueError(f"a probe needs at least 2 samples of every value; the rarest has {int(counts.min())}")
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    accuracy, auc = [], []
    Z = np.asarray(Z, np.float64)
    for train, test in folds.split(Z, y):
        scaler = StandardScaler().fit(Z[train])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = _logistic(random_state).fit(scaler.transform(Z[train]), y[train])
        Zt = scaler.transform(Z[test])
        accuracy.append(balanced_accuracy_score(y[test], clf.predict(Zt)))
        if len(clf.classes_) == 2:
            auc.append(roc_auc_score(y[test], clf.decision_function(Zt)))
        else:
            auc.append(roc_auc_score(y[test], clf.predict_proba(Zt), multi_class="ovr", average="macro",
                                     labels=clf.classes_))
    return {"balanced_accuracy": float(np.mean(accuracy)), "balanced_accuracy_std": float(np.std(accuracy)),
            "roc_auc": float(np.mean(auc)), "roc_auc_std": float(np.std(auc)), "n_folds": n_folds,
            "majority_share": float(counts.max() / counts.sum())}


def directions(Z: np.ndarray, y: np.ndarray, random_state: int = 0) -> dict[str, np.ndarray]:
    """The attribute's directions (each (d,), not normalised) for a binary or ordered attribute:
    `mean_difference` (mean of the highest value - mean of the lowest) and `probe_normal` (a
    logistic regression's weights for two values, a ridge regression's of the value for more,
    on standardised latents, divided by each dimension's std: the normal in latent units)."""
    Z = np.asarray(Z, np.float64)
    y = np.asarray(y, np.int64)
    low, high = y.min(), y.max()
    mean_difference = Z[y == high].mean(axis=0) - Z[y == low].mean(axis=0)
    Zs, std = _standardise(Z)
    if len(np.unique(y)) == 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            w = _logistic(random_state).fit(Zs, (y == high).astype(int)).coef_[0]
    else:
        w = Ridge(alpha=1.0).fit(Zs, y.astype(np.float64)).coef_
    return {"mean_difference": mean_difference, "probe_normal": w / std}


def angle(u: np.ndarray, v: np.ndarray) -> float:
    """Angle in degrees between vectors u and v (NaN when either is zero)."""
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))))


def dimension_scores(Z: np.ndarray, y: np.ndarray, ordered: bool, n_bins: int) -> pd.DataFrame:
    """Per latent dimension: `mutual_information` (nats) with the attribute, and `abs_correlation`
    (|Pearson r| when `ordered` or binary; else the correlation ratio eta), and their `rank` by
    mutual information (1 = highest; ties by |correlation|, then dimension)."""
    from latent_atlas.attributes.disentanglement import mutual_information

    Z = np.asarray(Z, np.float64)
    y = np.asarray(y, np.int64)
    mi = mutual_information(Z, y[:, None], n_bins=n_bins)[:, 0]
    centred = Z - Z.mean(axis=0)
    total = np.sqrt((centred ** 2).sum(axis=0))
    if ordered or len(np.unique(y)) == 2:
        yc = y - y.mean()
        corr = np.abs(centred.T @ yc) / np.where(total > 0, total * np.sqrt((yc ** 2).sum()), np.inf)
    else:
        levels, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        means = np.zeros((len(levels), Z.shape[1]))
        np.add.at(means, inverse, centred)
        means /= counts[:, None]
        between = np.sqrt((counts[:, None] * means ** 2).sum(axis=0))
        corr = between / np.where(total > 0, total, np.inf)
    order = np.lexsort((np.arange(len(mi)), -corr, -mi))
    rank = np.empty(len(mi), np.int64)
    rank[order] = np.arange(1, len(mi) + 1)
    return pd.DataFrame({"dim": np.arange(Z.shape[1]), "mutual_information": mi, "abs_correlation": corr,
                         "rank": rank})


def is_ordered(levels: Sequence | None, origin: str, n_values: int) -> bool:
    """Whether an attribute's values have an order a direction can follow: two values always; more
    only for numeric levels (a generator's scale, rotation, position; a user's integer column),
    not for named categories (a class, a shape)."""
    if n_values <= 2:
        return True
    if origin == "class":
        return False
    return levels is None or all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels)
