"""Ridge maps: each axis of a t-SNE or UMAP map as a linear function of the features, with its
out-of-fold R², the coefficients per feature and the out-of-fold predictions."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from latent_atlas.explain.features import magnitude_rank


def ridge_maps(X: np.ndarray, coords: Mapping[str, np.ndarray], columns: Sequence[str], *,
               alphas: Sequence[float], n_folds: int, methods: Sequence[str] = ("tsne", "umap"),
               random_state: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A ridge regression per map axis from the standardised features.

    For each method and axis (x, y): RidgeCV (alpha picked from `alphas` by efficient
    leave-one-out) after standardising the features. R² is computed on out-of-fold predictions
    of a shuffled, seeded K-fold; coefficients come from the fit on all samples, in map units per
    standard deviation of the feature, so they compare across features.

    Returns
    -------
    scores : method, axis, r2, r2_fold_mean, r2_fold_std, alpha, n_samples
    coefficients : method, axis, feature, coefficient, rank (1 = largest |coefficient|)
    predictions : method, axis, row, actual, predicted (out-of-fold)
    """
    X = np.asarray(X, np.float64)
    folds = KFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    scores, coefs, preds = [], [], []
    for method in methods:
        Y = np.asarray(coords[method], np.float64)
        for a, axis in enumerate(("x", "y")):
            y = Y[:, a]
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=list(alphas)))
            oof = cross_val_predict(model, X, y, cv=folds)
            per_fold = [r2_score(y[test], oof[test]) for _, test in folds.split(X)]
            model.fit(X, y)
            ridge = model[-1]
            scores.append({"method": method, "axis": axis, "r2": r2_score(y, oof),
                           "r2_fold_mean": float(np.mean(per_fold)), "r2_fold_std": float(np.std(per_fold)),
                           "alpha": float(ridge.alpha_), "n_samples": len(X)})
            c = np.asarray(ridge.coef_, np.float64)
            coefs.append(pd.DataFrame({"method": method, "axis": axis, "feature": list(columns),
                                       "coefficient": c, "rank": magnitude_rank(c)}))
            preds.append(pd.DataFrame({"method": method, "axis": axis, "row": np.arange(len(y), dtype=np.int32),
                                       "actual": y.astype(np.float32), "predicted": oof.astype(np.float32)}))
    return pd.DataFrame(scores), pd.concat(coefs, ignore_index=True), pd.concat(preds, ignore_index=True)
