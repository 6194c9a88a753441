"""The comparison page's arrays: what `compare_page` (compare.jobs) puts into the atlas renderer.

Every compared model's PCA, t-SNE and UMAP maps of the same samples, one row of maps per model;
the PCA maps turned to face the first model's (`procrustes_align`: PCA axes have arbitrary signs
and, for close eigenvalues, an arbitrary rotation, so unaligned maps of two alike spaces can look
mirrored); each model's k nearest latent neighbours of every sample (`model_neighbours`), which
the page shows side by side on a click, marking those not shared by every model; per pair, each
sample's neighbourhood overlap (from compare_pair's points table) as a colour mode
(`page_arrays` packs them all as the renderer's typed arrays).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.linalg import orthogonal_procrustes

from latent_atlas.atlas.neighbours import nearest_neighbours


def procrustes_align(reference: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """`coords` (n, 2) rotated (or reflected) and shifted onto `reference` (n, 2), no scaling.

    The orthogonal R minimising ||(coords - mean) R - (reference - mean_ref)||_F
    (`scipy.linalg.orthogonal_procrustes`), then moved to the reference's mean; distances within
    the map are kept exactly. Returns (n, 2) float64.
    """
    ref = np.asarray(reference, np.float64)
    xy = np.asarray(coords, np.float64)
    if ref.shape != xy.shape:
        raise ValueError(f"procrustes_align: reference {ref.shape} and coords {xy.shape} differ in shape")
    centre = xy.mean(axis=0)
    rotation, _ = orthogonal_procrustes(xy - centre, ref - ref.mean(axis=0))
    return (xy - centre) @ rotation + ref.mean(axis=0)


def aligned_maps(maps: Sequence[dict[str, np.ndarray]], method: str = "pca") -> list[dict[str, np.ndarray]]:
    """Each model's maps (method -> (n, 2)) with `method`'s map aligned to the first model's."""
    reference = maps[0][method]
    return [{**m, method: procrustes_align(reference, m[method]) if i else np.asarray(m[method], np.float64)}
            for i, m in enumerate(maps)]


def model_neighbours(latents: Sequence[np.ndarray], k: int) -> list[np.ndarray]:
    """Each model's k nearest latent neighbours (`atlas.neighbours.nearest_neighbours`) of every
    sample: a list of (n, k) int32 row positions, nearest first; latents[i] is (n, d_i) on the
    same samples in the same order."""
    return [nearest_neighbours(z, int(k))[0].astype(np.int32) for z in latents]


def measures_table(table: pd.DataFrame) -> dict:
    """The compare table as the page's measures table: {columns, rows}, numbers rounded to 4
    places (None where not finite); model_/epoch_ columns are left out (the names say them)."""
    columns = [c for c in table.columns if not c.startswith(("model_", "epoch_"))]

    def cell(value):
        if isinstance(value, (str, np.str_)):
            return str(value)
        value = float(value)
        if not math.isfinite(value):
            return None
        return int(value) if value.is_integer() and abs(value) >= 1 else round(value, 4)

    return {"columns": columns, "rows": [[cell(v) for v in row] for row in table[columns].itertuples(index=False)]}


def scores_table(scores: pd.DataFrame) -> dict:
    """The attribute_scores table (one row per model and score) as the page's scores table: one
    row per model, a column per score (MIG, DCI's three, SAP, in SCORE_LABELS order), the
    factors last; numbers as in `measures_table`."""
    from latent_atlas.attributes.figures import SCORE_LABELS

    models = list(dict.fromkeys(scores["model"]))
    names = [s for s in SCORE_LABELS if s in set(scores["score"])]
    wide = scores.pivot_table(index="model", columns="score", values="value", aggfunc="first").reindex(models)
    factors = scores.drop_duplicates("model").set_index("model")["factors"].reindex(models)
    table = pd.DataFrame({"model": models, **{SCORE_LABELS[n]: wide[n].to_numpy() for n in names},
                          "factors": factors.to_numpy()})
    return measures_table(table)


def page_arrays(models: Sequence[str], pairs: Sequence[tuple[str, str]], ids: pd.DataFrame,
                coords: Sequence[dict[str, np.ndarray]], latents: Sequence[np.ndarray],
                points: Sequence[pd.DataFrame], class_names: Sequence[str],
                k: int) -> tuple[dict[str, np.ndarray], list[dict], list[dict]]:
    """The page's typed arrays and their descriptions: (arrays, map specs, scalar colour modes).

    `ids` (n rows: sample_id, label) orders every array; `coords[i]` is model i's maps (method ->
    (n, 2)) and `latents[i]` its latent vectors (n, d_i), both in that order; `points[j]` is pair
    j's per-point table from compare_pair (any order, matched by sample_id). Arrays: ids (int32),
    label (uint8, or uint16 past 255 classes), xy_{i}_{method} (float32), knn_{i} (the `k` nearest
    latent neighbours, int32 rows), overlap_{j} (float32 in [0, 1]).
    """
    from latent_atlas.compare.figures import overlap_column
    from latent_atlas.explain.samples import positions_of
    from latent_atlas.projections import METHODS

    sample_ids = ids["sample_id"].to_numpy()
    label_type = np.uint8 if len(class_names) <= 255 else np.uint16
    arrays = {"ids": sample_ids.astype(np.int32), "label": ids["label"].to_numpy().astype(label_type)}
    map_specs = []
    neighbours = model_neighbours(latents, k)
    for i, (model, xy) in enumerate(zip(models, coords)):
        arrays[f"knn_{i}"] = neighbours[i]
        for m in METHODS:
            arrays[f"xy_{i}_{m}"] = xy[m].astype(np.float32)
            map_specs.append({"name": f"{model}/{m}", "array": f"xy_{i}_{m}", "method": m, "model": model,
                              "knn": f"knn_{i}", "aligned": m == "pca" and i > 0})
    scalars = []
    for j, ((a, b), table) in enumerate(zip(pairs, points)):
        column = overlap_column(table)
        rows = positions_of(table["sample_id"].to_numpy(), sample_ids, f"the points table of {a} vs {b}")
        arrays[f"overlap_{j}"] = table[column].to_numpy(np.float32)[rows]
        scalars.append({"mode": f"overlap:{j}", "array": f"overlap_{j}", "lo": 0.0, "hi": 1.0,
                        "option": f"kNN overlap {a} vs {b}",
                        "label": f"{a} vs {b}: Jaccard of the {column.rpartition('_k')[2]} nearest neighbours"})
    return arrays, map_specs, scalars
