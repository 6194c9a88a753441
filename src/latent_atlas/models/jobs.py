"""The models stage's jobs, one per rule (workflow/rules/models.smk): read inputs, compute, write.

The torch modules (networks, training, extract) are imported inside the jobs that use them, so
the figure jobs start without paying for torch.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from latent_atlas.data.store import ImageAxes, load_dataset
from latent_atlas.io import (read_npz, read_parquet, read_parquet_metadata, write_bytes, write_json, write_npz,
                             write_parquet, write_text)
from latent_atlas.latents import file_metadata, read_latents
from latent_atlas.models import figures
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import Job, configure_torch, log


def train(job: Job, *, seed: int, numeric_threads: int, arch: str, arch_params: Mapping[str, Any] | None,
          training: Mapping[str, Any] | None, checkpoint_dir: str) -> None:
    """model.pt, metrics.json and train_log.tsv of model `job.wildcards.model`: `arch` with
    `arch_params` (models.<name>.params) trained on the dataset `job.input[0]` with the settings
    `training` (models.<name>.train) and `seed`; torch runs on `numeric_threads` threads (set
    before the call; the weights' last bits depend on it, and the checkpoint records it). Rule
    train_with_snapshots also names a `snapshots` output: the folder that receives the record of
    each epoch in `training["snapshots"]` (`checkpoint.snapshot_path`).

    A rerun after a killed job resumes from `checkpoint_dir`, which is removed once the files are
    written.
    """
    # torch is imported after the job set its seed and threads: apply them before building the model
    torch = configure_torch()
    from latent_atlas.devices import default_device
    from latent_atlas.models import checkpoint
    from latent_atlas.models.networks import build_model, count_parameters, save_model
    from latent_atlas.models.training import train_model

    name, seed = job.wildcards.model, int(seed)
    ds = load_dataset(job.input[0])
    arch_params = output_for(arch, arch_params, ds.kind, name)
    n_classes = len(ds.class_names)
    keep = training_mask(ds, training or {}, job.input.get("attributes"), f"models.{name}.train")
    if keep is not None:
        ds = ds.subset(keep)
        log.info("%s: trained on %d samples only (%s)", name, len(ds),
                 "; ".join(f"{k} {v}" for k, v in (training or {}).items() if k in ("classes", "attributes") and v))
    torch.manual_seed(seed)
    model = build_model(arch, ds.images.shape[1:], n_classes, arch_params)
    device = default_device()
    log.info("%s: %s with %d parameters on %s, input %s", name, arch, count_parameters(model),
             device, tuple(ds.images.shape[1:]))
    record = {"class_names": ds.class_names, "dataset": ds.name, "name": name}  # model.pt's and each snapshot's
    result = train_model(model, ds.images, ds.labels, ds.split, training or {}, seed=seed,
                         checkpoint_dir=checkpoint_dir, name=name, device=device, record=record)
    result.metrics["dataset"] = ds.name
    save_model(result.model, job.output.model, **record)
    write_json(result.metrics, job.output.metrics)
    write_text(result.log.to_csv(sep="\t", index=False, lineterminator="\n", float_format="%.6g"),
               job.output.train_log)
    if "snapshots" in job.output.keys():
        # copied, not moved: until the job ends, Snakemake deletes its outputs when it fails, and
        # the checkpoint folder must still hold what a rerun resumes with
        for epoch, path in result.snapshots.items():
            write_bytes(path.read_bytes(), checkpoint.snapshot_path(job.output.snapshots, epoch))
    checkpoint.remove(checkpoint_dir)


def training_mask(ds, training: Mapping[str, Any], attributes_path: str | None, key: str) -> np.ndarray | None:
    """The samples of `ds` a model trains on: those of `training["classes"]` whose attributes
    (the table `attributes_path`) take the values `training["attributes"]` lists; None when neither
    is set (every sample). `key` is `models.<name>.train`."""
    keep = None
    if training.get("classes"):
        keep = class_mask(ds, training["classes"], f"{key}.classes")
    if training.get("attributes"):
        from latent_atlas.data.attributes import attribute_mask

        chosen = attribute_mask(attributes_path, ds.sample_id, training["attributes"], f"{key}.attributes")
        keep = chosen if keep is None else keep & chosen
    return keep


def class_mask(ds, classes, key: str) -> np.ndarray:
    """Samples of `ds` whose class is one of `classes` (names or labels 0..K-1); a class the
    dataset does not have is a DataError naming `key` and the dataset's classes."""
    from latent_atlas.data.labels import select_classes

    return select_classes(ds.labels, ds.class_names, classes, key)[0]


def output_for(arch: str, arch_params: Mapping[str, Any] | None, kind: str, name: str) -> dict:
    """`arch_params` with the autoencoder's `output` chosen for the data where the config leaves
    it out: linear (Gaussian loss) for standardised tables and series, whose values are not in
    [0, 1]; the arch's own default (sigmoid) for images. An explicit `output` is kept as it is."""
    from latent_atlas.models.archs import arch_kind

    params = dict(arch_params or {})
    if kind != "image" and arch_kind(arch) == "autoencoder" and "output" not in params:
        log.info("%s: %s data: output linear (a Gaussian loss on standardised values)", name, kind)
        params["output"] = "linear"
    return params


def snapshot_model(job: Job, *, epoch: int) -> None:
    """model.pt of a training snapshot, `<model>@<epoch>`: the record its model's train job kept
    after epoch `epoch` in its `snapshots` folder `job.input.snapshots`, the same bytes."""
    from latent_atlas.models.checkpoint import snapshot_path

    write_bytes(snapshot_path(job.input.snapshots, epoch).read_bytes(), job.output.model)


def import_model(job: Job, *, arch: str | None, arch_params: Mapping[str, Any] | None, kind: str | None,
                 source: Mapping[str, Any]) -> None:
    """model.pt of a model trained elsewhere (models.<name>.source), checked on the dataset
    `job.input.data`: a state dict of `arch` with `arch_params` gives the record training writes
    (same bytes for the same weights); torch.export and ONNX programs of `kind` give a record
    holding them (models.loaded). Errors name the config key, the file and what does not fit."""
    torch = configure_torch()
    from latent_atlas.models.archs import source_settings
    from latent_atlas.models.loaded import import_record, read_state_dict
    from latent_atlas.models.networks import build_model, save_model
    from latent_atlas.devices import infer

    name = job.wildcards.model
    source = source_settings({"source": source})
    ds = load_dataset(job.input.data)
    if source["format"] == "state_dict":
        key = f"models.{name}.source.weights"
        model = build_model(arch, ds.images.shape[1:], len(ds.class_names), arch_params or {})
        state = read_state_dict(source["weights"], key)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:  # names the missing, unexpected and mis-shaped tensors
            raise ValueError(f"{key}: {source['weights']} does not fit arch {arch!r} with params "
                             f"{model.params} on inputs {tuple(ds.images.shape[1:])}: {err}") from None
        model.eval()
        first = infer(model.encode if model.kind == "autoencoder" else model, ds.images[:64])
        if not np.isfinite(first).all():
            raise ValueError(f"{key}: {source['weights']} gives NaN or infinite outputs on the first batch")
        save_model(model, job.output.model, class_names=ds.class_names, dataset=ds.name, name=name)
        return
    import io

    record = import_record(name, kind, source, ds.images, len(ds.class_names), ds.class_names, ds.name)
    buf = io.BytesIO()
    torch.save(record, buf)
    write_bytes(buf.getvalue(), job.output.model)


def import_latents(job: Job, *, source: Mapping[str, Any], config_hash: str) -> None:
    """latents.parquet of a table of latents (models.<name>.source): matched to the dataset
    `job.input.data` by sample_id or row order, or standalone with its own labels; `config_hash`
    goes into its metadata."""
    from latent_atlas.models.archs import source_settings
    from latent_atlas.latents import id_frame, latents_frame_of
    from latent_atlas.models.embeddings import match_rows, read_table, standalone_ids

    name = job.wildcards.model
    source = source_settings({"source": source})
    key, path = f"models.{name}.source.table", source["table"]
    z, extra = read_table(path, key, source["columns"], source["label_column"])
    if source["match"] == "standalone":
        ids, dataset = standalone_ids(extra, len(z), source["label_column"], key, path), job.wildcards.dataset
    else:
        ds = load_dataset(job.input.data)
        rows = match_rows(ds.sample_id, extra.get("sample_id"), len(z), source["match"], key, path, ds.name)
        z, dataset = z[rows], ds.name
        ids = id_frame(ds.sample_id, ds.split, ds.labels, ds.class_names)
    write_parquet(latents_frame_of(ids, z), job.output.latents,
                  file_metadata(dataset, name, "latents", config_hash, latent_dim=int(z.shape[1]),
                                table=str(path)))
    log.info("%s: %d x %d latents from %s (match %s)", name, len(z), z.shape[1], path, source["match"])


def extract_model(job: Job, *, numeric_threads: int, settings: Mapping[str, Any], config_hash: str) -> None:
    """Everything computed from one trained model, loaded once: latents.parquet, and
    reconstructions.npz (autoencoders) or predictions.parquet and hidden.parquet (classifiers),
    as far as the rule names them in its outputs. `settings`: models.<name>.extract, defaults
    filled; `config_hash` goes into every table's metadata; torch runs on
    `numeric_threads` threads (set before the call)."""
    from latent_atlas.models import extract
    from latent_atlas.models.networks import load_model

    out, name = job.output, job.wildcards.model
    batch_size = settings["batch_size"]
    ds = load_dataset(job.input.data)
    model = load_model(job.input.model)
    if tuple(ds.images.shape[1:]) != tuple(model.input_shape):
        raise ValueError(f"{job.input.model} expects inputs {tuple(model.input_shape)}, "
                         f"{job.input.data} holds {tuple(ds.images.shape[1:])}")

    def metadata(**extra):
        return file_metadata(ds.name, name, model.arch, config_hash, **extra)

    z = extract.compute_latents(model, ds.images, batch_size)
    write_parquet(extract.latents_frame(ds, z), out.latents, metadata(latent_dim=model.latent_dim))
    log.info("%s: wrote %d x %d latents to %s", name, len(z), model.latent_dim, out.latents)
    if "reconstructions" in out.keys():
        write_npz(out.reconstructions, **extract.reconstruction_arrays(
            ds, model, settings["reconstructions_per_class"], batch_size))
    if "predictions" in out.keys():
        df = extract.predictions_frame(ds, *extract.compute_predictions(model, ds.images, batch_size))
        write_parquet(df, out.predictions, metadata(class_names=list(ds.class_names)))
        test = df["split"] == "test"
        log.info("%s: test accuracy %.4f from %s", name,
                 float((df.loc[test, "pred"] == df.loc[test, "label"]).mean()), out.predictions)
    if "hidden" in out.keys():
        rows = extract.hidden_rows(ds.split, settings["hidden_max_samples"])
        acts, layers = extract.compute_hidden(model, ds.images[rows], batch_size)
        write_parquet(extract.hidden_frame(ds, rows, acts, layers), out.hidden,
                      metadata(layers=[[n, u] for n, u in layers]))
        log.info("%s: wrote %d rows x %d hidden units (%s) to %s", name, len(rows), acts.shape[1],
                 ", ".join(f"{n} {u}" for n, u in layers), out.hidden)



def plot_model(job: Job) -> None:
    """A model's figures: loss (and accuracy) per epoch from train_log.tsv; originals,
    reconstructions and absolute errors (autoencoders) or the row-normalised confusion matrix of
    the test split (classifiers), as far as the rule names them in its outputs."""
    i, o, name = job.input, job.output, job.wildcards.model
    table = pd.read_csv(i.train_log, sep="\t")
    save_figure(figures.plot_training_curves(table, title=name), o.training_curves)
    if "reconstructions" in o.keys():
        r = read_npz(i.reconstructions)
        image_axes = ImageAxes.from_arrays(r)
        # Spectrograms read best in a perceptual colour map (as in the dataset figure).
        save_figure(figures.plot_reconstructions(r["original"], r["reconstruction"], r["label"],
                                                 list(r["class_names"]), title=name, axes=image_axes,
                                                 cmap="gray" if image_axes is None else "magma"),
                    o.reconstructions)
    if "confusion_matrix" in o.keys():
        df = read_parquet(i.predictions, columns=["split", "label", "pred"])
        test = df[df["split"] == "test"]
        class_names = read_parquet_metadata(i.predictions)["class_names"]
        save_figure(figures.plot_confusion_matrix(test["label"].to_numpy(), test["pred"].to_numpy(),
                                                  class_names, title=f"{name}, test split"),
                    o.confusion_matrix)



def plot_latent_scatter(job: Job) -> None:
    """2-D latents of the test split coloured by class."""
    latents = read_latents(job.input[0])
    test = (latents.ids["split"] == "test").to_numpy()
    fig = figures.plot_latent_scatter(latents.z[test], latents.ids["label"].to_numpy()[test],
                                      latents.class_names,
                                      title=f"{job.wildcards.model}: latents of the test split")
    save_figure(fig, job.output.latent_scatter)


def plot_first_layer_weights(job: Job) -> None:
    """First-layer weights of a dense model as image tiles (the first 64 units)."""
    from latent_atlas.models.networks import first_layer_weights, load_model

    weights = first_layer_weights(load_model(job.input[0])).numpy()
    fig = figures.plot_weight_tiles(weights, title=f"{job.wildcards.model}: first-layer weights "
                                                   f"({min(len(weights), 64)} of {len(weights)} units)")
    save_figure(fig, job.output.first_layer_weights)
