"""The featureviz stage's jobs, one per rule (workflow/rules/featureviz.smk): each compute job
loads one classifier, computes a figure set and writes its table (Parquet, with metadata) and
images (npz); `plot_featureviz` draws every figure of the classifier from them.

The torch modules are imported inside the compute jobs, after the job has set its seed and
threads, so the figure job starts without paying for torch.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from latent_atlas.data.store import load_dataset
from latent_atlas.featureviz import figures
from latent_atlas.io import library_versions, read_npz, read_parquet, read_parquet_metadata, write_npz, write_parquet
from latent_atlas.plotting import save_figure
from latent_atlas.runtime import Job
from latent_atlas.selection import restrict, selected_ids


def _classifier(job: Job):
    """The job's classifier (`job.input.model`) on the default device, weights frozen."""
    from latent_atlas.featureviz.optimise import prepare_model
    from latent_atlas.models.networks import load_model

    return prepare_model(load_model(job.input.model))


def _optimiser(optimiser: Mapping, seed: int):
    """The shared optimisation settings (featureviz lr, output_objective,
    clip_regulariser_gradients, tv_step) with the seed of the random starts."""
    from latent_atlas.featureviz.optimise import Optimiser

    return Optimiser.from_config(optimiser, seed)


def _model_class_names(model) -> list[str]:
    """The class names stored with the model (model.pt), else "0".."K-1"."""
    names = list(getattr(model, "class_names", []) or [])
    return names or [str(c) for c in range(int(model.n_classes))]


def _metadata(job: Job, model, class_names: Sequence[str], optimiser: Mapping, settings: Mapping) -> dict:
    """Key-value metadata of every featureviz table: where it came from and with which settings."""
    return {"dataset": job.wildcards.dataset, "model": job.wildcards.model,
            "arch": getattr(model, "arch", type(model).__name__),
            "class_names": list(class_names),
            "optimiser": dict(optimiser), "settings": dict(settings),
            "versions": library_versions()}


def _write_result(job: Job, table: pd.DataFrame, images: np.ndarray, metadata: Mapping,
                  **arrays: np.ndarray) -> None:
    """A figure set's table (`job.output.table`) and images (`job.output.images`: `images`, extras)."""
    write_parquet(table, job.output.table, metadata=dict(metadata))
    write_npz(job.output.images, images=np.asarray(images, dtype=np.float32), **arrays)


def featureviz_unregularised(job: Job, *, seed: int, numeric_threads: int, optimiser: Mapping, settings: Mapping) -> None:
    """Figure set 1: unregularised images of every output neuron (and some hidden units), without
    and with clipping."""
    from latent_atlas.featureviz.sweeps import unregularised_outputs

    model, opt = _classifier(job), _optimiser(optimiser, seed)
    names = _model_class_names(model)
    table, images = unregularised_outputs(model, names, opt, **settings)
    _write_result(job, table, images, _metadata(job, model, names, optimiser, settings))


def featureviz_adversarial(job: Job, *, seed: int, numeric_threads: int, optimiser: Mapping, settings: Mapping) -> None:
    """Figure set 2: adversarial examples from real images of split `settings.split`, and their
    success rate per (source, target) class pair."""
    from latent_atlas.featureviz.adversarial import adversarial_examples, adversarial_success

    model, opt = _classifier(job), _optimiser(optimiser, seed)
    data = load_dataset(job.input.data)
    part = data.subset(data.split == settings["split"])
    table, images = adversarial_examples(model, part.images, part.labels, part.sample_id, data.class_names, opt,
                                         **{k: v for k, v in settings.items() if k != "split"})
    meta = _metadata(job, model, data.class_names, optimiser, settings)
    _write_result(job, table, images, meta)
    write_parquet(adversarial_success(table, data.class_names), job.output.success, metadata=meta)


def featureviz_tv_sweep(job: Job, *, seed: int, numeric_threads: int, optimiser: Mapping, settings: Mapping) -> None:
    """Figure set 3: TV-weight sweep of output neurons, with the mean of the training images each
    class claims with probability above `settings.confidence` (arrays `class_means`, `class_counts`)."""
    from latent_atlas.featureviz.describe import class_probabilities
    from latent_atlas.featureviz.sweeps import confident_class_means, tv_sweep

    model, opt = _classifier(job), _optimiser(optimiser, seed)
    confidence = settings["confidence"]
    data = load_dataset(job.input.data)
    train = data.train()
    table, images = tv_sweep(model, data.class_names, opt, **{k: v for k, v in settings.items() if k != "confidence"})
    means, counts = confident_class_means(class_probabilities(model, train.images), train.images, confidence)
    _write_result(job, table, images, {**_metadata(job, model, data.class_names, optimiser, settings), "confidence": confidence},
                  class_means=means, class_counts=counts)


def featureviz_tv_l1_grid(job: Job, *, seed: int, numeric_threads: int, optimiser: Mapping, settings: Mapping) -> None:
    """Figure set 4: TV x L1 grids of one output neuron and one hidden neuron."""
    from latent_atlas.featureviz.sweeps import tv_l1_grids

    model, opt = _classifier(job), _optimiser(optimiser, seed)
    names = _model_class_names(model)
    table, images = tv_l1_grids(model, names, opt, **settings)
    _write_result(job, table, images, _metadata(job, model, names, optimiser, settings))


