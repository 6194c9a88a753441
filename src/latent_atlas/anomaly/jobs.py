"""The anomaly stage's jobs, one per rule (workflow/rules/anomaly.smk): read, compute, write.

Which samples are normal: `anomaly.normal_classes`, else the model's `train.classes` (the
one-class protocol; the workflow passes them as `normal_classes`), else the class "normal" of a
dataset whose classes are "normal" and "anomaly" (a series' anomaly_column), else none: the
scores, the top anomalies and the distribution are written, and the summary and curves are
empty. Attribute values narrow it (or alone say it): `anomaly.normal_attributes`, else the
model's `train.attributes` (a voice held out while the classes stay the digits).

Where each threshold comes from (`threshold_on` in the summary): the validation samples the
model's training held out (`validation`: the same seeded carve-out of the train split as
`models.training.split_train_validation`), normal ones only, which neither the model nor the
baselines were fitted on; without a validation set (a loaded model, validation_fraction 0) the
train split's normal samples, on which the model's and the baselines' scores are optimistic, so
their false-positive rate on the test split runs above anomaly.fpr (the summary says which).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from latent_atlas.data.store import SAMPLES_FILE, DataError, load_dataset, store_folder
from latent_atlas.io import read_npz, read_parquet, read_parquet_metadata, write_npz, write_parquet
from latent_atlas.latents import read_latents
from latent_atlas.runtime import Job, configure_torch, log

# Bytes of raw inputs (as float32) the baselines are fitted on at most: max_fit rows, fewer for
# large inputs (20,000 CelebA faces of 96x96x3 would take 2.2 GB).
FIT_BYTES = 512 << 20


class _Flat:
    """Rows of a dataset's samples, flattened to (n, C*H*W) float32 as they are sliced (the
    baselines score a chunk at a time, so the raw inputs are never all in memory)."""

    ndim = 2

    def __init__(self, images, rows: np.ndarray):
        self.images, self.rows = images, np.asarray(rows, np.int64)
        self.shape = (len(self.rows), int(np.prod(images.shape[1:])))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: slice) -> np.ndarray:
        return np.asarray(self.images[self.rows[key]], np.float32).reshape(-1, self.shape[1])


def normal_mask(labels: np.ndarray, class_names: Sequence[str], normal_classes, key: str) -> np.ndarray | None:
    """True where a sample is normal, False where it is an anomaly; None when nothing says."""
    from latent_atlas.data.labels import select_classes

    if normal_classes:
        keep = select_classes(labels, class_names, normal_classes, key)[0]
        if keep.all():
            raise DataError(f"{key}: every class is normal ({', '.join(class_names)}): there is no anomaly to find")
        return keep
    if sorted(class_names) == ["anomaly", "normal"]:
        return labels == list(class_names).index("normal")
    return None


def validation_rows(labels: np.ndarray, split: np.ndarray, class_names: Sequence[str],
                    validation: Mapping[str, Any] | None, seed: int, key: str,
                    trained_attributes: np.ndarray | None = None) -> np.ndarray:
    """Positions of the samples the model's training held out for validation (empty when there
    is none): the training's own carve-out of the train split of the samples it saw (those of
    validation["classes"] and, where validation["attributes"] is set, where `trained_attributes`,
    the (n,) mask of its attribute values, is True)."""
    from latent_atlas.data.labels import select_classes
    from latent_atlas.models.training import split_train_validation

    if not validation or not validation.get("validation_fraction"):
        return np.zeros(0, np.int64)
    seen = np.ones(len(labels), bool)
    if validation.get("classes"):
        seen &= select_classes(labels, class_names, validation["classes"], key)[0]
    if validation.get("attributes"):
        seen &= trained_attributes
    seen = np.flatnonzero(seen)
    pool = np.flatnonzero(split[seen] == "train")
    _, held = split_train_validation(pool, float(validation["validation_fraction"]), int(seed),
                                     validation.get("max_train_samples"))
    return seen[held]


def anomaly_scores(job: Job, *, seed: int, numeric_threads: int, normal_classes: Sequence[Any] | None,
                   normal_attributes: Mapping[str, Sequence[Any]] | None, validation: Mapping[str, Any] | None, error: str, fpr: float, top_k: int, batch_size: int,
                   baselines: Mapping[str, Any]) -> None:
    """The anomaly tables of model `job.wildcards.model` (module docstring): its reconstruction
    error (anomaly.error; a VAE's negative ELBO too) for every sample of the dataset store
    `job.input.data`, batches of `batch_size`; the PyOD `baselines` (methods, inputs raw and/or
    latent from `job.input.latents`, max_fit, k), fitted on the training samples the model was
    fitted on (normal ones; seeded with `seed`) and scoring the test split and the threshold's
    reference samples; per method, ROC and PR on the test split and the confusion table at the
    threshold that flags `fpr` of the reference normals; the `top_k` test samples by the model's
    score with their per-cell errors."""
    configure_torch()
    from latent_atlas.anomaly import scores as sc
    from latent_atlas.anomaly.baselines import baseline_scores, fit_rows
    from latent_atlas.data.attributes import attribute_mask
    from latent_atlas.devices import default_device
    from latent_atlas.models.networks import load_model

    model_name = job.wildcards.model
    ds = load_dataset(job.input.data)
    model = load_model(job.input.model, map_location=default_device())
    n = len(ds)
    normal = normal_mask(ds.labels, ds.class_names, normal_classes, "anomaly.normal_classes")
    trained_attributes = None
    if (validation or {}).get("attributes"):
        trained_attributes = attribute_mask(job.input.attributes, ds.sample_id, validation["attributes"],
                                            f"models.{model_name}.train.attributes")
    if normal_attributes:
        by_attributes = attribute_mask(job.input.attributes, ds.sample_id, normal_attributes,
                                       "anomaly.normal_attributes")
        if by_attributes.all() and (normal is None or normal.all()):
            raise DataError("anomaly.normal_attributes: every sample is normal: there is no anomaly to find")
        normal = by_attributes if normal is None else normal & by_attributes
    train, test = ds.split == "train", ds.split == "test"
    held = np.zeros(n, bool)
    held[validation_rows(ds.labels, ds.split, ds.class_names, validation, seed,
                         f"models.{model_name}.train.classes", trained_attributes)] = True
    usual = normal if normal is not None else np.ones(n, bool)  # without labels every sample counts as normal
    fitted = train & ~held & usual
    reference = held & usual
    threshold_on = "validation"
    if not reference.any():
        reference, threshold_on = train & usual, "train"
        log.info("%s: no validation samples to set thresholds on: the train split's %s samples are used "
                 "(optimistic: the test false-positive rate runs above anomaly.fpr)", model_name,
                 "normal" if normal is not None else "")

    def stream(rows: np.ndarray):
        for start in range(0, len(rows), int(batch_size)):
            yield np.asarray(ds.images[rows[start:start + int(batch_size)]], np.float32)

    every = np.arange(n)
    scale = sc.residual_scale(model, stream(np.flatnonzero(fitted))) if error == "standardised" else None
    table = pd.DataFrame({"sample_id": ds.sample_id, "split": ds.split, "label": ds.labels,
                          "label_name": np.asarray(ds.class_names)[ds.labels],
                          "is_anomaly": ~usual})
    table["score"] = sc.reconstruction_scores(model, stream(every), error, scale).score
    if getattr(model, "variational", False):
        table["neg_elbo"] = sc.negative_elbo(model, stream(every))
    log.info("%s: %s of %d samples scored", model_name, error, n)

    scored = np.flatnonzero(test | reference)
    fit = np.flatnonzero(fitted)
    inputs = {}
    if "raw" in baselines["inputs"]:
        d = int(np.prod(ds.images.shape[1:]))
        cap = max(10, min(int(baselines["max_fit"]), FIT_BYTES // (4 * d)))
        if cap < min(int(baselines["max_fit"]), len(fit)):
            log.info("%s: baselines on raw inputs fitted on %d samples (%d values each), not max_fit %d",
                     model_name, cap, d, baselines["max_fit"])
        rows = fit[fit_rows(len(fit), cap, int(seed))]
        inputs["raw"] = (_Flat(ds.images, rows)[:], _Flat(ds.images, scored))
    if "latent" in baselines["inputs"]:
        latents = read_latents(job.input.latents)
        at = pd.Index(latents.ids["sample_id"]).get_indexer(ds.sample_id)
        if (at < 0).any():
            raise DataError(f"{job.input.latents} lacks {int((at < 0).sum())} samples of the dataset store")
        z = latents.z[at]
        inputs["latent"] = (z[fit], z[scored])
    for what, (train_x, x) in inputs.items():
        found = baseline_scores(train_x, x, methods=baselines["methods"], seed=int(seed),
                                max_fit=int(baselines["max_fit"]), k_neighbors=int(baselines["k"]))
        for method, values in found.items():
            column = np.full(n, np.nan)
            column[scored] = values
            table[f"{method}_{what}"] = column
        log.info("%s: baselines %s on %s inputs", model_name, ", ".join(found), what)

    summary, curves = _evaluate(table, test, reference, normal, fpr, threshold_on)
    order = np.flatnonzero(test if test.any() else np.ones(n, bool))
    top_rows = order[sc.top_k(table["score"].to_numpy()[order], int(top_k))]
    detail = sc.reconstruction_scores(model, stream(top_rows), error, scale, rows=range(len(top_rows)))
    top = table.iloc[top_rows][["sample_id", "label_name", "is_anomaly", "score"]].reset_index(drop=True)
    top.insert(0, "rank", np.arange(1, len(top) + 1))
    samples = read_parquet(store_folder(job.input.data) / SAMPLES_FILE)
    if "start_s" in samples:  # windows of a series: where each lies in its recording
        top["recording"] = samples["recording"].to_numpy()[top_rows]
        top["start_s"] = samples["start_s"].to_numpy()[top_rows]

    meta = {"dataset": job.wildcards.dataset, "model": model_name, "error": error, "fpr": float(fpr),
            "normal_classes": None if normal is None else [c for i, c in enumerate(ds.class_names)
                                                           if normal[ds.labels == i].any()],
            "threshold_on": threshold_on, "kind": ds.kind,
            # only where set: the tables of a run without attribute values keep their bytes
            **({"normal_attributes": dict(normal_attributes)} if normal_attributes else {})}
    write_parquet(table, job.output.scores, meta)
    write_parquet(summary, job.output.summary, meta)
    write_parquet(curves, job.output.curves, meta)
    write_parquet(top, job.output.top, meta)
    write_npz(job.output.cells, error=detail.cells, input=detail.inputs, reconstruction=detail.reconstructions)


def _evaluate(table: pd.DataFrame, test: np.ndarray, reference: np.ndarray, normal: np.ndarray | None,
              fpr: float, threshold_on: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per method (the model's scores and each baseline column): ROC, PR and the confusion table
    on the test split at the threshold from the reference normals. Empty without labels or
    without both normal and anomalous test samples."""
    from latent_atlas.anomaly import scores as sc

    rows, curves = [], []
    is_anomaly = table["is_anomaly"].to_numpy()
    if normal is None or len(set(is_anomaly[test])) < 2:
        return pd.DataFrame(columns=SUMMARY_COLUMNS), pd.DataFrame(columns=["method", "input", "curve", "x", "y"])
    for column in [c for c in table.columns if c == "score" or c == "neg_elbo" or c.rpartition("_")[2] in
                   ("raw", "latent")]:
        method, input = (column, "raw") if column in ("score", "neg_elbo") else column.rsplit("_", 1)
        values = table[column].to_numpy()
        result = sc.roc_pr(is_anomaly[test], values[test])
        threshold = sc.threshold_at_fpr(values[reference], fpr)
        confusion = sc.confusion_at(is_anomaly[test], values[test], threshold)
        rows.append({"method": method, "input": input, "roc_auc": result.roc_auc,
                     "average_precision": result.average_precision, "fpr_target": float(fpr),
                     "threshold": threshold, "threshold_on": threshold_on, **confusion})
        curves.append(sc.curve_table(method, input, result))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS), pd.concat(curves, ignore_index=True)


