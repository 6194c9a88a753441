"""The importance stage's jobs, one per rule of workflow/rules/importance.smk.

A model's plan (image shape -> pixel blocks), one shard per pixel block, the gather of the shards
into pixel_importance.parquet, the per-class latent importance, the explorer page and the figures.
torch and numba are imported inside the two jobs that compute with them (importance_block,
latent_importance): the plan, gather, explorer and figure jobs start without them.
"""

from __future__ import annotations

from typing import Mapping

from latent_atlas.data.store import load_image_axes
from latent_atlas.schema import with_defaults
from latent_atlas.importance.explorer import write_explorer
from latent_atlas.importance.plan import pixel_blocks, plan
from latent_atlas.importance.tables import gather_shards, shard_outputs
from latent_atlas.io import read_parquet, write_json, write_parquet
from latent_atlas.runtime import Job


def settings_of(section: Mapping | None) -> dict:
    """The `importance:` config section with the schema's defaults filled in."""
    return with_defaults(section, "#/properties/importance", "importance")


def importance_plan(job: Job) -> None:
    """plan.json: image shape and number of pixel blocks of the model's dataset (a checkpoint)."""
    write_json(plan(job.input[0], job.params.block_size), job.output[0])


def _model_and_evaluation_set(job: Job, settings: Mapping):
    """The job's model on the configured device, and the evaluation set of its dataset."""
    from latent_atlas.data.store import load_dataset
    from latent_atlas.devices import resolve_device
    from latent_atlas.importance.evaluation import evaluation_set
    from latent_atlas.models.networks import load_model

    device = resolve_device(settings["device"], "importance.device")
    model = load_model(job.input.model, map_location=device)
    test = load_dataset(job.input.data).test()
    images, labels, class_names = evaluation_set(test, settings["max_samples"], int(job.config["seed"]))
    return model, device, images, labels, class_names


def importance_block(job: Job) -> None:
    """One shard: pixel importance of block `{block}` of the pixels, for every output of the model."""
    from latent_atlas.importance.evaluation import block_table

    settings = settings_of(job.params.settings)
    block = int(job.wildcards.block)
    model, device, images, _, _ = _model_and_evaluation_set(job, settings)
    _, h, w = images.shape[1:]
    blocks = pixel_blocks(h * w, settings["block_size"])
    if not 0 <= block < len(blocks):
        raise ValueError(f"block {block} out of range: {h}x{w} images in blocks of "
                         f"{settings['block_size']} give {len(blocks)} blocks")
    table = block_table(model, job.wildcards.model, images, blocks[block], settings,
                        int(job.config["seed"]), device)
    write_parquet(table, job.output[0], metadata={"block": block})


def importance_gather(job: Job) -> None:
    """One output's rows of every shard of a model (`params.output_name`: primary or logits)."""
    name = job.params.output_name
    if name == "primary":
        output = shard_outputs(read_parquet(job.input[0], columns=["output"])["output"])[0]
    else:
        output = name
    table = gather_shards([read_parquet(path) for path in job.input], output)
    write_parquet(table, job.output[0], metadata={
        "dataset": job.wildcards.dataset, "model": job.wildcards.model,
        "output": output, "n_shards": len(job.input),
    })


importance_gather_logits = importance_gather


def latent_importance(job: Job) -> None:
    """Encoded dimension -> output importance per class of a model."""
    from latent_atlas.importance.evaluation import latent_table

    settings = settings_of(job.params.settings)
    model, device, images, labels, class_names = _model_and_evaluation_set(job, settings)
    table = latent_table(model, images, labels, class_names, settings, int(job.config["seed"]), device)
    write_parquet(table, job.output[0], metadata={
        "dataset": job.wildcards.dataset, "model": job.wildcards.model,
    })


def importance_explorer(job: Job) -> None:
    """The self-contained interactive explorer (HTML) of a model's two importance tables."""
    write_explorer(read_parquet(job.input.pixel), read_parquet(job.input.latent), job.output[0],
                   title=f"{job.wildcards.dataset} / {job.wildcards.model}",
                   top_k=job.params.settings["top_k"], n_perm=job.params.settings["n_perm"],
                   axes=load_image_axes(job.input.data))


def plot_importance(job: Job) -> None:
    """Every importance figure of a model, drawn from its pixel and latent tables."""
    from latent_atlas.importance.figures import (most_important_dimension, plot_class, plot_classes,
                                                 plot_dimension, plot_directional)
    from latent_atlas.plotting import save_figure

    o, p, model = job.output, job.params, job.wildcards.model
    pixel, latent = read_parquet(job.input.pixel), read_parquet(job.input.latent)
    axes = load_image_axes(job.input.data)
    save_figure(plot_directional(pixel, title=model, axes=axes), o.directional)
    save_figure(plot_dimension(pixel, most_important_dimension(latent), title=model, axes=axes), o.dimension)
    save_figure(plot_classes(pixel, latent, p.top_k, axes=axes), o.classes)
    for cls in p.classes:
        save_figure(plot_class(pixel, latent, int(cls), p.top_k, axes=axes), o[f"class_{cls}"])
