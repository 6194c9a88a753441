"""Explaining 2-D maps of learned features: PCA vs t-SNE vs UMAP, in numbers and in pictures.

Reproduces a walkthrough that took a CNN classifier's 128-D penultimate features and asked what
a 2-D map of them means, and runs the same analyses on autoencoder latents:

1. the same samples mapped by PCA, t-SNE (openTSNE) and UMAP (`embed_maps`);
2. how faithful each map is: trustworthiness, continuity and k-NN class accuracy in 2-D against
   the full feature space (`map_quality`);
3. the feature correlation matrix in clustered order and the share of dead or near-constant
   features (`feature_stats`, `clustered_correlation`);
4. a ridge regression from the features to each map axis (`ridge_maps`);
5. PCA loadings, scree and cumulative variance (`pca_tables`);
6. per-cluster feature profiles on the UMAP map (`cluster_assignments`, `cluster_profiles`);
7. one sample end to end: its input, first-layer activations, feature vector, placement in every
   map (`place_samples`) and its PCA coordinates split into per-feature contributions
   (`pca_contributions`).

Computing functions take arrays and return data frames (the pipeline writes them to Parquet);
the `plot_*` functions draw figures from those frames only, so a figure can be redrawn without
recomputing. Projections come from `latent_atlas.projections`, shared with the geometry stage.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform
from sklearn.cluster import KMeans
from sklearn.linear_model import RidgeCV
from sklearn.manifold import trustworthiness as _sk_trustworthiness
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import projections
from .io import read_npz, read_parquet, write_npz, write_parquet
from .latents import class_names_of, latent_columns

METHODS = ("pca", "tsne", "umap")
METHOD_TITLES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
ID_COLUMNS = ["sample_id", "split", "label", "label_name"]


# --------------------------------------------------------------------------------------------
# Which samples
# --------------------------------------------------------------------------------------------

def split_rows(df: pd.DataFrame, split: str) -> pd.DataFrame:
    """Rows of `split` ('train', 'test' or 'all'), in the table's order."""
    if split == "all":
        return df
    rows = df[df["split"] == split]
    if rows.empty:
        raise ValueError(f"explain.split: no rows with split {split!r} (have {sorted(df['split'].unique())})")
    return rows


def default_sample_ids(df: pd.DataFrame, n: int = 2, split: str = "test") -> list[int]:
    """The first sample of `split`, then the first of each next new class, until `n` ids.

    With the default n=2 this is the first test sample and the first test sample of a different
    class: the walkthrough's pair of samples of different classes.
    """
    rows = split_rows(df, split)
    ids, seen = [], set()
    for sid, label in zip(rows["sample_id"].to_numpy(), rows["label"].to_numpy()):
        if label not in seen:
            ids.append(int(sid))
            seen.add(label)
        if len(ids) == n:
            break
    return ids


def explained_sample_ids(df: pd.DataFrame, sample_ids: Sequence[int] | None, split: str = "test") -> list[int]:
    """Configured sample ids (checked to exist) or, when none are given, `default_sample_ids`."""
    if not sample_ids:
        return default_sample_ids(df, 2, split)
    known = set(df["sample_id"].to_numpy().tolist())
    missing = [int(s) for s in sample_ids if int(s) not in known]
    if missing:
        raise ValueError(f"explain.samples.ids: sample ids {missing} are not in the latents table")
    return [int(s) for s in sample_ids]


def map_subset(df: pd.DataFrame, split: str, n_samples: int, exclude: Sequence[int] = (),
               random_state: int = 0) -> pd.DataFrame:
    """The samples every map is fitted on: at most `n_samples` rows of `split`, seeded.

    The explained samples (`exclude`) are left out so that their placement in each map is a true
    out-of-sample `transform`, as it would be for a new input. Returns rows sorted by position.
    """
    rows = split_rows(df, split)
    rows = rows[~rows["sample_id"].isin(list(exclude))]
    if len(rows) < 10:
        raise ValueError(f"explain: only {len(rows)} samples of split {split!r} to map; need at least 10")
    idx = projections.subsample_indices(len(rows), min(n_samples, len(rows)), random_state)
    return rows.iloc[np.asarray(idx)].reset_index(drop=True)


def rows_by_id(df: pd.DataFrame, sample_ids: Sequence[int]) -> pd.DataFrame:
    """Rows of `df` for `sample_ids`, in that order."""
    indexed = df.set_index("sample_id", drop=False)
    return indexed.loc[list(sample_ids)].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# 1. The maps, and where new samples land in them
# --------------------------------------------------------------------------------------------

def embed_maps(X: np.ndarray, *, tsne: Mapping[str, Any], umap: Mapping[str, Any],
               random_state: int = 0, n_jobs: int = 1) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit PCA, t-SNE and UMAP on the same samples.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    tsne, umap : keyword arguments of `projections.tsne_fit` / `projections.umap_fit`.

    Returns
    -------
    coords : dict method -> ndarray of shape (n_samples, 2), float64
        PCA coordinates are the first two principal components of the full PCA.
    models : dict method -> fitted model (sklearn PCA with every component, openTSNE
        TSNEEmbedding, umap.UMAP); each has `transform` for new samples.
    """
    X = np.asarray(X, dtype=np.float64)
    pca = projections.pca_fit(X, n_components=None, random_state=random_state)
    tsne_model = projections.tsne_fit(X, random_state=random_state, n_jobs=n_jobs, **tsne)
    umap_model = projections.umap_fit(X, random_state=random_state, **umap)
    coords = {
        "pca": pca.transform(X)[:, :2],
        "tsne": np.array(tsne_model, dtype=np.float64),
        "umap": np.array(umap_model.embedding_, dtype=np.float64),
    }
    return coords, {"pca": pca, "tsne": tsne_model, "umap": umap_model}


def place_samples(models: Mapping[str, Any], X_new: np.ndarray) -> dict[str, np.ndarray]:
    """Where new samples land in each fitted map (PCA projection, openTSNE and UMAP `transform`).

    X_new : ndarray of shape (n_new, n_features). Returns method -> ndarray (n_new, 2).
    """
    X_new = np.asarray(X_new, dtype=np.float64)
    return {
        "pca": models["pca"].transform(X_new)[:, :2],
        "tsne": np.asarray(models["tsne"].transform(X_new), dtype=np.float64),
        "umap": np.asarray(models["umap"].transform(X_new), dtype=np.float64),
    }


def coords_table(ids: pd.DataFrame, coords: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Long table: the id columns of `ids` repeated per method, with `method`, `x`, `y` (float32)."""
    parts = []
    for method in METHODS:
        xy = np.asarray(coords[method])
        if xy.shape != (len(ids), 2):
            raise ValueError(f"{method} coordinates have shape {xy.shape}, expected ({len(ids)}, 2)")
        part = ids[ID_COLUMNS].reset_index(drop=True).copy()
        part.insert(0, "method", method)
        part["x"] = xy[:, 0].astype(np.float32)
        part["y"] = xy[:, 1].astype(np.float32)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def coords_of(table: pd.DataFrame, method: str) -> np.ndarray:
    """(n, 2) coordinates of one method from a `coords_table`, in row order."""
    rows = table[table["method"] == method]
    if rows.empty:
        raise ValueError(f"no coordinates for method {method!r} (have {sorted(table['method'].unique())})")
    return rows[["x", "y"]].to_numpy(dtype=np.float64)