SUMMARY_COLUMNS = ["method", "input", "roc_auc", "average_precision", "fpr_target", "threshold", "threshold_on",
                   "tp", "fp", "tn", "fn", "fpr", "tpr", "precision"]


def plot_anomaly(job: Job) -> None:
    """The anomaly figures of a model from its tables: ROC and PR curves, the score per class,
    the top anomalies with their per-cell errors (images, channel x time maps or feature bars),
    and the ROC AUC per method."""
    from latent_atlas.anomaly import figures
    from latent_atlas.data.store import ImageAxes
    from latent_atlas.plotting import save_figure, use_style

    meta = read_parquet_metadata(job.input.scores)
    title = f"{meta['model']} on {meta['dataset']}"
    scores = read_parquet(job.input.scores)
    summary, curves = read_parquet(job.input.summary), read_parquet(job.input.curves)
    top, cells = read_parquet(job.input.top), read_npz(job.input.cells)
    axes = ImageAxes.from_metadata(read_parquet_metadata(job.input.samples))
    names = (axes.row_names or axes.col_names) if axes is not None else None
    rate = (axes.settings or {}).get("sample_rate") if axes is not None else None
    use_style()
    save_figure(figures.plot_curves(summary, curves, title), list(job.output.curves))
    save_figure(figures.plot_distribution(scores, summary, meta["error"], title=title), list(job.output.distribution))
    save_figure(figures.plot_top(top, cells["error"], cells["input"], cells["reconstruction"], meta["kind"],
                                 meta["error"], names=names, sample_rate=rate, title=title), list(job.output.top))
    save_figure(figures.plot_summary(summary, title), list(job.output.summary))
