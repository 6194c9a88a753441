"""Clusters of the UMAP map and what each turns on: per-cluster feature profiles."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from latent_atlas.explain.features import magnitude_rank


def cluster_assignments(labels: np.ndarray, label_names: Sequence[str], umap_coords: np.ndarray, *,
                        method: str, n_clusters: int | None, random_state: int = 0) -> tuple[np.ndarray, list[str]]:
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
        parts.append(pd.DataFrame({"cluster": np.int32(c), "cluster_name": name, "size": int(members.sum()),
                                   "feature": list(columns), "mean": m, "z": z, "rank": magnitude_rank(z)}))
    out = pd.concat(parts, ignore_index=True)
    spread = out.groupby("feature", sort=False)["z"].std(ddof=0)
    out["spread"] = out["feature"].map(spread).to_numpy()
    return out