def _start_pool(job: Job, samples: Mapping | None):
    """The images `start: auto` searches: the test split of the job's dataset, or with a
    selection (`samples`: featureviz.samples, file `job.input.samples`) its samples of any split
    in sample_id order."""
    data = load_dataset(job.input.data)
    if samples is None:
        return data.test()
    ids = selected_ids(samples, job.input.samples)
    return data.subset(restrict(ids, data.sample_id, f"{samples['key']}.file", job.input.samples,
                                among=f"dataset {data.name!r}"))


def featureviz_gallery(job: Job, *, samples: Mapping | None = None, seed: int, numeric_threads: int,
                       optimiser: Mapping, settings: Mapping) -> None:
    """Figure set 5: gallery of hidden layer `job.wildcards.layer`'s units. With `start: auto`,
    `start_images` seeded test images are the real starts to fall back on (gallery.auto_starts);
    `samples` (featureviz.samples; the rule passes it only where it is set, so it is not
    keyword-only): they are drawn from that selection instead."""
    from latent_atlas.featureviz.gallery import gallery

    model, opt = _classifier(job), _optimiser(optimiser, seed)
    n_real = settings["start_images"]
    real = real_ids = None
    if settings["start"] == "auto" and n_real > 0:
        pool = _start_pool(job, samples)
        rows = np.sort(np.random.default_rng(seed).permutation(len(pool.images))[:n_real])
        real, real_ids = pool.images[rows], pool.sample_id[rows]
    names = _model_class_names(model)
    table, images = gallery(model, names, opt, layer=int(job.wildcards.layer), images=real, image_ids=real_ids,
                            **{k: v for k, v in settings.items() if k != "start_images"})
    _write_result(job, table, images, _metadata(job, model, names, optimiser, settings))


def featureviz_census(job: Job, *, seed: int, numeric_threads: int, optimiser: Mapping, settings: Mapping) -> None:
    """Figure set 6: dead neurons per layer on the training split (can optimisation activate
    them?) and co-activating neuron clusters: one table per named output."""
    from latent_atlas.featureviz.census import census_analysis

    model, opt = _classifier(job), _optimiser(optimiser, seed)
    data = load_dataset(job.input.data)
    tables = census_analysis(model, data.train().images, opt, **settings)
    meta = _metadata(job, model, data.class_names, optimiser, settings)
    for name, table in tables.items():
        write_parquet(table, job.output[name], metadata=meta)


def _read_result(job: Job, name: str) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict]:
    """What `_write_result` wrote for input `name`: (table, arrays, metadata)."""
    table_path = job.input[f"{name}_table"]
    return read_parquet(table_path), read_npz(job.input[f"{name}_images"]), read_parquet_metadata(table_path)


def plot_featureviz(job: Job, *, show: int, display: str) -> None:
    """Every featureviz figure of one classifier, each from its table (the optional ones: the
    hidden TV x L1 panel and the galleries, as far as the rule names them in its outputs):
    `show` adversarial examples; images shown per `display` (per_image or fixed)."""
    out = job.output
    table, arrays, meta = _read_result(job, "unregularised")
    names = meta["class_names"]
    save_figure(figures.plot_unregularised(table, arrays["images"], names, display), out.unregularised)

    table, arrays, _ = _read_result(job, "adversarial")
    save_figure(figures.plot_adversarial_examples(table, arrays["images"], names, show=show),
                out.adversarial)
    save_figure(figures.plot_adversarial_success(read_parquet(job.input.adversarial_success), names),
                out.adversarial_success)

    table, arrays, meta = _read_result(job, "tv_sweep")
    save_figure(figures.plot_tv_sweep(table, arrays["images"], arrays["class_means"], arrays["class_counts"],
                                      names, meta["confidence"], display), out.tv_sweep)

    table, arrays, _ = _read_result(job, "tv_l1_grid")
    for panel in ("output", "hidden"):
        key = f"tv_l1_grid_{panel}"
        if key not in out.keys():
            continue
        rows = table[table["panel"] == panel]
        if rows.empty:
            raise ValueError(f"{job.input.tv_l1_grid_table}: no {panel!r} grid; rerun rule "
                             "featureviz_tv_l1_grid (featureviz.tv_l1_grid.hidden_layer changed?)")
        save_figure(figures.plot_tv_l1_grid(rows, arrays["images"], names, display), out[key])

    for key in out.keys():
        if key.startswith("gallery_layer"):
            table, arrays, _ = _read_result(job, key)
            save_figure(figures.plot_gallery(table, arrays["images"], display), out[key])

    save_figure(figures.plot_dead_neurons(read_parquet(job.input.dead_summary)), out.dead_neurons)
    save_figure(figures.plot_coactivation(read_parquet(job.input.coactivation_matrix),
                                          read_parquet(job.input.coactivation_clusters)), out.coactivation)
