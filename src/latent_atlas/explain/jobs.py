"""The explain stage's jobs: one function per rule of workflow/rules/explain.smk.

Settings come from `job.params.settings` (the config's `explain` section). Every table carries the
job's wildcards (dataset, model) and the settings that job read as Parquet metadata.
"""

from __future__ import annotations

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


def explain_maps(job: Job) -> None:
    """PCA, t-SNE and UMAP of the map samples, and where the explained samples land in them.

    Outputs: maps and placement (coords_table of the map samples and of the explained ones,
    placed by `transform`), pca_scree, pca_loadings, pca_contributions (PC1 and PC2 of each
    explained sample, with its sample_id).
    """
    settings, seed = job.params.settings, int(job.config["seed"])
    latents = read_latents(job.input[0])
    sample_ids = explained_sample_ids(latents.ids, settings["samples"]["ids"])
    subset = map_subset(latents.ids, settings["split"], settings["n_samples"], exclude=sample_ids,
                        random_state=seed)
    # openTSNE's result depends on its thread count: numeric_threads, never the job's cores.
    coords, models = embed_maps(_features(latents, subset), tsne=settings["tsne"], umap=settings["umap"],
                                random_state=seed, n_jobs=int(job.config["numeric_threads"]))
    explained = positions_of(latents.ids["sample_id"], sample_ids, job.input[0])
    X_new = _features(latents, explained)
    placed = place_samples(models, X_new)
    columns = _feature_names(latents)
    scree, loadings = pca_tables(models["pca"], columns, settings["pca"]["loading_components"])
    contributions = pd.concat(
        [pca_contributions(x, models["pca"], columns).assign(sample_id=np.int64(sid))
         for sid, x in zip(sample_ids, X_new)], ignore_index=True)
    meta = _metadata(job, split=settings["split"], n_samples=settings["n_samples"],
                     sample_ids=settings["samples"]["ids"], tsne=settings["tsne"], umap=settings["umap"],
                     loading_components=settings["pca"]["loading_components"])
    out = job.output
    write_parquet(coords_table(latents.ids.iloc[subset], coords), out.maps, meta)
    write_parquet(coords_table(latents.ids.iloc[explained], placed), out.placement, meta)
    write_parquet(scree, out.pca_scree, meta)
    write_parquet(loadings, out.pca_loadings, meta)
    write_parquet(contributions, out.pca_contributions, meta)


def explain_quality(job: Job) -> None:
    """Trustworthiness, continuity and k-NN accuracy of the three maps (`map_quality`)."""
    maps, X, _ = _map_samples(job)
    labels = method_rows(maps, METHODS[0])["label"].to_numpy()
    q = job.params.settings["quality"]
    table = map_quality(X, {m: coords_of(maps, m) for m in METHODS}, labels, k=q["k"], knn_k=q["knn_k"],
                        n_folds=q["cv_folds"], random_state=int(job.config["seed"]))
    write_parquet(table, job.output[0], _metadata(job, quality=q))


def explain_features(job: Job) -> None:
    """Feature stats, clustered correlations, the UMAP clusters (sample_id, cluster, cluster_name)
    and their feature profiles."""
    maps, X, columns = _map_samples(job)
    settings, out = job.params.settings, job.output
    near_constant = settings["features"]["near_constant"]
    c = {key: settings["clusters"][key] for key in ("method", "n_clusters")}
    meta = _metadata(job, near_constant=near_constant, clusters=c)
    write_parquet(feature_stats(X, columns, near_constant), out.stats, meta)
    write_parquet(clustered_correlation(X, columns), out.correlation, meta)
    umap = method_rows(maps, "umap")
    clusters, names = cluster_assignments(umap["label"].to_numpy(), class_names_of(umap), coords_of(maps, "umap"),
                                          method=c["method"], n_clusters=c["n_clusters"],
                                          random_state=int(job.config["seed"]))
    assignment = pd.DataFrame({"sample_id": umap["sample_id"].to_numpy(), "cluster": clusters.astype(np.int32),
                               "cluster_name": np.asarray(names, dtype=object)[clusters]})
    write_parquet(assignment, out.clusters, meta)
    write_parquet(cluster_profiles(X, columns, clusters, names), out.profiles, meta)


def explain_ridge(job: Job) -> None:
    """Ridge maps of the t-SNE and UMAP axes: scores, coefficients, out-of-fold predictions."""
    maps, X, columns = _map_samples(job)
    r = job.params.settings["ridge"]
    tables = ridge_maps(X, {m: coords_of(maps, m) for m in METHODS}, columns, alphas=r["alphas"],
                        n_folds=r["cv_folds"], random_state=int(job.config["seed"]))
    meta, out = _metadata(job, alphas=r["alphas"], cv_folds=r["cv_folds"]), job.output
    for table, path in zip(tables, (out.scores, out.coefficients, out.predictions)):
        write_parquet(table, path, meta)


def explain_samples(job: Job) -> None:
    """The explained samples' inputs, first-layer activations and features, on CUDA when present.

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


def plot_explain(job: Job) -> None:
    """Every explain figure of one model, each drawn from its tables (drawing is quick, starting a
    process is not)."""
    i, o, p = job.input, job.output, job.params
    use_style()
    maps = read_parquet(i.maps)
    class_names = class_names_of(maps)
    save_figure(plot_maps(maps, read_parquet(i.quality), class_names, p.title), o.maps)
    save_figure(plot_correlation(read_parquet(i.correlation), read_parquet(i.stats), p.title), o.correlation)
    save_figure(plot_ridge(read_parquet(i.ridge_scores), read_parquet(i.ridge_coefficients),
                           read_parquet(i.ridge_predictions), top=p.ridge_top, title=p.title), o.ridge)
    save_figure(plot_pca(maps, read_parquet(i.loadings), read_parquet(i.scree), class_names, n_arrows=p.arrows,
                         title=p.title), o.pca)
    save_figure(plot_umap_features(maps, read_parquet(i.profiles), read_parquet(i.clusters), class_names,
                                   top=p.cluster_top, title=p.title), o.umap_features)
    samples = read_npz(i.samples)
    save_figure(plot_samples(samples, read_parquet(i.placement), maps, read_parquet(i.contributions),
                             [str(c) for c in samples["class_names"]], top=p.contributors_top,
                             max_maps=p.max_maps, title=p.title), o.samples)
