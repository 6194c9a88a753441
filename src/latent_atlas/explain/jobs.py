"""The explain stage's jobs: one function per rule of workflow/rules/explain.smk.

Each job takes the settings of the `explain` section it reads as keyword arguments (the rule's
params). Every table carries the job's wildcards (dataset, model) and those settings as Parquet
metadata.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from latent_atlas.data.store import load_dataset
from latent_atlas.devices import default_device
from latent_atlas.explain.clusters import cluster_assignments, cluster_profiles
from latent_atlas.explain.features import clustered_correlation, feature_stats
from latent_atlas.explain.figures import (plot_correlation, plot_maps, plot_pca, plot_ridge, plot_samples,
                                          plot_umap_features)
from latent_atlas.explain.maps import coords_of, coords_table, embed_maps, map_subset, method_rows, place_samples
from latent_atlas.explain.pca import pca_contributions, pca_tables
from latent_atlas.explain.quality import map_quality
from latent_atlas.explain.ridge import ridge_maps
from latent_atlas.explain.samples import explained_sample_ids, first_layer_activations, positions_of
from latent_atlas.io import read_npz, read_parquet, write_npz, write_parquet
from latent_atlas.latents import Latents, class_names_of, read_latents
from latent_atlas.plotting import save_figure, use_style
from latent_atlas.projections import METHODS
from latent_atlas.runtime import Job
from latent_atlas.selection import restrict, selected_ids


def _metadata(job: Job, **read) -> dict:
    """Key-value metadata of an explain table: the job's wildcards and the settings it read."""
    return {**dict(job.wildcards.items()), "explain": read}


def _features(latents: Latents, positions: np.ndarray) -> np.ndarray:
    """Features (n, d) float64 of the latents rows `positions`, column-major.

    Column-major as the pandas frames the stage first read them from were: numpy sums a column
    of a row-major array in another order, and the last bits of every mean and std would change.
    """
    return np.asfortranarray(latents.z[positions], dtype=np.float64)


def _feature_names(latents: Latents) -> list[str]:
    """The latents' column names, z0 .. z{d-1}: the features' names in every table."""
    return [f"z{i}" for i in range(latents.z.shape[1])]


def _map_samples(job: Job) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """The maps table, the features (n_map, d) of its samples in its row order, and their names."""
    maps = read_parquet(job.input.maps)
    latents = read_latents(job.input.latents)
    sample_ids = method_rows(maps, METHODS[0])["sample_id"].to_numpy()
    X = _features(latents, positions_of(latents.ids["sample_id"], sample_ids, job.input.latents))
    return maps, X, _feature_names(latents)


def _selected_rows(job: Job, latents: Latents, samples: Mapping) -> np.ndarray:
    """Positions (n,) int64 in the latents of the samples of a selection (`samples`: a stage's
    `samples` key as rule params pass it, its file the job's input `samples`), in sample_id order."""
    ids = selected_ids(samples, job.input.samples)
    return restrict(ids, latents.ids["sample_id"].to_numpy(), f"{samples['key']}.file", job.input.samples,
                    among=f"the latents {job.input[0]}")


