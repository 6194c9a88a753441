"""The importance stage's jobs, one per rule of workflow/rules/importance.smk.

A model's plan (image shape -> pixel blocks), one shard per pixel block, the gather of the shards
into pixel_importance.parquet, the per-class latent importance, the explorer page and the figures.
torch and numba are imported inside the two jobs that compute with them (importance_block,
latent_importance): the plan, gather, explorer and figure jobs start without them.
"""

from __future__ import annotations

from typing import Sequence

from latent_atlas.data.store import load_image_axes
from latent_atlas.importance.explorer import write_explorer
from latent_atlas.importance.plan import pixel_blocks, plan
from latent_atlas.importance.tables import gather_shards, shard_outputs
from latent_atlas.io import read_parquet, write_json, write_parquet
from latent_atlas.runtime import Job


def importance_plan(job: Job, *, block_size: int) -> None:
    """plan.json: image shape and number of pixel blocks of `block_size` pixels of the model's
    dataset (a checkpoint)."""
    write_json(plan(job.input[0], block_size), job.output[0])


def _model_and_evaluation_set(job: Job, device: str, max_samples: int | None, seed: int):
    """The job's model on `device` (importance.device), and the evaluation set of its dataset:
    `max_samples` seeded test images (None: all)."""
    from latent_atlas.data.store import load_dataset
    from latent_atlas.devices import resolve_device
    from latent_atlas.importance.evaluation import evaluation_set
    from latent_atlas.models.networks import load_model

    device = resolve_device(device, "importance.device")
    model = load_model(job.input.model, map_location=device)
    test = load_dataset(job.input.data).test()
    images, labels, class_names = evaluation_set(test, max_samples, int(seed))
    return model, device, images, labels, class_names


def importance_block(job: Job, *, seed: int, numeric_threads: int, block_size: int, max_samples: int | None,
                     device: str, logits: bool, method: str, n_perm: int, batch_size: int,
                     memory_mb: float, sign_threshold: float, confidence: float) -> None:
    """One shard: pixel importance of block `{block}` (of `block_size` pixels) for every output of
    the model (the class outputs too when `logits`), with the `importance` settings of the same
    names (block_table)."""
    from latent_atlas.importance.evaluation import block_table

    block = int(job.wildcards.block)
    model, device, images, _, _ = _model_and_evaluation_set(job, device, max_samples, seed)
    _, h, w = images.shape[1:]
    blocks = pixel_blocks(h * w, block_size)
    if not 0 <= block < len(blocks):
        raise ValueError(f"block {block} out of range: {h}x{w} images in blocks of "
                         f"{block_size} give {len(blocks)} blocks")
    table = block_table(model, job.wildcards.model, images, blocks[block], logits=logits, method=method,
                        n_perm=n_perm, batch_size=batch_size, memory_mb=memory_mb,
                        sign_threshold=sign_threshold, confidence=confidence, seed=int(seed), device=device)
    write_parquet(table, job.output[0], metadata={"block": block})


def importance_gather(job: Job, *, output_name: str) -> None:
    """One output's rows of every shard of a model (`output_name`: primary or logits)."""
    name = output_name
    if name == "primary":
        output = shard_outputs(read_parquet(job.input[0], columns=["output"])["output"])[0]
    else:
        output = name
    table = gather_shards([read_parquet(path) for path in job.input], output)
    write_parquet(table, job.output[0], metadata={
        "dataset": job.wildcards.dataset, "model": job.wildcards.model,
        "output": output, "n_shards": len(job.input),
    })


def latent_importance(job: Job, *, seed: int, numeric_threads: int, max_samples: int | None, device: str,
                      n_perm: int, batch_size: int, confidence: float) -> None:
    """Encoded dimension -> output importance per class of a model (latent_table), on the same
    evaluation set as its pixel importance."""
    from latent_atlas.importance.evaluation import latent_table

    model, device, images, labels, class_names = _model_and_evaluation_set(job, device, max_samples, seed)
    table = latent_table(model, images, labels, class_names, n_perm=n_perm, batch_size=batch_size,
                         confidence=confidence, seed=int(seed), device=device)
    write_parquet(table, job.output[0], metadata={
        "dataset": job.wildcards.dataset, "model": job.wildcards.model,
    })


def importance_explorer(job: Job, *, top_k: int, n_perm: int) -> None:
    """The self-contained interactive explorer (HTML) of a model's two importance tables: `top_k`
    dimensions shown first; `n_perm` named as the permutations behind each interval."""
    write_explorer(read_parquet(job.input.pixel), read_parquet(job.input.latent), job.output[0],
                   title=f"{job.wildcards.dataset} / {job.wildcards.model}", top_k=top_k, n_perm=n_perm,
                   axes=load_image_axes(job.input.data))


def plot_importance(job: Job, *, top_k: int, classes: Sequence[int]) -> None:
    """Every importance figure of a model, drawn from its pixel and latent tables: `top_k`
    dimensions per class, a figure of its own for each of `classes`."""
    from latent_atlas.importance.figures import (most_important_dimension, plot_class, plot_classes,
                                                 plot_dimension, plot_directional)
    from latent_atlas.plotting import save_figure

    o, model = job.output, job.wildcards.model
    pixel, latent = read_parquet(job.input.pixel), read_parquet(job.input.latent)
    axes = load_image_axes(job.input.data)
    save_figure(plot_directional(pixel, title=model, axes=axes), o.directional)
    save_figure(plot_dimension(pixel, most_important_dimension(latent), title=model, axes=axes), o.dimension)
    save_figure(plot_classes(pixel, latent, top_k, axes=axes), o.classes)
    for cls in classes:
        save_figure(plot_class(pixel, latent, int(cls), top_k, axes=axes), o[f"class_{cls}"])
