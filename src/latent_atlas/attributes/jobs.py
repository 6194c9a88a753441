"""The attributes stage's jobs, one per rule of workflow/rules/attributes.smk.

`attribute_probes` reads a model's latents and its dataset's attribute table
(results/data/{dataset}/attributes.parquet) and writes, per attribute, the probe's scores, the
directions, the angles between them and the latent dimensions that carry it;
`disentanglement` scores the code against the factors (MIG, DCI, SAP); `attribute_traversals`
decodes (or finds the nearest real images of) walks along attribute directions, latent axes and
principal components, and the attribute-arithmetic panel; `plot_attributes` draws a model's
figures; `attribute_scores` gathers a dataset's scores of every model, `plot_attribute_scores`
draws them side by side.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from latent_atlas.io import read_parquet, read_parquet_metadata, write_parquet
from latent_atlas.latents import read_latent_ids, read_latents
from latent_atlas.runtime import Job, log

CLASS = "class"


# --------------------------------------------------------------------------------------------
# Reading: the latents and the attributes of the same samples
# --------------------------------------------------------------------------------------------

def read_attributes(path) -> tuple[pd.DataFrame, dict[str, dict]]:
    """The attribute table (`data.attributes`) and its column descriptions by name."""
    described = read_parquet_metadata(path).get("attributes") or []
    return read_parquet(path), {d["name"]: d for d in described}


def chosen_names(names: Sequence[str] | None, described: Mapping[str, dict], key: str, path) -> list[str]:
    """The attributes `names` selects (None: every attribute); an unknown name is a ValueError
    naming `key` and listing what the dataset has."""
    if names is None:
        return list(described)
    unknown = [n for n in names if n not in described]
    if unknown:
        raise ValueError(f"{key}: unknown attribute(s) {unknown}; dataset's attributes ({path}): "
                         f"{', '.join(described)}")
    return list(dict.fromkeys(names))


def default_factors(described: Mapping[str, dict]) -> list[str]:
    """Factors of the disentanglement scores when `attributes.factors` is null: every attribute but
    the class where there are others, else the class."""
    others = [n for n in described if n != CLASS]
    return others or [CLASS]


def split_rows(split: np.ndarray, which: str, max_samples: int, seed: int) -> np.ndarray:
    """Positions of at most `max_samples` seeded rows of split `which` ('all': every split),
    ascending."""
    from latent_atlas.projections import subsample_indices

    rows = np.arange(len(split)) if which == "all" else np.flatnonzero(np.asarray(split) == which)
    return rows[subsample_indices(len(rows), min(int(max_samples), len(rows)), int(seed))]


def aligned(latents, attributes: pd.DataFrame, path) -> pd.DataFrame:
    """The attribute rows of the latents' samples, in the latents' order."""
    from latent_atlas.explain.samples import positions_of

    rows = positions_of(attributes["sample_id"], latents.ids["sample_id"].to_numpy(), str(path))
    return attributes.iloc[rows].reset_index(drop=True)


def _ordered(described: dict, values: np.ndarray) -> bool:
    from latent_atlas.attributes.probes import is_ordered

    return is_ordered(described.get("levels"), described.get("origin", ""), len(np.unique(values)))


# --------------------------------------------------------------------------------------------
# attribute_probes
# --------------------------------------------------------------------------------------------

def attribute_probes(job: Job, *, seed: int, numeric_threads: int, names: Sequence[str] | None, split: str,
                     max_samples: int, cv_folds: int, mi_bins: int, top_dimensions: int) -> None:
    """Per attribute of `names` on at most `max_samples` seeded samples of `split`: the
    cross-validated probe, the directions (mean difference, probe normal) and the angle between
    them, the angles between attributes, and every latent dimension's mutual information and
    |correlation| with it (ranked; `top_dimensions` logged)."""
    from latent_atlas.attributes.probes import angle, check_attribute, dimension_scores, directions, probe

    table, described = read_attributes(job.input.attributes)
    chosen = chosen_names(names, described, "attributes.names", job.input.attributes)
    rows = split_rows(read_latent_ids(job.input.latents)["split"].to_numpy(), split, max_samples, seed)
    latents = read_latents(job.input.latents, rows)  # those rows alone, in that order
    attrs = aligned(latents, table, job.input.attributes)
    rows = np.arange(len(rows))
    Z = latents.z.astype(np.float64)
    probes, direction_rows, dims = [], [], []
    vectors: dict[str, np.ndarray] = {}
    for name in chosen:
        y = check_attribute(attrs[name].to_numpy()[rows], name, "attributes.names")
        ordered = _ordered(described[name], y)
        row = {"attribute": name, "n_samples": len(rows), "n_values": len(np.unique(y)), "ordered": ordered,
               **probe(Z, y, cv_folds, random_state=int(seed))}
        if ordered:
            found = directions(Z, y, random_state=int(seed))
            row["direction_angle"] = angle(found["mean_difference"], found["probe_normal"])
            vectors[name] = found["mean_difference"]
            for kind, v in found.items():
                direction_rows.append({"attribute": name, "kind": kind, "norm": float(np.linalg.norm(v)),
                                       **{f"z{j}": float(x) for j, x in enumerate(v)}})
        else:
            row["direction_angle"] = float("nan")
        probes.append(row)
        scores = dimension_scores(Z, y, ordered, mi_bins)
        dims.append(scores.assign(attribute=name)[["attribute", *scores.columns]])
        top = scores.sort_values("rank").head(top_dimensions)
        log.info("%s: balanced accuracy %.3f, ROC AUC %.3f; top dimensions %s", name, row["balanced_accuracy"],
                 row["roc_auc"], ", ".join(f"z{d}" for d in top["dim"]))
    angles = [{"attribute_a": a, "attribute_b": b, "angle": angle(vectors[a], vectors[b])}
              for a in vectors for b in vectors]
    meta = {"dataset": job.wildcards.dataset, "model": job.wildcards.model, "split": split}
    write_parquet(pd.DataFrame(probes), job.output.probes, meta)
    columns = ["attribute", "kind", "norm", *[f"z{j}" for j in range(Z.shape[1])]]
    write_parquet(pd.DataFrame(direction_rows, columns=columns), job.output.directions, meta)
    write_parquet(pd.DataFrame(angles, columns=["attribute_a", "attribute_b", "angle"]), job.output.angles, meta)
    write_parquet(pd.concat(dims, ignore_index=True), job.output.dimensions, meta)


# --------------------------------------------------------------------------------------------
# disentanglement
# --------------------------------------------------------------------------------------------

def disentanglement(job: Job, *, seed: int, numeric_threads: int, factors: Sequence[str] | None,
                    max_samples: int, mi_bins: int, dci: Mapping[str, Any]) -> None:
    """MIG (on the test samples), DCI and SAP (fitted on the train samples, scored on the test
    samples; at most `max_samples` seeded samples of each split) of the code against `factors`.
    Writes one row per score (naming the factors), the per-factor parts, and DCI's importance
    matrix."""
    from latent_atlas.attributes.disentanglement import dci as dci_score, mig, sap
    from latent_atlas.attributes.probes import check_attribute

    table, described = read_attributes(job.input.attributes)
    used = chosen_names(factors, described, "attributes.factors", job.input.attributes) if factors is not None \
        else default_factors(described)
    split = read_latent_ids(job.input.latents)["split"].to_numpy()
    train = split_rows(split, "train", max_samples, seed)
    test = split_rows(split, "test", max_samples, seed)
    latents = read_latents(job.input.latents, np.concatenate([train, test]))  # those rows alone
    attrs = aligned(latents, table, job.input.attributes)
    train, test = np.arange(len(train)), np.arange(len(train), len(train) + len(test))
    for name in used:
        check_attribute(attrs[name].to_numpy()[train], name, "attributes.factors")
        check_attribute(attrs[name].to_numpy()[test], name, "attributes.factors")
    V = np.stack([attrs[n].to_numpy().astype(np.int64) for n in used], axis=1)
    Z = latents.z.astype(np.float64)
    continuous = [_ordered(described[n], V[:, k]) and len(np.unique(V[:, k])) > 2 for k, n in enumerate(used)]
    m = mig(Z[test], V[test], n_bins=mi_bins, names=used)
    d = dci_score(Z[train], V[train], Z[test], V[test], regressor=dci["regressor"],
                  n_estimators=dci["n_estimators"], max_depth=dci["max_depth"], alpha=dci["alpha"],
                  random_state=int(seed), names=used)
    s = sap(Z[train], V[train], Z[test], V[test], continuous=continuous, names=used)
    listed = ", ".join(used)
    rows = [("mig", m["mig"]), ("dci_disentanglement", d["disentanglement"]),
            ("dci_completeness", d["completeness"]), ("dci_informativeness", d["informativeness"]),
            ("sap", s["sap"])]
    scores = pd.DataFrame({"model": job.wildcards.model, "score": [r[0] for r in rows],
                           "value": [float(r[1]) for r in rows], "factors": listed,
                           "n_train": len(train), "n_test": len(test)})
    per_factor = pd.DataFrame({"factor": used, "continuous": continuous, "entropy": m["factor_entropy"],
                               "mig_gap": m["factor_gaps"], "top_dimension": m["top_dimension"],
                               "dci_completeness": d["factor_completeness"],
                               "dci_informativeness": d["factor_informativeness"], "sap_gap": s["factor_gaps"]})
    importance = pd.DataFrame(d["importance"], columns=used).assign(dim=np.arange(Z.shape[1]))
    meta = {"dataset": job.wildcards.dataset, "model": job.wildcards.model, "factors": used,
            "dci_regressor": dci["regressor"]}
    log.info("%s: %s (factors: %s)", job.wildcards.model,
             ", ".join(f"{r[0]} {r[1]:.3f}" for r in rows), listed)
    write_parquet(scores, job.output.scores, meta)
    write_parquet(per_factor, job.output.factors, meta)
    write_parquet(importance[["dim", *used]], job.output.importance, meta)


# --------------------------------------------------------------------------------------------
# attribute_traversals
# --------------------------------------------------------------------------------------------

def traversed_attributes(probes: pd.DataFrame, n: int) -> list[str]:
    """The `n` attributes with a direction that the probes predict best (ROC AUC, then order)."""
    ordered = probes[probes["ordered"]].reset_index(drop=True)
    ranked = ordered.assign(position=np.arange(len(ordered))).sort_values(["roc_auc", "position"],
                                                                          ascending=[False, True])
    return ranked["attribute"].head(int(n)).tolist()


def arithmetic_attribute(probes: pd.DataFrame, name: str | None, key: str) -> str | None:
    """The attribute of the arithmetic panel: `name` (an attribute with a direction: binary or
    ordered), or the best-predicted binary attribute, else the best-predicted ordered one (None
    when there is no attribute with a direction)."""
    ordered = probes[probes["ordered"]]
    if name is not None:
        if name not in set(ordered["attribute"]):
            raise ValueError(f"{key}: {name!r} is not a binary or ordered attribute of the probed ones "
                             f"({', '.join(ordered['attribute']) or 'none'})")
        return name
    binary = ordered[ordered["n_values"] == 2]
    chosen = traversed_attributes(binary if len(binary) else ordered, 1)
    return chosen[0] if chosen else None


def _level_name(described: Mapping[str, Any], value: int) -> str:
    levels = described.get("levels")
    if levels is not None and 0 <= value < len(levels) and levels[value] is not None:
        level = levels[value]
        return f"{level:g}" if isinstance(level, float) else str(level)
    return str(value)


def _start_rows(ids: pd.DataFrame, candidates: np.ndarray, named: Sequence[int], n: int, seed: int,
                path) -> np.ndarray:
    """Rows of the traversals' start samples: the named sample ids, or `n` seeded rows of
    `candidates`."""
    from latent_atlas.explain.samples import positions_of
    from latent_atlas.projections import subsample_indices

    if named:
        return positions_of(ids["sample_id"], np.asarray(named, np.int64), str(path))
    return candidates[subsample_indices(len(candidates), min(int(n), len(candidates)), int(seed))]


def attribute_traversals(job: Job, *, seed: int, numeric_threads: int, split: str, max_samples: int,
                         traversal: Mapping[str, Any], arithmetic: str | None, decode: bool) -> None:
    """Walks from `traversal.samples` seeded samples of `split` (or `traversal.ids`) along the
    directions of the best-probed attributes, the largest-variance latent axes and the principal
    components (steps in stds along each, on the probes' samples), and the attribute-arithmetic
    panel; `decode`: the model's decoder draws each code, else the nearest real image shows it."""
    from latent_atlas.attributes.traversals import largest_variance_axes, principal_components, walk
    from latent_atlas.data.store import load_dataset

    table, described = read_attributes(job.input.attributes)
    probes, directions = read_parquet(job.input.probes), read_parquet(job.input.directions)
    every = read_latent_ids(job.input.latents)
    rows = split_rows(every["split"].to_numpy(), split, max_samples, seed)
    starts = _start_rows(every, rows, traversal["ids"], traversal["samples"], seed, job.input.latents)
    # A decoder needs the codes of the analysed rows and the starts alone; the nearest real image
    # is searched among every sample.
    kept = np.unique(np.concatenate([rows, starts])) if decode else np.arange(len(every))
    latents = read_latents(job.input.latents, kept)
    rows, starts = np.searchsorted(kept, rows), np.searchsorted(kept, starts)
    attrs = aligned(latents, table, job.input.attributes)
    ids = latents.ids
    Z = latents.z[rows].astype(np.float64)
    d = Z.shape[1]
    dataset = load_dataset(job.input.data)
    store_rows = _store_positions(dataset, ids["sample_id"].to_numpy())
    steps = [float(s) for s in traversal["steps"]]
    draw = _drawer(job, decode, dataset, store_rows, latents)
    z0 = draw.codes(starts)
    out: list[dict] = []

    def add(panel: str, name: str, codes: np.ndarray, start_rows: np.ndarray, labels: Sequence[str],
            step_values: Sequence[float]) -> None:
        images, shown = draw.images(codes.reshape(-1, d))
        k = codes.shape[1]
        for i, (image, shown_id) in enumerate(zip(images, shown)):
            s, c = divmod(i, k)
            out.append({"panel": panel, "name": name, "start": s,
                        "sample_id": int(ids["sample_id"].iat[start_rows[s]]), "column": c,
                        "label": labels[c], "step": step_values[c], "shown_id": int(shown_id),
                        "image": _to_bytes(image)})

    labels = [f"{s:+g}σ" if s else "0" for s in steps]
    by_attribute = directions[directions["kind"] == "mean_difference"].set_index("attribute")
    for name in traversed_attributes(probes, traversal["attributes"]):
        u = by_attribute.loc[name, [f"z{j}" for j in range(d)]].to_numpy(np.float64)
        add("attribute", name, walk(z0, u, Z, steps), starts, labels, steps)
    for j in largest_variance_axes(Z, traversal["axes"]):
        add("axis", f"z{j}", walk(z0, np.eye(d)[j], Z, steps), starts, labels, steps)
    for i, v in enumerate(principal_components(Z, min(traversal["components"], d, len(Z)))):
        add("component", f"PC{i + 1}", walk(z0, v, Z, steps), starts, labels, steps)
    name = arithmetic_attribute(probes, arithmetic, "attributes.traversal.arithmetic")
    if name is not None:
        # the difference of the means at the attribute's highest and lowest values (binary: with -
        # without), added to samples at the lowest value and subtracted from those at the highest
        diff = by_attribute.loc[name, [f"z{j}" for j in range(d)]].to_numpy(np.float64)
        values = attrs[name].to_numpy()
        low, high = int(values[rows].min()), int(values[rows].max())
        if set(np.unique(values[rows])) == {0, 1} and described[name].get("levels") is None:
            moved = f"({name} − not)"
        else:
            moved = f"({name} {_level_name(described[name], high)} − {_level_name(described[name], low)})"
        for value, sign, panel in ((low, 1.0, "arithmetic_without"), (high, -1.0, "arithmetic_with")):
            chosen = _start_rows(ids, rows[values[rows] == value], [], traversal["samples"], seed,
                                 job.input.latents)
            base = draw.codes(chosen)
            codes = np.stack([base, (base.astype(np.float64) + sign * diff).astype(np.float32)], axis=1)
            add(panel, name, codes, chosen, ["code" if decode else "nearest", f"{'+' if sign > 0 else '−'} {moved}"],
                [0.0, sign])
            for s, image in enumerate(draw.originals(chosen)):
                out.append({"panel": panel, "name": name, "start": s,
                            "sample_id": int(ids["sample_id"].iat[chosen[s]]), "column": -1, "label": "input",
                            "step": float("nan"), "shown_id": int(ids["sample_id"].iat[chosen[s]]),
                            "image": _to_bytes(image)})
    # each panel's names in the order walked (attributes best probed first), then start and column
    frame = pd.DataFrame(out)
    frame.insert(2, "rank", frame.groupby("panel", sort=False)["name"].transform(
        lambda names: pd.Series(pd.factorize(names)[0], index=names.index)))
    frame = frame.sort_values(["panel", "rank", "start", "column"], kind="stable")
    meta = {"dataset": job.wildcards.dataset, "model": job.wildcards.model, "decoded": bool(decode),
            "shape": list(dataset.images.shape[1:]), "steps": steps,
            "axes": dataset.axes.to_metadata() if dataset.axes is not None else None}
    log.info("%d traversal images (%s)", len(frame), "decoded" if decode else "nearest real images")
    write_parquet(frame.reset_index(drop=True), job.output[0], meta)


def _store_positions(dataset, sample_ids: np.ndarray) -> np.ndarray:
    from latent_atlas.explain.samples import positions_of

    return positions_of(dataset.sample_id, sample_ids, "the dataset store")


def _to_bytes(image: np.ndarray) -> bytes:
    """An image (C, H, W) in [0, 1] as uint8 bytes (what the figures show)."""
    return np.clip(np.round(np.asarray(image, np.float64) * 255), 0, 255).astype(np.uint8).tobytes()


class _Drawer:
    """What a traversal shows: the stored images of latents rows (`store_rows` maps a row of the
    latents read to its row in the dataset store)."""

    def __init__(self, dataset, store_rows: np.ndarray):
        self.dataset, self.store_rows = dataset, store_rows

    def originals(self, rows: np.ndarray) -> np.ndarray:
        return self.dataset.images[self.store_rows[rows]]


class _Decoded(_Drawer):
    """Codes from the model's encoder, images from its decoder, one sample at a time (a batch of one
    each way: the unmodified code decodes to exactly the model's reconstruction of that sample)."""

    def __init__(self, model, dataset, store_rows: np.ndarray):
        super().__init__(dataset, store_rows)
        self.model = model

    def codes(self, rows: np.ndarray) -> np.ndarray:
        from latent_atlas.devices import infer

        return infer(self.model.encode, self.originals(rows), batch_size=1)

    def images(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from latent_atlas.devices import infer

        return infer(self.model.decode, codes.astype(np.float32), batch_size=1), np.full(len(codes), -1)


class _Nearest(_Drawer):
    """Codes from the latents table, images: the real sample whose latent is nearest each code."""

    def __init__(self, dataset, store_rows: np.ndarray, z: np.ndarray, sample_ids: np.ndarray):
        super().__init__(dataset, store_rows)
        self.z, self.sample_ids = z, sample_ids

    def codes(self, rows: np.ndarray) -> np.ndarray:
        return self.z[rows]

    def images(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from latent_atlas.attributes.traversals import nearest_rows

        near = nearest_rows(self.z, codes)
        return self.originals(near), self.sample_ids[near]


def _drawer(job: Job, decode: bool, dataset, store_rows: np.ndarray, latents):
    if decode:
        from latent_atlas.devices import default_device
        from latent_atlas.models.networks import load_model

        return _Decoded(load_model(job.input.model, map_location=default_device()), dataset, store_rows)
    return _Nearest(dataset, store_rows, latents.z, latents.ids["sample_id"].to_numpy())


# --------------------------------------------------------------------------------------------
# Figures and the dataset's scores
# --------------------------------------------------------------------------------------------

def plot_attributes(job: Job, *, top_dimensions: int) -> None:
    """A model's attribute figures: probes, the attribute x top-dimensions heatmap (top
    `top_dimensions` outlined), the direction angles, the disentanglement per factor, and the
    traversal grids (attribute directions, latent axes, principal components, arithmetic)."""
    from latent_atlas.attributes import figures
    from latent_atlas.plotting import save_figure, use_style

    use_style()
    i, o, model = job.input, job.output, job.wildcards.model
    save_figure(figures.plot_probes(read_parquet(i.probes), f"{model}: linear probes of the attributes"), o.probes)
    save_figure(figures.plot_dimensions(read_parquet(i.dimensions), int(top_dimensions),
                                        f"{model}: which latent dimensions carry which attribute"), o.dimensions)
    save_figure(figures.plot_angles(read_parquet(i.angles), f"{model}: angles between attribute directions"),
                o.angles)
    save_figure(figures.plot_factor_scores(read_parquet(i.factors), read_parquet(i.importance),
                                           f"{model}: disentanglement per factor"), o.disentanglement)
    table, meta = read_parquet(i.traversals), read_parquet_metadata(i.traversals)
    shape, decoded = meta["shape"], meta["decoded"]
    for out, panels, what in ((o.traversals, ["attribute"], "along attribute directions"),
                              (o.axes, ["axis"], "along the latent axes of largest variance"),
                              (o.components, ["component"], "along the principal components"),
                              (o.arithmetic, ["arithmetic_without", "arithmetic_with"], "attribute arithmetic")):
        save_figure(figures.plot_traversals(table, panels, shape, decoded, f"{model}: {what}"), out)


def attribute_scores(job: Job) -> None:
    """Every attributes model's disentanglement scores of a dataset in one table (one row per
    model and score, naming the factors)."""
    tables = [read_parquet(path) for path in job.input]
    write_parquet(pd.concat(tables, ignore_index=True), job.output[0], {"dataset": job.wildcards.dataset})


def plot_attribute_scores(job: Job) -> None:
    """The dataset's models' disentanglement scores side by side."""
    from latent_atlas.attributes.figures import plot_scores
    from latent_atlas.plotting import save_figure, use_style

    use_style()
    save_figure(plot_scores(read_parquet(job.input[0]), f"{job.wildcards.dataset}: disentanglement scores"),
                list(job.output))