def explain_maps(job: Job, *, samples: Mapping | None = None, seed: int, numeric_threads: int, split: str,
                 n_samples: int, sample_ids: Sequence[int] | Mapping, tsne: Mapping, umap: Mapping,
                 loading_components: int) -> None:
    """PCA, t-SNE (`tsne` settings) and UMAP (`umap`) of `n_samples` seeded samples of `split`,
    and where the explained samples (`sample_ids`; empty: the first two test samples of
    different classes; a mapping: the selection explain.samples names, `selection.explained_samples`)
    land in them. `samples` (compare_maps with compare.samples; the rule passes it only where it
    is set, so it is not keyword-only): the maps are of that selection's samples instead.

    Outputs: maps and placement (coords_table of the map samples and of the explained ones,
    placed by `transform`), pca_scree, pca_loadings (`loading_components` components),
    pca_contributions (PC1 and PC2 of each explained sample, with its sample_id).
    """
    seed = int(seed)
    latents = read_latents(job.input[0])
    if isinstance(sample_ids, Mapping):
        explained_ids = latents.ids["sample_id"].to_numpy()[_selected_rows(job, latents, sample_ids)].tolist()
    else:
        explained_ids = explained_sample_ids(latents.ids, sample_ids)
    if samples is None:
        subset = map_subset(latents.ids, split, n_samples, exclude=explained_ids, random_state=seed)
    else:
        subset = _selected_rows(job, latents, samples)
    # openTSNE's result depends on its thread count: numeric_threads, never the job's cores.
    coords, models = embed_maps(_features(latents, subset), tsne=tsne, umap=umap, random_state=seed,
                                n_jobs=int(numeric_threads))
    explained = positions_of(latents.ids["sample_id"], explained_ids, job.input[0])
    X_new = _features(latents, explained)
    placed = place_samples(models, X_new)
    columns = _feature_names(latents)
    scree, loadings = pca_tables(models["pca"], columns, loading_components)
    contributions = pd.concat(
        [pca_contributions(x, models["pca"], columns).assign(sample_id=np.int64(sid))
         for sid, x in zip(explained_ids, X_new)], ignore_index=True)
    meta = _metadata(job, split=split, n_samples=n_samples, sample_ids=sample_ids, tsne=tsne, umap=umap,
                     loading_components=loading_components, **({} if samples is None else {"samples": samples}))
    out = job.output
    write_parquet(coords_table(latents.ids.iloc[subset], coords), out.maps, meta)
    write_parquet(coords_table(latents.ids.iloc[explained], placed), out.placement, meta)
    write_parquet(scree, out.pca_scree, meta)
    write_parquet(loadings, out.pca_loadings, meta)
    write_parquet(contributions, out.pca_contributions, meta)


def explain_quality(job: Job, *, seed: int, numeric_threads: int, quality: Mapping) -> None:
    """Trustworthiness, continuity and k-NN accuracy of the three maps (`map_quality`, with the
    `quality` settings k, knn_k, cv_folds)."""
    maps, X, _ = _map_samples(job)
    labels = method_rows(maps, METHODS[0])["label"].to_numpy()
    q = quality
    table = map_quality(X, {m: coords_of(maps, m) for m in METHODS}, labels, k=q["k"], knn_k=q["knn_k"],
                        n_folds=q["cv_folds"], random_state=int(seed))
    write_parquet(table, job.output[0], _metadata(job, quality=q))


def explain_features(job: Job, *, seed: int, numeric_threads: int, near_constant: float,
                     clusters: Mapping) -> None:
    """Feature stats (`near_constant` threshold), clustered correlations, the UMAP clusters
    (sample_id, cluster, cluster_name; `clusters`: method and n_clusters) and their feature
    profiles."""
    maps, X, columns = _map_samples(job)
    out, c = job.output, clusters
    meta = _metadata(job, near_constant=near_constant, clusters=c)
    write_parquet(feature_stats(X, columns, near_constant), out.stats, meta)
    write_parquet(clustered_correlation(X, columns), out.correlation, meta)
    umap = method_rows(maps, "umap")
    clusters, names = cluster_assignments(umap["label"].to_numpy(), class_names_of(umap), coords_of(maps, "umap"),
                                          method=c["method"], n_clusters=c["n_clusters"],
                                          random_state=int(seed))
    assignment = pd.DataFrame({"sample_id": umap["sample_id"].to_numpy(), "cluster": clusters.astype(np.int32),
                               "cluster_name": np.asarray(names, dtype=object)[clusters]})
    write_parquet(assignment, out.clusters, meta)
    write_parquet(cluster_profiles(X, columns, clusters, names), out.profiles, meta)