# --------------------------------------------------------------------------------------------
# 2. How good is each map, in numbers
# --------------------------------------------------------------------------------------------

def trustworthiness(X: np.ndarray, Y: np.ndarray, k: int = 10) -> float:
    """How far the k nearest neighbours in the map `Y` are true neighbours in `X` (1 = all are).

    X : ndarray (n_samples, n_features), the original space; Y : ndarray (n_samples, 2).
    Penalises points that are near in the map but far in the original space (sklearn's measure).
    """
    _check_k(len(X), k)
    return float(_sk_trustworthiness(np.asarray(X, np.float64), np.asarray(Y, np.float64), n_neighbors=k))


def continuity(X: np.ndarray, Y: np.ndarray, k: int = 10) -> float:
    """How far true k nearest neighbours in `X` stay neighbours in the map `Y` (1 = all do).

    Trustworthiness with the roles of the two spaces swapped: it penalises points that are near
    in the original space but torn apart in the map.
    """
    return trustworthiness(Y, X, k)


def _check_k(n: int, k: int) -> None:
    if not 1 <= k < n / 2:
        raise ValueError(f"explain.quality.k: need 1 <= k < n_samples / 2 = {n / 2:g}, got {k}")


def knn_accuracy(X: np.ndarray, labels: np.ndarray, k: int = 10, n_folds: int = 5,
                 random_state: int = 0) -> tuple[float, float]:
    """Cross-validated accuracy of a k-NN classifier of the class labels on `X`.

    X : ndarray (n_samples, n_dims); labels : ndarray (n_samples,). Folds are stratified and
    shuffled with `random_state`. Returns (mean, std) over the folds.
    """
    folds = StratifiedKFold(n_splits=_n_folds(labels, n_folds), shuffle=True, random_state=random_state)
    scores = cross_val_score(KNeighborsClassifier(n_neighbors=k), np.asarray(X, np.float64), labels, cv=folds)
    return float(scores.mean()), float(scores.std())


def _n_folds(labels: np.ndarray, n_folds: int) -> int:
    """At most `n_folds`, but no more than the smallest class has members (at least 2)."""
    counts = np.unique(labels, return_counts=True)[1]
    smallest = int(counts.min()) if len(counts) else 0
    if smallest < 2:
        raise ValueError("explain.quality: k-NN accuracy needs at least 2 samples of every class in the map subset")
    return max(2, min(n_folds, smallest))


def map_quality(X: np.ndarray, coords: Mapping[str, np.ndarray], labels: np.ndarray, *, k: int = 10,
                knn_k: int = 10, n_folds: int = 5, random_state: int = 0) -> pd.DataFrame:
    """Trustworthiness, continuity and k-NN accuracy of every map, and k-NN accuracy in full space.

    Returns one row per space (`full`, then each method): space, dims, k, trustworthiness,
    continuity (NaN for `full`), knn_k, knn_accuracy, knn_accuracy_std, n_samples.
    """
    X = np.asarray(X, np.float64)
    rows = []
    acc, sd = knn_accuracy(X, labels, knn_k, n_folds, random_state)
    rows.append({"space": "full", "dims": X.shape[1], "k": k, "trustworthiness": np.nan,
                 "continuity": np.nan, "knn_k": knn_k, "knn_accuracy": acc, "knn_accuracy_std": sd})
    for method in METHODS:
        Y = np.asarray(coords[method], np.float64)
        acc, sd = knn_accuracy(Y, labels, knn_k, n_folds, random_state)
        rows.append({"space": method, "dims": Y.shape[1], "k": k,
                     "trustworthiness": trustworthiness(X, Y, k), "continuity": continuity(X, Y, k),
                     "knn_k": knn_k, "knn_accuracy": acc, "knn_accuracy_std": sd})
    out = pd.DataFrame(rows)
    out["n_samples"] = len(X)
    return out


# --------------------------------------------------------------------------------------------
# 3. Feature correlations, dead and near-constant features
# --------------------------------------------------------------------------------------------

def feature_stats(X: np.ndarray, columns: Sequence[str], near_constant: float = 0.01) -> pd.DataFrame:
    """Per feature: mean, std, share of samples where it is non-zero, dead / near-constant flags.

    A feature is *dead* when it is zero on every sample (a ReLU unit that never fires), and
    *near-constant* when its standard deviation is below `near_constant` times the largest
    feature standard deviation (dead features are near-constant too). Also returns `order`, the
    feature's position in the clustered order of `clustered_correlation`.
    """
    X = np.asarray(X, np.float64)
    std = X.std(axis=0)
    top = std.max() if std.size and std.max() > 0 else 1.0
    out = pd.DataFrame({
        "feature": list(columns),
        "mean": X.mean(axis=0),
        "std": std,
        "active_fraction": (np.abs(X) > 0).mean(axis=0),
        "dead": ~(np.abs(X) > 0).any(axis=0),
        "near_constant": std < near_constant * top,
    })
    out["order"] = np.argsort(correlation_order(X))
    return out


