"""Figure set 6: dead neurons (never active on the training images; can optimisation activate
them?) and clusters of neurons that activate together.
"""

from __future__ import annotations

import logging
from typing import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from latent_atlas.devices import batches, model_device
from latent_atlas.featureviz.describe import describe_images
from latent_atlas.featureviz.layers import resolve_layer
from latent_atlas.featureviz.optimise import Optimiser, start_images

log = logging.getLogger("latent_atlas")


def activation_census(model: nn.Module, images: np.ndarray, batch_size: int, keep: int = 0,
                      random_state: int = 0) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Run the model over float32 `images` (N, C, H, W) in batches and record every hidden unit's
    maximum activation and the fraction of images on which it is active (> 0).

    Returns a table (one row per hidden unit: `layer` 1-based, `layer_name`, `unit`,
    `max_activation`, `active_fraction`, `mean_activation`, `dead` = never active) and, when
    `keep` > 0, the activations of `keep` seeded random images per layer name (keep, units) for
    the co-activation analysis.
    """
    device = model_device(model)
    names = list(model.hidden_layer_names())
    n = len(images)
    rng = np.random.default_rng(random_state)
    kept = np.sort(rng.choice(n, size=min(keep, n), replace=False)) if keep else np.zeros(0, int)
    mx, active, total, sample = {}, {}, {}, {nm: [] for nm in names}
    i = 0  # row of the batch's first image
    with torch.no_grad():  # statistics accumulate per batch: all activations would not fit
        for x in batches(images, batch_size, device):
            acts = model.hidden(x)
            sel = kept[(kept >= i) & (kept < i + len(x))] - i
            for nm in names:
                a = acts[nm].double()
                m = a.max(dim=0).values
                mx[nm] = m if nm not in mx else torch.maximum(mx[nm], m)
                active[nm] = active.get(nm, 0) + (a > 0).sum(dim=0)
                total[nm] = total.get(nm, 0) + a.sum(dim=0)
                if len(sel):
                    sample[nm].append(acts[nm][torch.as_tensor(sel, device=device)].cpu().numpy())
            i += len(x)
    rows = []
    for number, nm in enumerate(names, start=1):
        m = mx[nm].cpu().numpy()
        units = len(m)
        rows.append(pd.DataFrame({
            "layer": np.full(units, number, dtype=np.int64),
            "layer_name": [nm] * units,
            "unit": np.arange(units, dtype=np.int64),
            "max_activation": m.astype(np.float64),
            "active_fraction": (active[nm].cpu().numpy() / n).astype(np.float64),
            "mean_activation": (total[nm].cpu().numpy() / n).astype(np.float64),
            "dead": m <= 0,
        }))
    samples = {nm: (np.concatenate(sample[nm]) if sample[nm] else np.zeros((0, 0), np.float32))
               for nm in names}
    return pd.concat(rows, ignore_index=True), samples


def revive_dead(model: nn.Module, census: pd.DataFrame, opt: Optimiser, *, steps: int,
                random_starts: int, max_units: int | None = None) -> pd.DataFrame:
    """Try to activate the dead units of `census` by optimisation (the study's test: a unit that
    stays at 0 for 50 steps is dead), from the near-zero start and `random_starts` random starts.

    Adds `optimised_activation` (the best activation reached, NaN where not tried) and
    `revivable` (optimised_activation > 0; False where not tried) to a copy of the census.
    """
    census = census.copy()
    census["optimised_activation"] = np.nan
    census["revivable"] = False
    dead = census[census["dead"]]
    if max_units is not None and len(dead) > max_units:
        log.info("census: optimising %d of %d dead units (max_optimised)", max_units, len(dead))
        dead = dead.iloc[:max_units]
    for number, group in dead.groupby("layer", sort=True):
        layer = resolve_layer(int(number), model)
        units = group["unit"].to_numpy()
        best = np.zeros(len(units))
        for s in range(1 + random_starts):
            kind = "zero" if s == 0 else "random"
            x0 = start_images(kind, len(units), model.input_shape, random_state=opt.seed + s)
            img = opt.run(model, layer, units, x0, steps=steps, clip=True,
                          desc=f"dead units layer {layer.number} start {s}")
            df = describe_images(model, img, layer, units)
            best = np.maximum(best, df["activation"].to_numpy())
        census.loc[group.index, "optimised_activation"] = best
        census.loc[group.index, "revivable"] = best > 0
    return census


def census_summary(census: pd.DataFrame) -> pd.DataFrame:
    """Per layer: units, dead, dead share, revivable dead, dead tried by optimisation."""
    g = census.groupby(["layer", "layer_name"], sort=True)
    out = g.agg(units=("unit", "size"), dead=("dead", "sum"),
                tried=("optimised_activation", lambda s: int(s.notna().sum())),
                revivable=("revivable", "sum")).reset_index()
    out["dead_fraction"] = out["dead"] / out["units"]
    return out


def coactivation_clusters(samples: Mapping[str, np.ndarray], census: pd.DataFrame,
                          threshold: float, min_size: int = 2) -> pd.DataFrame:
    """Groups of living hidden units that activate together.

    For each layer, the Pearson correlation of the units' activations over the sampled images;
    average-linkage clustering with distance 1 - correlation, cut at 1 - `threshold`; clusters of
    at least `min_size` units are kept. Returns one row per clustered unit: `layer`, `layer_name`,
    `unit`, `cluster` (0.. per layer, largest first), `cluster_size`, `mean_correlation` (the
    cluster's mean pairwise correlation), `active_fraction`.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    rows = []
    for (number, name), group in census.groupby(["layer", "layer_name"], sort=True):
        acts = samples.get(name)
        alive = group[(group["active_fraction"] > 0)]
        if acts is None or len(acts) < 3 or len(alive) < 2:
            continue
        units = alive["unit"].to_numpy()
        a = acts[:, units].astype(np.float64)
        keep = a.std(axis=0) > 0  # a unit active on no sampled image has no correlation
        units, a = units[keep], a[:, keep]
        if len(units) < 2:
            continue
        corr = np.nan_to_num(np.corrcoef(a, rowvar=False), nan=0.0)
        dist = np.clip(1.0 - corr, 0.0, 2.0)
        np.fill_diagonal(dist, 0.0)
        dist = (dist + dist.T) / 2
        labels = fcluster(linkage(squareform(dist, checks=False), method="average"),
                          t=1.0 - threshold, criterion="distance")
        ids, sizes = np.unique(labels, return_counts=True)
        big = [(s, i) for i, s in zip(ids, sizes) if s >= min_size]
        big.sort(key=lambda t: (-t[0], int(np.flatnonzero(labels == t[1])[0])))
        frac = dict(zip(alive["unit"], alive["active_fraction"]))
        for c, (size, lab) in enumerate(big):
            members = np.flatnonzero(labels == lab)
            sub = corr[np.ix_(members, members)]
            mean_corr = float((sub.sum() - size) / (size * (size - 1)))
            for m in members:
                rows.append({"layer": int(number), "layer_name": name, "unit": int(units[m]),
                             "cluster": c, "cluster_size": int(size),
                             "mean_correlation": mean_corr,
                             "active_fraction": float(frac[units[m]])})
    cols = ["layer", "layer_name", "unit", "cluster", "cluster_size", "mean_correlation",
            "active_fraction"]
    return pd.DataFrame(rows, columns=cols)


def coactivation_matrix(samples: Mapping[str, np.ndarray], clusters: pd.DataFrame, layer: int,
                        max_units: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlation matrix of a layer's clustered units (largest clusters first, at most
    `max_units`), for the figure. Returns (corr (m, m), units (m,), cluster ids (m,))."""
    sub = clusters[clusters["layer"] == layer].sort_values(["cluster", "unit"]).head(max_units)
    if sub.empty:
        return np.zeros((0, 0)), np.zeros(0, int), np.zeros(0, int)
    acts = samples[sub["layer_name"].iloc[0]][:, sub["unit"].to_numpy()].astype(np.float64)
    return np.corrcoef(acts, rowvar=False), sub["unit"].to_numpy(), sub["cluster"].to_numpy()


def census_analysis(model: nn.Module, images: np.ndarray, opt: Optimiser, *, batch_size: int,
                    steps: int, random_starts: int, max_optimised: int | None,
                    coactivation_samples: int, coactivation_threshold: float,
                    coactivation_units_shown: int) -> dict[str, pd.DataFrame]:
    """Figure set 6 as one job, on the training images (N, C, H, W).

    Returns tables: `dead_neurons` (per unit: census + revival), `dead_summary` (per layer),
    `coactivation_clusters` (per clustered unit) and `coactivation_matrix` (long format: layer,
    row_unit, col_unit, correlation of the shown units, largest clusters first).
    """
    census, samples = activation_census(model, images, batch_size=batch_size,
                                        keep=coactivation_samples, random_state=opt.seed)
    census = revive_dead(model, census, opt, steps=steps, random_starts=random_starts,
                         max_units=max_optimised)
    clusters = coactivation_clusters(samples, census, threshold=coactivation_threshold)
    parts = []
    for layer in sorted(clusters["layer"].unique()):
        corr, units, _ = coactivation_matrix(samples, clusters, int(layer), coactivation_units_shown)
        r, c = np.meshgrid(units, units, indexing="ij")
        parts.append(pd.DataFrame({"layer": int(layer), "row_unit": r.ravel().astype(np.int64),
                                   "col_unit": c.ravel().astype(np.int64),
                                   "correlation": corr.ravel().astype(np.float64)}))
    matrix = (pd.concat(parts, ignore_index=True) if parts else
              pd.DataFrame({"layer": pd.Series(dtype=np.int64), "row_unit": pd.Series(dtype=np.int64),
                            "col_unit": pd.Series(dtype=np.int64),
                            "correlation": pd.Series(dtype=np.float64)}))
    return {"dead_neurons": census, "dead_summary": census_summary(census),
            "coactivation_clusters": clusters, "coactivation_matrix": matrix}