def explain_ridge(job: Job, *, seed: int, numeric_threads: int, alphas: Sequence[float], cv_folds: int) -> None:
    """Ridge maps of the t-SNE and UMAP axes (penalties `alphas`, `cv_folds` folds): scores,
    coefficients, out-of-fold predictions."""
    maps, X, columns = _map_samples(job)
    tables = ridge_maps(X, {m: coords_of(maps, m) for m in METHODS}, columns, alphas=alphas,
                        n_folds=cv_folds, random_state=int(seed))
    meta, out = _metadata(job, alphas=alphas, cv_folds=cv_folds), job.output
    for table, path in zip(tables, (out.scores, out.coefficients, out.predictions)):
        write_parquet(table, path, meta)


def explain_samples(job: Job, *, numeric_threads: int) -> None:
    """The explained samples' inputs, first-layer activations and features, on CUDA when present
    (torch on `numeric_threads` threads, set before the call).

    Writes an npz with sample_id (n,), label (n,), image (n, C, H, W) float32 in [0, 1],
    first_layer (n, ...) float32 and first_layer_kind ('conv' or 'dense'), features (n, d)
    float32 (from the latents table), class_names (K,).
    """
    # Imported here: it imports torch, which no other explain job needs.
    from latent_atlas.models.networks import load_model

    sample_ids = read_parquet(job.input.placement, columns=["sample_id"])["sample_id"].drop_duplicates().tolist()
    ds = load_dataset(job.input.data)
    rows = positions_of(ds.sample_id, sample_ids, job.input.data)
    model = load_model(job.input.model, map_location=default_device())
    try:
        activations, kind = first_layer_activations(model, ds.images[rows])
    except ValueError as err:
        raise ValueError(f"model {job.wildcards.model} ({job.input.model}): {err}; leave it out of "
                         f"explain.models") from None
    latents = read_latents(job.input.latents)
    features = _features(latents, positions_of(latents.ids["sample_id"], sample_ids, job.input.latents))
    write_npz(job.output[0], sample_id=np.asarray(sample_ids, np.int64), label=ds.labels[rows],
              image=ds.images[rows], first_layer=activations.astype(np.float32), first_layer_kind=np.array(kind),
              features=features.astype(np.float32), class_names=np.array(ds.class_names))


def plot_explain(job: Job, *, title: str, ridge_top: int, arrows: int, cluster_top: int,
                 contributors_top: int, max_maps: int) -> None:
    """Every explain figure of one model, each drawn from its tables (drawing is quick, starting a
    process is not): `ridge_top` coefficients per map axis, `arrows` biplot loadings,
    `cluster_top` features named per cluster, `contributors_top` contributions per sample and
    component, `max_maps` first-layer maps per sample."""
    i, o = job.input, job.output
    use_style()
    maps = read_parquet(i.maps)
    class_names = class_names_of(maps)
    save_figure(plot_maps(maps, read_parquet(i.quality), class_names, title), o.maps)
    save_figure(plot_correlation(read_parquet(i.correlation), read_parquet(i.stats), title), o.correlation)
    save_figure(plot_ridge(read_parquet(i.ridge_scores), read_parquet(i.ridge_coefficients),
                           read_parquet(i.ridge_predictions), top=ridge_top, title=title), o.ridge)
    save_figure(plot_pca(maps, read_parquet(i.loadings), read_parquet(i.scree), class_names, n_arrows=arrows,
                         title=title), o.pca)
    save_figure(plot_umap_features(maps, read_parquet(i.profiles), read_parquet(i.clusters), class_names,
                                   top=cluster_top, title=title), o.umap_features)
    samples = read_npz(i.samples)
    save_figure(plot_samples(samples, read_parquet(i.placement), maps, read_parquet(i.contributions),
                             [str(c) for c in samples["class_names"]], top=contributors_top,
                             max_maps=max_maps, title=title), o.samples)