def correlation_matrix(X: np.ndarray) -> np.ndarray:
    """(n_features, n_features) Pearson correlation; NaN in rows/columns of constant features."""
    X = np.asarray(X, np.float64)
    Xc = X - X.mean(axis=0)
    norm = np.sqrt((Xc ** 2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (Xc.T @ Xc) / np.outer(norm, norm)
    r[np.outer(norm == 0, norm == 0) & np.eye(len(norm), dtype=bool)] = np.nan
    return np.clip(r, -1.0, 1.0)


def correlation_order(X: np.ndarray) -> np.ndarray:
    """Feature indices in hierarchical-clustering order (average linkage on 1 - |r|).

    Constant features (undefined correlation) count as uncorrelated with everything and end up
    together. The order is made deterministic by scipy's optimal leaf ordering.
    """
    r = correlation_matrix(X)
    n = r.shape[0]
    if n < 3:
        return np.arange(n)
    d = 1.0 - np.abs(np.nan_to_num(r, nan=0.0))
    np.fill_diagonal(d, 0.0)
    d = (d + d.T) / 2
    z = linkage(squareform(np.clip(d, 0.0, None), checks=False), method="average", optimal_ordering=True)
    return leaves_list(z)


def clustered_correlation(X: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
    """Long table of the correlation matrix in clustered order: feature_a, feature_b, i, j, r.

    `i`, `j` are positions in the clustered order (row, column of the drawn matrix).
    """
    order = correlation_order(X)
    r = correlation_matrix(X)[np.ix_(order, order)]
    names = np.asarray(columns)[order]
    n = len(order)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return pd.DataFrame({"feature_a": names[i.ravel()], "feature_b": names[j.ravel()],
                         "i": i.ravel().astype(np.int32), "j": j.ravel().astype(np.int32),
                         "r": r.ravel().astype(np.float32)})


# --------------------------------------------------------------------------------------------
# 4. Ridge maps: the map axes as linear functions of the features
# --------------------------------------------------------------------------------------------

def ridge_maps(X: np.ndarray, coords: Mapping[str, np.ndarray], columns: Sequence[str], *,
               methods: Sequence[str] = ("tsne", "umap"), alphas: Sequence[float] = (0.1, 1, 10, 100, 1000),
               n_folds: int = 5, random_state: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
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
            rank = np.empty(len(c), dtype=np.int32)
            rank[np.argsort(-np.abs(c), kind="stable")] = np.arange(1, len(c) + 1)
            coefs.append(pd.DataFrame({"method": method, "axis": axis, "feature": list(columns),
                                       "coefficient": c, "rank": rank}))
            preds.append(pd.DataFrame({"method": method, "axis": axis, "row": np.arange(len(y), dtype=np.int32),
                                       "actual": y.astype(np.float32), "predicted": oof.astype(np.float32)}))
    return pd.DataFrame(scores), pd.concat(coefs, ignore_index=True), pd.concat(preds, ignore_index=True)


# --------------------------------------------------------------------------------------------
# 5. PCA: scree, loadings, and a sample's coordinates as per-feature contributions
# --------------------------------------------------------------------------------------------

def pca_tables(pca, columns: Sequence[str], n_components: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scree and loadings of a fitted sklearn PCA.

    Returns
    -------
    scree : component (1-based), explained_variance, explained_variance_ratio, cumulative
    loadings : component (1-based, first `n_components`), feature, loading (the unit-length
        principal axis entry, so a sample's coordinate is sum_i (x_i - mean_i) * loading_i),
        mean (the feature's mean, the centre of the projection)
    """
    ratio = np.asarray(pca.explained_variance_ratio_, np.float64)
    scree = pd.DataFrame({"component": np.arange(1, len(ratio) + 1, dtype=np.int32),
                          "explained_variance": np.asarray(pca.explained_variance_, np.float64),
                          "explained_variance_ratio": ratio, "cumulative": np.cumsum(ratio)})
    m = min(n_components, pca.components_.shape[0])
    loadings = pd.DataFrame({
        "component": np.repeat(np.arange(1, m + 1, dtype=np.int32), len(columns)),
        "feature": list(columns) * m,
        "loading": pca.components_[:m].ravel(),
        "mean": np.tile(pca.mean_, m),
    })
    return scree, loadings


def variance_at(scree: pd.DataFrame, n_components: int) -> float:
    """Cumulative explained variance ratio of the first `n_components` (all, if fewer exist)."""
    cum = scree.sort_values("component")["cumulative"].to_numpy()
    return float(cum[min(n_components, len(cum)) - 1])


def pca_contributions(x: np.ndarray, pca, columns: Sequence[str], components: Sequence[int] = (1, 2)) -> pd.DataFrame:
    """One sample's PCA coordinates split into per-feature contributions.

    x : ndarray (n_features,). For component c (1-based): contribution_i = (x_i - mean_i) *
    loading_ci, and the contributions sum to the sample's coordinate on c. Returns component,
    feature, value, mean, loading, contribution, rank (1 = largest |contribution|).
    """
    x = np.asarray(x, np.float64).ravel()
    if x.shape[0] != pca.mean_.shape[0]:
        raise ValueError(f"sample has {x.shape[0]} features, the PCA was fitted on {pca.mean_.shape[0]}")
    parts = []
    for c in components:
        load = pca.components_[c - 1]
        contrib = (x - pca.mean_) * load
        rank = np.empty(len(contrib), dtype=np.int32)
        rank[np.argsort(-np.abs(contrib), kind="stable")] = np.arange(1, len(contrib) + 1)
        parts.append(pd.DataFrame({"component": np.int32(c), "feature": list(columns), "value": x,
                                   "mean": pca.mean_, "loading": load, "contribution": contrib, "rank": rank}))
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------------
# 6. UMAP feature view: what each cluster of the map turns on
# --------------------------------------------------------------------------------------------

def cluster_assignments(labels: np.ndarray, label_names: Sequence[str], umap_coords: np.ndarray, *,
                        method: str = "class", n_clusters: int | None = None,
                        random_state: int = 0) -> tuple[np.ndarray, list[str]]:
    """Clusters of the UMAP map: the classes (`class`), or k-means on the 2-D coordinates.

    labels : ndarray (n,) of class indices with names `label_names` (indexed by label).
    With `kmeans`, `n_clusters` defaults to the number of classes present, clusters are numbered
    by the x coordinate of their centre (left to right), and each is named by its majority class.
    Returns (cluster index per sample, cluster names).
    """
    labels = np.asarray(labels)
    if method == "class":
        present = np.unique(labels)
        remap = {c: i for i, c in enumerate(present)}
        return np.array([remap[c] for c in labels]), [str(label_names[c]) for c in present]
    if method != "kmeans":
        raise ValueError(f"explain.clusters.method: expected 'class' or 'kmeans', got {method!r}")
    k = int(n_clusters or len(np.unique(labels)))
    km = KMeans(n_clusters=k, n_init=10, random_state=random_state).fit(np.asarray(umap_coords, np.float64))
    order = np.argsort(km.cluster_centers_[:, 0], kind="stable")
    relabel = np.empty(k, dtype=int)
    relabel[order] = np.arange(k)
    clusters = relabel[km.labels_]
    names = []
    for c in range(k):
        members = labels[clusters == c]
        majority = np.bincount(members).argmax()
        names.append(f"#{c} {label_names[majority]} ({np.mean(members == majority):.0%})")
    return clusters, names


def cluster_profiles(X: np.ndarray, columns: Sequence[str], clusters: np.ndarray,
                     cluster_names: Sequence[str]) -> pd.DataFrame:
    """Per-cluster mean feature profile, standardised against all samples.

    X : ndarray (n, d); clusters : ndarray (n,) in 0..len(cluster_names)-1. Returns cluster,
    cluster_name, size, feature, mean, z ((cluster mean - overall mean) / overall std; 0 for
    constant features), rank (1 = the cluster's largest |z|: the features it most sets apart),
    spread (std of the feature's z across clusters: how much it varies between clusters).
    """
    X = np.asarray(X, np.float64)
    mu, sd = X.mean(axis=0), X.std(axis=0)
    safe = np.where(sd > 0, sd, 1.0)
    parts = []
    for c, name in enumerate(cluster_names):
        members = clusters == c
        m = X[members].mean(axis=0) if members.any() else np.full(X.shape[1], np.nan)
        z = np.where(sd > 0, (m - mu) / safe, 0.0)
        rank = np.empty(len(z), dtype=np.int32)
        rank[np.argsort(-np.abs(z), kind="stable")] = np.arange(1, len(z) + 1)
        parts.append(pd.DataFrame({"cluster": np.int32(c), "cluster_name": name, "size": int(members.sum()),
                                   "feature": list(columns), "mean": m, "z": z, "rank": rank}))
    out = pd.concat(parts, ignore_index=True)
    spread = out.groupby("feature", sort=False)["z"].std(ddof=0)
    out["spread"] = out["feature"].map(spread).to_numpy()
    return out


# --------------------------------------------------------------------------------------------
# 7. One sample end to end: the input and the first layer's activations
# --------------------------------------------------------------------------------------------

_ACTIVATIONS = ("ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softplus", "Mish")


def first_layer_activations(model, x) -> tuple[np.ndarray, str]:
    """Activations of the model's first layer (after its nonlinearity) for a batch `x`.

    x : tensor (B, C, H, W) on the model's device. Conv models: the first Conv2d's feature maps,
    (B, channels, H', W'), kind 'conv'. Dense models: the first Linear layer's units, (B, units),
    kind 'dense'. The nonlinearity is the first activation module that follows the layer before
    the next Conv2d/Linear; a layer without one (e.g. a linear bottleneck) is returned as is.
    A model may provide `conv_feature_maps(x)` to override the search; a `convs` ModuleList
    (latent_atlas.models.CNNClassifier, which applies ReLU functionally) gives relu(convs[0](x)).
    """
    import torch

    with torch.no_grad():
        if hasattr(model, "conv_feature_maps"):
            return model.conv_feature_maps(x).detach().cpu().numpy(), "conv"
        convs = getattr(model, "convs", None)
        if isinstance(convs, torch.nn.ModuleList) and len(convs):
            # CNNClassifier: Conv2d layers in `convs`, each followed by a functional torch.relu.
            return torch.relu(convs[0](x)).detach().cpu().numpy(), "conv"
        modules = [m for m in model.modules() if not list(m.children())]
        first = next((i for i, m in enumerate(modules)
                      if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))), None)
        if first is None:
            raise ValueError(f"model {type(model).__name__} has no Conv2d or Linear layer")
        target = modules[first]
        for m in modules[first + 1:]:
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                break
            if type(m).__name__ in _ACTIVATIONS:
                target = m
                break
        kind = "conv" if isinstance(modules[first], torch.nn.Conv2d) else "dense"
        captured = {}
        handle = target.register_forward_hook(lambda _m, _i, out: captured.setdefault("out", out))
        try:
            _run_forward(model, x)
        finally:
            handle.remove()
        return captured["out"].detach().cpu().numpy(), kind


def _run_forward(model, x) -> None:
    """Run the part of the model that the first layer belongs to (encoder for autoencoders)."""
    if getattr(model, "kind", None) == "autoencoder" and hasattr(model, "encode"):
        model.encode(x)
    else:
        model(x)


def _value_cmap(values: np.ndarray) -> dict:
    """imshow colour settings: a sequential map for non-negative values, a centred one otherwise."""
    if np.min(values) >= 0:
        return {"cmap": "magma", "vmin": 0.0}
    lim = float(np.max(np.abs(values)))
    return {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim}


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) with rows * cols == n, as square as possible, rows <= cols (128 -> 8 x 16)."""
    rows = int(np.sqrt(n))
    while n % rows:
        rows -= 1
    return rows, n // rows


# --------------------------------------------------------------------------------------------
# Figures (drawn from the tables above only)
# --------------------------------------------------------------------------------------------

def _quality_text(q: pd.Series, full_acc: float) -> str:
    return (f"T={q['trustworthiness']:.3f}  C={q['continuity']:.3f}  (k={int(q['k'])})\n"
            f"{int(q['knn_k'])}-NN acc {q['knn_accuracy']:.3f} (full {full_acc:.3f})")


def plot_maps(maps: pd.DataFrame, quality: pd.DataFrame, class_names: Sequence[str], title: str = ""):
    """Side-by-side PCA, t-SNE and UMAP coloured by class, with each map's quality numbers."""
    import matplotlib.pyplot as plt

    from .plotting import scatter_by_class

    full_acc = float(quality.loc[quality["space"] == "full", "knn_accuracy"].iloc[0])
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    for ax, method in zip(axes, METHODS):
        rows = maps[maps["method"] == method]
        scatter_by_class(ax, rows[["x", "y"]].to_numpy(), rows["label"].to_numpy(), list(class_names),
                         legend=False)
        q = quality[quality["space"] == method].iloc[0]
        ax.set_title(METHOD_TITLES[method])
        ax.text(0.02, 0.98, _quality_text(q, full_acc), transform=ax.transAxes, va="top", fontsize=7,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1.5})
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
    axes[0].set_xlabel("PC1")
    axes[0].set_ylabel("PC2")
    handles, names = axes[-1].get_legend_handles_labels()
    fig.legend(handles, names, loc="center right", markerscale=4, fontsize=7, bbox_to_anchor=(1.0, 0.5))
    fig.subplots_adjust(right=0.88, wspace=0.05)
    fig.suptitle(f"{title}: {len(rows)} samples; T = trustworthiness, C = continuity" if title else None)
    return fig


def plot_correlation(corr: pd.DataFrame, stats: pd.DataFrame, title: str = ""):
    """The clustered feature correlation matrix, and each feature's std with dead ones marked."""
    import matplotlib.pyplot as plt

    n = int(corr["i"].max()) + 1
    r = np.full((n, n), np.nan)
    r[corr["i"].to_numpy(), corr["j"].to_numpy()] = corr["r"].to_numpy()
    fig, (ax, cax, ax2) = plt.subplots(1, 3, figsize=(12, 5), layout="constrained",
                                       gridspec_kw={"width_ratios": [1, 0.04, 1]})
    im = ax.imshow(r, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(im, cax=cax, label="Pearson r")
    fig.get_layout_engine().set(wspace=0.08)
    ax.set_title("feature correlation (clustered order; blank = constant)")
    ax.set_xlabel("feature (clustered order)")
    ax.set_ylabel("feature (clustered order)")
    s = stats.sort_values("order")
    colors = np.where(s["dead"], "tab:red", np.where(s["near_constant"], "tab:orange", "tab:gray"))
    ax2.bar(np.arange(len(s)), s["std"], color=colors, width=1.0)
    # dead features have zero height: mark them below the axis so they are seen
    flagged = s["near_constant"].to_numpy()
    ax2.scatter(np.flatnonzero(flagged), np.zeros(flagged.sum()), marker="|", s=60, clip_on=False,
                color=colors[flagged], zorder=3)
    ax2.set_xlabel("feature (clustered order)")
    ax2.set_ylabel("standard deviation")
    dead, near = s["dead"].mean(), s["near_constant"].mean()
    ax2.set_title(f"dead {dead:.1%} (red), near-constant {near:.1%} (red + orange) of {len(s)}", fontsize=9)
    fig.suptitle(title or None)
    return fig


def plot_ridge(scores: pd.DataFrame, coefs: pd.DataFrame, preds: pd.DataFrame, top: int = 12, title: str = ""):
    """Per map axis: the top ridge coefficients as bars, and predicted vs actual coordinates."""
    import matplotlib.pyplot as plt

    keys = list(scores[["method", "axis"]].itertuples(index=False, name=None))
    fig, axes = plt.subplots(2, len(keys), figsize=(3.2 * len(keys), 6.4), squeeze=False)
    for col, (method, axis) in enumerate(keys):
        s = scores[(scores["method"] == method) & (scores["axis"] == axis)].iloc[0]
        c = coefs[(coefs["method"] == method) & (coefs["axis"] == axis)].sort_values("rank").head(top)
        ax = axes[0, col]
        ax.barh(np.arange(len(c))[::-1], c["coefficient"],
                color=np.where(c["coefficient"] > 0, "tab:blue", "tab:red"))
        ax.set_yticks(np.arange(len(c))[::-1], c["feature"], fontsize=6)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_title(f"{METHOD_TITLES[method]} {axis}: CV R² = {s['r2']:.3f}")
        ax.set_xlabel("coefficient (per feature SD)")
        p = preds[(preds["method"] == method) & (preds["axis"] == axis)]
        ax = axes[1, col]
        ax.scatter(p["actual"], p["predicted"], s=2, color="tab:gray", linewidths=0, rasterized=len(p) > 5000)
        lo = float(min(p["actual"].min(), p["predicted"].min()))
        hi = float(max(p["actual"].max(), p["predicted"].max()))
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.7)
        ax.set_xlabel(f"actual {METHOD_TITLES[method]} {axis}")
        ax.set_ylabel("predicted (out of fold)")
        ax.set_title(f"alpha = {s['alpha']:g}", fontsize=8)
    fig.suptitle(f"{title}: ridge regression of each map axis from the features" if title else None)
    fig.tight_layout()
    return fig


def plot_pca(maps: pd.DataFrame, loadings: pd.DataFrame, scree: pd.DataFrame, class_names: Sequence[str],
             n_arrows: int = 8, title: str = ""):
    """Biplot (PC1/PC2 scatter with the largest-loading features as arrows) and scree."""
    import matplotlib.pyplot as plt

    from .plotting import scatter_by_class

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.2, 1]})
    rows = maps[maps["method"] == "pca"]
    xy = rows[["x", "y"]].to_numpy()
    scatter_by_class(ax, xy, rows["label"].to_numpy(), list(class_names), legend=True)
    ax.legend(markerscale=1.5, fontsize=6, loc="lower right", ncols=2)
    pc = loadings.pivot(index="feature", columns="component", values="loading")[[1, 2]]
    size = np.hypot(pc[1], pc[2])
    top = size.sort_values(ascending=False, kind="stable").head(n_arrows).index
    scale = 0.9 * np.abs(xy).max(axis=0).min() / max(float(size.max()), 1e-12)
    for feature in top:
        dx, dy = pc.loc[feature, 1] * scale, pc.loc[feature, 2] * scale
        ax.annotate("", xy=(dx, dy), xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": "k", "lw": 1.0})
        ax.text(dx * 1.08, dy * 1.08, feature, fontsize=7, ha="center", va="center",
                bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 0.5})
    ev = scree.sort_values("component")
    ax.set_xlabel(f"PC1 ({ev['explained_variance_ratio'].iloc[0]:.1%})")
    ax.set_ylabel(f"PC2 ({ev['explained_variance_ratio'].iloc[1]:.1%})" if len(ev) > 1 else "PC2")
    ax.set_title(f"biplot: the {len(top)} features with the largest PC1/PC2 loadings")
    n = min(len(ev), 30)
    ax2.bar(ev["component"][:n], ev["explained_variance_ratio"][:n], color="tab:blue", label="per component")
    ax2.plot(ev["component"][:n], ev["cumulative"][:n], color="k", marker=".", ms=3, label="cumulative")
    for m in (3, 10):
        if m <= len(ev):
            v = variance_at(ev, m)
            ax2.axvline(m, color="tab:gray", ls=":", lw=0.8)
            ax2.annotate(f"{m}: {v:.0%}", (m, v), xytext=(4, -12), textcoords="offset points", fontsize=8)
    ax2.set_ylim(0, 1.02)
    ax2.set_xlabel("component")
    ax2.set_ylabel("explained variance ratio")
    ax2.set_title("scree and cumulative variance")
    ax2.legend(loc="center right")
    fig.suptitle(title or None)
    fig.tight_layout()
    return fig


def plot_umap_features(maps: pd.DataFrame, profiles: pd.DataFrame, clusters: pd.DataFrame,
                       class_names: Sequence[str], top: int = 3, title: str = ""):
    """UMAP map with each cluster's top features written at its centre, and the z-profile heatmap.

    clusters : table with sample_id and cluster (the assignment used for `profiles`).
    """
    import matplotlib.pyplot as plt

    from .plotting import scatter_by_class

    rows = maps[maps["method"] == "umap"].merge(clusters[["sample_id", "cluster"]], on="sample_id")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1, 1.3]})
    scatter_by_class(ax, rows[["x", "y"]].to_numpy(), rows["label"].to_numpy(), list(class_names), legend=False)
    names = profiles.drop_duplicates("cluster").sort_values("cluster")
    for c, name in zip(names["cluster"], names["cluster_name"]):
        members = rows[rows["cluster"] == c]
        if members.empty:
            continue
        cx, cy = members["x"].median(), members["y"].median()
        best = profiles[(profiles["cluster"] == c)].sort_values("rank").head(top)
        text = f"{name}\n" + "\n".join(f"{f} {z:+.1f}" for f, z in zip(best["feature"], best["z"]))
        ax.text(cx, cy, text, fontsize=6, ha="center", va="center",
                bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1})
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"UMAP: clusters and their top {top} features (z)")
    spread = profiles.drop_duplicates("feature").sort_values("spread", ascending=False, kind="stable")
    feats = spread["feature"].head(40).tolist()
    z = profiles.pivot(index="cluster", columns="feature", values="z").loc[names["cluster"], feats]
    lim = max(float(np.nanmax(np.abs(z.to_numpy()))), 1e-6)
    im = ax2.imshow(z.to_numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax2.set_yticks(np.arange(len(names)), names["cluster_name"], fontsize=7)
    ax2.set_xticks(np.arange(len(feats)), feats, rotation=90, fontsize=6)
    ax2.set_title(f"per-cluster mean feature (z), the {len(feats)} features varying most across clusters")
    fig.colorbar(im, ax=ax2, fraction=0.03, pad=0.01, label="z")
    fig.suptitle(title or None)
    fig.tight_layout()
    return fig


def plot_samples(samples: Mapping[str, np.ndarray], placement: pd.DataFrame, maps: pd.DataFrame,
                 contributions: pd.DataFrame, class_names: Sequence[str], top: int = 8, max_maps: int = 16,
                 title: str = ""):
    """One row per explained sample: input, first-layer activations, features, placements, PCA parts.

    samples : the explain_sample arrays (sample_id, label, image (n, C, H, W), first_layer,
    first_layer_kind, features (n, d)). placement : coords_table of the samples; maps : the map
    samples (drawn in grey); contributions : `pca_contributions` rows with a sample_id column.
    """
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpecFromSubplotSpec

    from .plotting import class_colors

    ids = [int(s) for s in samples["sample_id"]]
    n = len(ids)
    fig = plt.figure(figsize=(22, 3.6 * n))
    outer = fig.add_gridspec(n, 8, width_ratios=[0.8, 1.6, 1.6, 0.9, 1.2, 1.2, 1.2, 1.6], wspace=0.35, hspace=0.45)
    colors = ["black", "tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange"]
    kind = str(samples["first_layer_kind"])
    class_rgba = class_colors(len(class_names))
    class_rgba[:, 3] = 0.25  # faint class colours behind the placed samples
    for r, sid in enumerate(ids):
        color = colors[r % len(colors)]
        label = class_names[int(samples["label"][r])]
        img = samples["image"][r]
        ax = fig.add_subplot(outer[r, 0])
        ax.imshow(img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0)), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"sample {sid}\nclass {label}", color=color)
        ax.axis("off")
        act = samples["first_layer"][r]
        if kind == "conv":
            maps_n = min(act.shape[0], max_maps)
            gr, gc = grid_shape(maps_n) if maps_n > 3 else (1, maps_n)
            inner = GridSpecFromSubplotSpec(gr, gc, subplot_spec=outer[r, 1], wspace=0.05, hspace=0.05)
            vmax = float(act[:maps_n].max()) or 1.0
            for k in range(maps_n):
                a = fig.add_subplot(inner[k // gc, k % gc])
                a.imshow(act[k], cmap="magma", vmin=0, vmax=vmax)
                a.axis("off")
                if k == gc // 2:
                    a.set_title(f"first conv layer: {maps_n} of {act.shape[0]} maps", fontsize=8)
        else:
            ax = fig.add_subplot(outer[r, 1])
            ax.imshow(act.reshape(grid_shape(act.size)), **_value_cmap(act))
            ax.set_title(f"first layer: {act.size} units", fontsize=8)
            ax.axis("off")
        feats = samples["features"][r]
        ax = fig.add_subplot(outer[r, 2])
        ax.bar(np.arange(len(feats)), feats, color=color, width=1.0 if len(feats) > 40 else 0.8)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"feature vector ({len(feats)}-D)", fontsize=8)
        ax.set_xlabel("feature")
        ax = fig.add_subplot(outer[r, 3])
        ax.imshow(feats.reshape(grid_shape(len(feats))), **_value_cmap(feats))
        ax.set_title("as an image", fontsize=8)
        ax.axis("off")
        for c, method in enumerate(METHODS):
            ax = fig.add_subplot(outer[r, 4 + c])
            bg = maps[maps["method"] == method]
            ax.scatter(bg["x"], bg["y"], s=2, c=class_rgba[bg["label"].to_numpy()], linewidths=0,
                       rasterized=len(bg) > 5000)
            for r2, sid2 in enumerate(ids):
                p = placement[(placement["method"] == method) & (placement["sample_id"] == sid2)].iloc[0]
                ax.scatter([p["x"]], [p["y"]], s=90 if r2 == r else 30, marker="*",
                           color=colors[r2 % len(colors)], edgecolors="k", linewidths=0.5, zorder=3,
                           alpha=1.0 if r2 == r else 0.5)
            ax.set_title(f"{METHOD_TITLES[method]} (transform)" if method != "pca" else "PCA", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        inner = GridSpecFromSubplotSpec(2, 1, subplot_spec=outer[r, 7], hspace=0.6)
        for c in (1, 2):
            part = contributions[(contributions["sample_id"] == sid) & (contributions["component"] == c)]
            best = part.sort_values("rank").head(top)
            ax = fig.add_subplot(inner[c - 1])
            ax.barh(np.arange(len(best))[::-1], best["contribution"],
                    color=np.where(best["contribution"] > 0, "tab:blue", "tab:red"))
            ax.set_yticks(np.arange(len(best))[::-1], best["feature"], fontsize=6)
            ax.axvline(0, color="k", lw=0.5)
            ax.set_title(f"PC{c} = {part['contribution'].sum():+.2f}: top {len(best)} of {len(part)} terms",
                         fontsize=8)
    fig.suptitle(f"{title}: {n} samples end to end" if title else None)
    return fig


# --------------------------------------------------------------------------------------------
# Jobs: what each workflow rule runs (read files, call the functions above, write tables)
# --------------------------------------------------------------------------------------------

PathLike = str | os.PathLike


def _features(df: pd.DataFrame, sample_ids: Sequence[int] | None = None) -> tuple[np.ndarray, list[str]]:
    """Feature matrix (n, d) float64 of `df` (or of its rows `sample_ids`, in that order) and its columns."""
    cols = latent_columns(df)
    if not cols:
        raise ValueError(f"no feature columns z0..z{{d-1}} in table with columns {list(df.columns)[:8]}")
    rows = df if sample_ids is None else rows_by_id(df, sample_ids)
    return rows[cols].to_numpy(dtype=np.float64), cols


def write_maps(latents_path: PathLike, out: Mapping[str, PathLike], settings: Mapping[str, Any], *,
               seed: int = 0, n_jobs: int = 1, metadata: Mapping[str, Any] | None = None) -> None:
    """Rule explain_maps: fit PCA, t-SNE and UMAP on the map samples and place the explained ones.

    out : paths for `maps` (coords_table of the map samples), `placement` (coords_table of the
    explained samples, placed by `transform`), `pca_scree`, `pca_loadings`, `pca_contributions`
    (per explained sample, PC1 and PC2).
    settings : the config's `explain` section.
    """
    df = read_parquet(latents_path)
    ids = explained_sample_ids(df, settings["samples"]["ids"])
    subset = map_subset(df, settings["split"], settings["n_samples"], exclude=ids, random_state=seed)
    X, cols = _features(subset)
    coords, models = embed_maps(X, tsne=settings["tsne"], umap=settings["umap"], random_state=seed, n_jobs=n_jobs)
    explained = rows_by_id(df, ids)
    placed = place_samples(models, explained[cols].to_numpy(np.float64))
    scree, loadings = pca_tables(models["pca"], cols, settings["pca"]["loading_components"])
    contributions = pd.concat(
        [pca_contributions(x, models["pca"], cols).assign(sample_id=np.int64(sid))
         for sid, x in zip(ids, explained[cols].to_numpy(np.float64))], ignore_index=True)
    meta = _metadata(metadata, settings)
    write_parquet(coords_table(subset, coords), out["maps"], meta)
    write_parquet(coords_table(explained, placed), out["placement"], meta)
    write_parquet(scree, out["pca_scree"], meta)
    write_parquet(loadings, out["pca_loadings"], meta)
    write_parquet(contributions, out["pca_contributions"], meta)


def _metadata(metadata: Mapping[str, Any] | None, settings: Mapping[str, Any]) -> dict:
    """Key-value metadata of an explain table: what the caller gives, plus the explain settings."""
    return {**(metadata or {}), "explain": dict(settings)}


def _map_features(latents_path: PathLike, maps_path: PathLike):
    """The maps table, and the feature matrix of its samples (in its row order)."""
    maps = read_parquet(maps_path)
    ids = maps.loc[maps["method"] == METHODS[0], "sample_id"].to_numpy()
    X, cols = _features(read_parquet(latents_path), ids)
    return maps, X, cols


def write_quality(latents_path: PathLike, maps_path: PathLike, out_path: PathLike,
                  settings: Mapping[str, Any], *, seed: int = 0,
                  metadata: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Rule explain_quality: `map_quality` of the three maps, written to `out_path`."""
    maps, X, _ = _map_features(latents_path, maps_path)
    coords = {m: coords_of(maps, m) for m in METHODS}
    labels = maps.loc[maps["method"] == METHODS[0], "label"].to_numpy()
    q = settings["quality"]
    table = map_quality(X, coords, labels, k=q["k"], knn_k=q["knn_k"], n_folds=q["cv_folds"], random_state=seed)
    write_parquet(table, out_path, _metadata(metadata, settings))
    return table


def write_features(latents_path: PathLike, maps_path: PathLike, out: Mapping[str, PathLike],
                   settings: Mapping[str, Any], *, seed: int = 0,
                   metadata: Mapping[str, Any] | None = None) -> None:
    """Rule explain_features: feature stats, clustered correlations, UMAP clusters and profiles.

    out : paths for `stats`, `correlation`, `clusters` (sample_id, cluster, cluster_name),
    `profiles` (`cluster_profiles`).
    """
    maps, X, cols = _map_features(latents_path, maps_path)
    ids = maps[maps["method"] == "umap"]
    meta = _metadata(metadata, settings)
    write_parquet(feature_stats(X, cols, settings["features"]["near_constant"]), out["stats"], meta)
    write_parquet(clustered_correlation(X, cols), out["correlation"], meta)
    c = settings["clusters"]
    clusters, names = cluster_assignments(ids["label"].to_numpy(), class_names_of(ids), coords_of(maps, "umap"),
                                          method=c["method"], n_clusters=c["n_clusters"], random_state=seed)
    assignment = pd.DataFrame({"sample_id": ids["sample_id"].to_numpy(), "cluster": clusters.astype(np.int32),
                               "cluster_name": np.asarray(names, dtype=object)[clusters]})
    write_parquet(assignment, out["clusters"], meta)
    write_parquet(cluster_profiles(X, cols, clusters, names), out["profiles"], meta)


def write_ridge(latents_path: PathLike, maps_path: PathLike, out: Mapping[str, PathLike],
                settings: Mapping[str, Any], *, seed: int = 0,
                metadata: Mapping[str, Any] | None = None) -> None:
    """Rule explain_ridge: `ridge_maps` of the t-SNE and UMAP axes; out: scores, coefficients, predictions."""
    maps, X, cols = _map_features(latents_path, maps_path)
    r = settings["ridge"]
    scores, coefs, preds = ridge_maps(X, {m: coords_of(maps, m) for m in METHODS}, cols,
                                      alphas=r["alphas"], n_folds=r["cv_folds"], random_state=seed)
    meta = _metadata(metadata, settings)
    write_parquet(scores, out["scores"], meta)
    write_parquet(coefs, out["coefficients"], meta)
    write_parquet(preds, out["predictions"], meta)


def write_samples(data_path: PathLike, model_path: PathLike, latents_path: PathLike, placement_path: PathLike,
                  out_path: PathLike) -> None:
    """Rule explain_samples: the explained samples' inputs, first-layer activations and features.

    Writes an npz with sample_id (n,), label (n,), image (n, C, H, W) float32 in [0, 1],
    first_layer (n, ...) and first_layer_kind ('conv' or 'dense'), features (n, d) float32
    (from the latents table), class_names (K,). Runs on CUDA when present.
    """
    import torch

    from .data import load_dataset
    from .models import load_model

    ids = read_parquet(placement_path, columns=["sample_id"])["sample_id"].drop_duplicates().tolist()
    ds = load_dataset(data_path)
    pos = pd.Series(np.arange(len(ds)), index=ds.sample_id)
    missing = [s for s in ids if s not in pos.index]
    if missing:
        raise ValueError(f"{data_path}: sample ids {missing} not in the dataset")
    rows = pos.loc[ids].to_numpy()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(model_path, map_location=device)
    x = torch.from_numpy(ds.images[rows]).to(device)
    acts, kind = first_layer_activations(model, x)
    features, _ = _features(read_parquet(latents_path), ids)
    write_npz(out_path, sample_id=np.asarray(ids, np.int64), label=ds.labels[rows], image=ds.images[rows],
              first_layer=acts.astype(np.float32), first_layer_kind=np.array(kind),
              features=features.astype(np.float32), class_names=np.array(ds.class_names))


# --------------------------------------------------------------------------------------------
# Figure jobs: read tables, draw, save (one per figure rule)
# --------------------------------------------------------------------------------------------

def _save(fig, paths) -> None:
    from .plotting import save_figure

    save_figure(fig, paths)


def _styled():
    from .plotting import use_style

    use_style()


def draw_maps(maps_path: PathLike, quality_path: PathLike, paths, title: str = "") -> None:
    _styled()
    maps = read_parquet(maps_path)
    _save(plot_maps(maps, read_parquet(quality_path), class_names_of(maps), title), paths)


def draw_correlation(correlation_path: PathLike, stats_path: PathLike, paths, title: str = "") -> None:
    _styled()
    _save(plot_correlation(read_parquet(correlation_path), read_parquet(stats_path), title), paths)


def draw_ridge(scores_path: PathLike, coefficients_path: PathLike, predictions_path: PathLike, paths,
               top: int = 12, title: str = "") -> None:
    _styled()
    fig = plot_ridge(read_parquet(scores_path), read_parquet(coefficients_path), read_parquet(predictions_path),
                     top=top, title=title)
    _save(fig, paths)


def draw_pca(maps_path: PathLike, loadings_path: PathLike, scree_path: PathLike, paths, arrows: int = 8,
             title: str = "") -> None:
    _styled()
    maps = read_parquet(maps_path)
    fig = plot_pca(maps, read_parquet(loadings_path), read_parquet(scree_path), class_names_of(maps),
                   n_arrows=arrows, title=title)
    _save(fig, paths)


def draw_umap_features(maps_path: PathLike, profiles_path: PathLike, clusters_path: PathLike, paths,
                       top: int = 3, title: str = "") -> None:
    _styled()
    maps = read_parquet(maps_path)
    fig = plot_umap_features(maps, read_parquet(profiles_path), read_parquet(clusters_path),
                             class_names_of(maps), top=top, title=title)
    _save(fig, paths)


def draw_samples(samples_path: PathLike, placement_path: PathLike, maps_path: PathLike,
                 contributions_path: PathLike, paths, top: int = 8, max_maps: int = 16, title: str = "") -> None:
    _styled()
    samples = read_npz(samples_path)
    fig = plot_samples(samples, read_parquet(placement_path), read_parquet(maps_path),
                       read_parquet(contributions_path), [str(c) for c in samples["class_names"]],
                       top=top, max_maps=max_maps, title=title)
    _save(fig, paths)
