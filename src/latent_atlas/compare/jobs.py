"""The compare stage's jobs, one per rule of workflow/rules/compare.smk.

`compare_pair` measures how alike two models' latent spaces are on the same seeded samples of
`compare.split` (the samples every model of the dataset is mapped on by `compare_maps`, the
explain stage's job on compare's split and sample count); `compare_table` gathers a dataset's
pairs into one table; `plot_compare` draws its figures, per-point measures on the maps;
`compare_page` writes the interactive comparison page (the atlas's renderer).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from latent_atlas.io import read_parquet, write_parquet, write_text
from latent_atlas.latents import read_latents
from latent_atlas.runtime import Job, log

# The id columns every per-point table starts with.
POINT_IDS = ["sample_id", "split", "label", "label_name"]


def compared_rows(ids: pd.DataFrame, split: str, max_samples: int, seed: int) -> np.ndarray:
    """Positions in the id frame `ids` of the compared samples: the rows `compare_maps` maps
    (explain_maps' choice with no named samples), so that per-point measures land on the maps."""
    from latent_atlas.explain.maps import map_subset
    from latent_atlas.explain.samples import explained_sample_ids

    return map_subset(ids, split, max_samples, exclude=explained_sample_ids(ids, []), random_state=seed)


def _rows(latents, sample_ids: np.ndarray, path: str, where: str) -> np.ndarray:
    """Latent vectors (n, d) float64 of `sample_ids`, in that order."""
    from latent_atlas.explain.samples import positions_of

    try:
        rows = positions_of(latents.ids["sample_id"], sample_ids, path)
    except ValueError as err:
        raise ValueError(f"{where}: the models do not share the compared samples: {err}") from None
    return latents.z[rows].astype(np.float64)


def selected_rows(job: Job, ids: pd.DataFrame, samples: Mapping[str, Any], path: str) -> np.ndarray:
    """Positions in the id frame `ids` (of the latents file `path`) of the samples of the selection
    `samples` (compare.samples, its file the job's input `samples`), in sample_id order."""
    from latent_atlas.selection import restrict, selected_ids

    return restrict(selected_ids(samples, job.input.samples), ids["sample_id"].to_numpy(),
                    f"{samples['key']}.file", job.input.samples, among=f"the latents {path}")


def compare_pair(job: Job, *, samples: Mapping[str, Any] | None = None, seed: int, numeric_threads: int, split: str,
                 max_samples: int, k: Sequence[int], rbf_max_samples: int, svcca_k: int, cv_folds: int) -> None:
    """The measures of one pair (wildcards a, b) on the same `max_samples` seeded samples of
    `split`: one row of scalar measures (`measures.pair_measures`: CKA, Procrustes, SVCCA, kNN
    overlap at each of `k`, linear probes both ways, class probes), the per-point kNN overlap, and
    the matched dimensions. `samples` (compare.samples; the rule passes it only where it is set,
    so it is not keyword-only): on that selection's samples instead (split and max_samples unread),
    the samples compare_maps maps."""
    from latent_atlas.compare.measures import match_dimensions, pair_measures

    a, b = job.wildcards.a, job.wildcards.b
    latents_a = read_latents(job.input.latents_a)
    if samples is None:
        rows = compared_rows(latents_a.ids, split, max_samples, int(seed))
    else:
        rows = selected_rows(job, latents_a.ids, samples, job.input.latents_a)
    ids = latents_a.ids.iloc[rows][POINT_IDS]
    ids = ids.reset_index(drop=True)
    sample_ids = ids["sample_id"].to_numpy()
    where = f"compare {a} vs {b}"
    X = _rows(latents_a, sample_ids, job.input.latents_a, where)
    Y = _rows(read_latents(job.input.latents_b), sample_ids, job.input.latents_b, where)
    scalars, points = pair_measures(X, Y, ids["label"].to_numpy(), ks=list(k), rbf_max_samples=rbf_max_samples,
                                    svcca_k=svcca_k, cv_folds=cv_folds, random_state=int(seed))
    log.info("compare %s vs %s on %d samples: %s", a, b, len(ids),
             ", ".join(f"{name} {value:.4f}" for name, value in scalars.items()))
    meta = {"dataset": job.wildcards.dataset, "a": a, "b": b}
    row = {"a": a, "b": b, "n_samples": len(ids), "dim_a": X.shape[1], "dim_b": Y.shape[1], **scalars}
    write_parquet(pd.DataFrame([row]), job.output.measures, meta)
    write_parquet(pd.concat([ids, points.reset_index(drop=True)], axis=1), job.output.points, meta)
    write_parquet(match_dimensions(X, Y), job.output.dimensions, meta)


def _snapshot_of(name: str) -> tuple[str, int | None]:
    """(model, epoch) of a snapshot name `model@epoch`; (name, None) for a model."""
    base, _, epoch = name.partition("@")
    return base, int(epoch) if epoch else None


def compare_table(job: Job) -> None:
    """Every pair of a dataset in one table: the measures rows, with each side's model and
    snapshot epoch (None: the trained model)."""
    table = pd.concat([read_parquet(path) for path in job.input], ignore_index=True)
    for side in ("a", "b"):
        parts = [_snapshot_of(name) for name in table[side]]
        table.insert(table.columns.get_loc(side) + 1, f"model_{side}", [m for m, _ in parts])
        table.insert(table.columns.get_loc(side) + 2, f"epoch_{side}",
                     pd.array([e for _, e in parts], dtype="Int64"))
    write_parquet(table, job.output[0], {"dataset": job.wildcards.dataset, "n_pairs": len(table)})


def plot_compare(job: Job, *, show: int) -> None:
    """A dataset's comparison figures: the CKA matrix, the training trajectories (when there are
    snapshots), each pair's per-point kNN overlap on A's t-SNE map with the `show` samples whose
    neighbourhood changes most, and the matched dimensions."""
    from latent_atlas.compare import figures
    from latent_atlas.data.store import load_dataset
    from latent_atlas.explain.samples import positions_of
    from latent_atlas.plotting import save_figure, use_style

    use_style()
    o = job.output
    table = read_parquet(job.input.table)
    save_figure(figures.plot_cka_matrix(table, title=job.wildcards.dataset), o.cka)
    if "trajectory" in o.keys():
        save_figure(figures.plot_trajectory(table), o.trajectory)
    pairs = list(zip(table["a"], table["b"]))
    points = [read_parquet(job.input[f"points_{i}"]) for i in range(len(pairs))]
    maps = [read_parquet(job.input[f"maps_{i}"]) for i in range(len(pairs))]
    dataset = load_dataset(job.input.data)
    changed = figures.most_changed(points, show)
    images = [dataset.images[positions_of(dataset.sample_id, ids, job.input.data[0])] for ids in changed]
    save_figure(figures.plot_overlap(pairs, points, maps, changed, images), o.overlap)
    dims = [read_parquet(job.input[f"dimensions_{i}"]) for i in range(len(pairs))]
    save_figure(figures.plot_dimensions(pairs, dims), o.dimensions)


def compare_page(job: Job, *, seed: int, k: int, point_size: float, thumbnails: Mapping[str, Any]) -> None:
    """The comparison page of a dataset (results/figures/{dataset}/compare.html): every compared
    model's PCA (Procrustes-aligned to the first model's), t-SNE and UMAP maps, linked; colour by
    class or by a pair's per-point overlap; a click shows each model's `k` nearest latent
    neighbours; the pairs' measures, and each model's disentanglement scores where the attributes
    stage scored the dataset (input `scores`); points of `point_size`, `thumbnails` as the atlas's (subset
    seeded with `seed`)."""
    from latent_atlas.atlas.jobs import page_thumbnails
    from latent_atlas.atlas.page import atlas_document, class_palette
    from latent_atlas.compare.page import aligned_maps, measures_table, page_arrays, scores_table
    from latent_atlas.explain.maps import coords_of, method_rows
    from latent_atlas.explain.samples import positions_of
    from latent_atlas.projections import METHODS
    from latent_atlas.rules import compared_models

    dataset = job.wildcards.dataset
    table = read_parquet(job.input.table)
    pairs = list(zip(table["a"], table["b"]))
    models = compared_models(pairs)
    maps = [read_parquet(job.input[f"maps_{i}"]) for i in range(len(models))]
    ids = method_rows(maps[0], METHODS[0])[POINT_IDS].reset_index(drop=True)
    sample_ids = ids["sample_id"].to_numpy()
    coords = []
    for model, table_i in zip(models, maps):
        order = positions_of(method_rows(table_i, METHODS[0])["sample_id"].to_numpy(), sample_ids,
                             f"{model}'s compare maps")
        coords.append({m: coords_of(table_i, m)[order] for m in METHODS})
    coords = aligned_maps(coords, "pca")
    latents, class_names = [], None
    for i, model in enumerate(models):
        z = read_latents(job.input[f"latents_{i}"])
        latents.append(_rows(z, sample_ids, job.input[f"latents_{i}"], "compare page"))
        class_names = class_names or list(z.class_names)
    n = len(ids)
    points = [read_parquet(job.input[f"points_{j}"]) for j in range(len(pairs))]
    arrays, map_specs, scalars = page_arrays(models, pairs, ids, coords, latents, points, class_names, k)
    sprites, arrays["thumb"], channels = page_thumbnails(job.input.data, sample_ids, thumbnails, int(seed))
    meta = {
        "title": f"compared models on {dataset}", "kind": "embedding", "n": n, "k": int(k),
        "class_names": class_names, "palette": class_palette(len(class_names)),
        "maps": map_specs, "columns": len(METHODS), "models": [{"name": m, "knn": f"knn_{i}"}
                                                               for i, m in enumerate(models)],
        "scalars": scalars, "measures": measures_table(table), "point_size": float(point_size),
        "importance": None,
    }
    if "scores" in job.input.keys():  # the attributes stage scored the dataset's models
        meta["scores"] = scores_table(read_parquet(job.input.scores))
    write_text(atlas_document(meta, arrays, sprites, channels=channels), job.output[0])
