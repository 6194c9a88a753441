"""The importance stage's jobs, one per rule of workflow/rules/importance.smk.

A model's plan (image shape -> groups and their blocks), one shard per block of groups, the gather
of the shards into group_importance.parquet and pixel_importance.parquet (with each score's p-value
and discovery), the per-class latent importance, the explorer page and the figures.
torch and numba are imported inside the two jobs that compute with them (importance_block,
latent_importance): the plan, gather, explorer and figure jobs start without them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from latent_atlas.data.store import load_image_axes
from latent_atlas.importance.explorer import write_explorer
from latent_atlas.importance.plan import describe, pixel_blocks, plan, plan_groups
from latent_atlas.importance.tables import gather_shards, groups_on_pixels, shard_outputs
from latent_atlas.io import read_json, read_parquet, read_parquet_metadata, write_json, write_parquet
from latent_atlas.runtime import Job, log
from latent_atlas.selection import restrict, selected_ids


def importance_plan(job: Job, *, block_size: int, groups: str, patch: dict | None, superpixel: dict | None) -> None:
    """plan.json: image shape, the groups (`groups` with its `patch` or `superpixel` settings, None
    for the other groupings) and the number of blocks of `block_size` groups of the model's dataset
    (a checkpoint)."""
    write_json(plan(job.input[0], block_size, groups, patch, superpixel), job.output[0])


def _evaluation_candidates(job: Job, samples: Mapping | None):
    """The images importance may evaluate on, and what they are (for messages): the test split of
    the job's dataset, or with a selection (`samples`: importance.samples, file `job.input.samples`)
    its samples of any split in sample_id order."""
    from latent_atlas.data.store import load_dataset

    data = load_dataset(job.input.data)
    if samples is None:
        return data.test(), "the test split"
    ids = selected_ids(samples, job.input.samples)
    rows = restrict(ids, data.sample_id, f"{samples['key']}.file", job.input.samples, among=f"dataset {data.name!r}")
    return data.subset(rows), f"selection {samples['selection']!r} of {job.input.samples}"


def _model_and_evaluation_set(job: Job, device: str, max_samples: int | None, seed: int, samples: Mapping | None):
    """The job's model on `device` (importance.device), and the evaluation set of its dataset:
    `max_samples` seeded images (None: all) of the test split or of the selection `samples`;
    last the table metadata that records a selection (the key, file, name and the evaluation
    set's sample ids; none without one, so such tables keep their bytes)."""
    from latent_atlas.devices import resolve_device
    from latent_atlas.importance.evaluation import evaluation_rows, evaluation_set
    from latent_atlas.models.networks import load_model

    device = resolve_device(device, "importance.device")
    model = load_model(job.input.model, map_location=device)
    candidates, what = _evaluation_candidates(job, samples)
    images, labels, class_names = evaluation_set(candidates, max_samples, int(seed), what)
    meta = {}
    if samples is not None:
        used = candidates.sample_id[evaluation_rows(len(candidates), max_samples, int(seed))]
        meta["samples"] = {**samples, "sample_ids": [int(s) for s in used]}
    return model, device, images, labels, class_names, meta


def importance_block(job: Job, *, samples: Mapping | None = None, seed: int, numeric_threads: int,
                     max_samples: int | None, device: str, logits: bool, method: str, n_perm: int, batch_size: int,
                     memory_mb: float, sign_threshold: float, confidence: float, permutation: str,
                     conditional: dict | None) -> None:
    """One shard: importance of block `{block}` of the plan's groups (pixels alone, or groups
    permuted jointly) for every output of the model (the class outputs too when `logits`), with
    the `importance` settings of the same names (block_table); `conditional` (ring, clusters) where
    `permutation` is conditional. `samples` (importance.samples; the rule passes it only where it
    is set, so it is not keyword-only): the evaluation images are that selection's, recorded in the
    shard's metadata."""
    from latent_atlas.importance.evaluation import block_table

    block = int(job.wildcards.block)
    layout = read_json(job.input.plan)
    model, device, images, _, _, meta = _model_and_evaluation_set(job, device, max_samples, seed, samples)
    blocks = pixel_blocks(layout["n_groups"], layout["block_size"])
    if not 0 <= block < len(blocks):
        raise ValueError(f"block {block} out of range: {layout['n_groups']} groups in blocks of "
                         f"{layout['block_size']} give {len(blocks)} blocks")
    ids = blocks[block]
    groups = plan_groups(layout)
    table = block_table(model, job.wildcards.model, images, ids if groups is None else None, logits=logits,
                        method=method, n_perm=n_perm, batch_size=batch_size, memory_mb=memory_mb,
                        sign_threshold=sign_threshold, confidence=confidence, seed=int(seed), device=device,
                        groups=None if groups is None else [groups[i] for i in ids], group_ids=ids,
                        conditional=conditional if permutation == "conditional" else None)
    write_parquet(table, job.output[0], metadata={"block": block, **meta})


def importance_gather(job: Job, *, output_name: str, min_effect: float, fdr: float, permutation: str) -> None:
    """One output's rows of every shard of a model's analysis (`output_name`: primary or logits):
    the group table with each score's p-value (H0: importance <= min_effect x the map's largest)
    and its Benjamini-Hochberg discovery at `fdr`, and the same drawn on the pixel grid; the
    metadata names the groups and the `permutation`."""
    shards = list(job.input.shards)
    if output_name == "primary":
        output = shard_outputs(read_parquet(shards[0], columns=["output"])["output"])[0]
    else:
        output = output_name
    layout = read_json(job.input.plan)
    table, delta = gather_shards([read_parquet(path) for path in shards], output, min_effect=min_effect, fdr=fdr)
    meta = {"dataset": job.wildcards.dataset, "model": job.wildcards.model, "output": output,
            "n_shards": len(shards), "groups": describe(layout, permutation), "permutation": permutation,
            "min_effect": min_effect, "fdr": fdr, "delta": [float(v) for v in delta]}
    write_parquet(table, job.output.group, metadata=meta)
    write_parquet(groups_on_pixels(table, plan_groups(layout), layout["width"]), job.output.pixel, metadata=meta)


def latent_importance(job: Job, *, samples: Mapping | None = None, seed: int, numeric_threads: int,
                      max_samples: int | None, device: str, n_perm: int, batch_size: int, confidence: float) -> None:
    """Encoded dimension -> output importance per class of a model (latent_table), on the same
    evaluation set as its pixel importance (`samples`: as importance_block's)."""
    from latent_atlas.importance.evaluation import latent_table

    model, device, images, labels, class_names, meta = _model_and_evaluation_set(job, device, max_samples, seed,
                                                                                 samples)
    table = latent_table(model, images, labels, class_names, n_perm=n_perm, batch_size=batch_size,
                         confidence=confidence, seed=int(seed), device=device)
    write_parquet(table, job.output[0], metadata={
        "dataset": job.wildcards.dataset, "model": job.wildcards.model, **meta,
    })


def importance_explorer(job: Job, *, top_k: int, n_perm: int, fdr: float) -> None:
    """The self-contained interactive explorer (HTML) of a model's two importance tables: `top_k`
    dimensions shown first; `n_perm` named as the permutations behind each interval; scores not
    declared at false discovery rate `fdr` greyed."""
    write_explorer(read_parquet(job.input.pixel), read_parquet(job.input.latent), job.output[0],
                   title=f"{job.wildcards.dataset} / {job.wildcards.model}", top_k=top_k, n_perm=n_perm,
                   axes=load_image_axes(job.input.data), fdr=fdr)


def plot_importance(job: Job, *, top_k: int, classes: Sequence[int], fdr: float) -> None:
    """Every importance figure of a model, drawn from its pixel and latent tables: `top_k`
    dimensions per class, a figure of its own for each of `classes` (one that says so for a class
    the table lacks); pixels not declared at false discovery rate `fdr` greyed."""
    from latent_atlas.importance.figures import (most_important_dimension, plot_absent_class, plot_class,
                                                 plot_classes, plot_dimension, plot_directional)
    from latent_atlas.plotting import save_figure

    o, model = job.output, job.wildcards.model
    pixel, latent = read_parquet(job.input.pixel), read_parquet(job.input.latent)
    axes = load_image_axes(job.input.data)
    save_figure(plot_directional(pixel, title=model, axes=axes, fdr=fdr), o.directional)
    save_figure(plot_dimension(pixel, most_important_dimension(latent), title=model, axes=axes, fdr=fdr),
                o.dimension)
    save_figure(plot_classes(pixel, latent, top_k, axes=axes, fdr=fdr), o.classes)
    for cls in classes:
        if not (latent["class"] == int(cls)).any():
            log.warning("%s: importance.classes names class %d, which has no evaluation samples here: its "
                        "figure says so", model, int(cls))
            save_figure(plot_absent_class(latent, int(cls), title=model), o[f"class_{cls}"])
            continue
        save_figure(plot_class(pixel, latent, int(cls), top_k, axes=axes, fdr=fdr), o[f"class_{cls}"])


def plot_importance_variants(job: Job, *, top_k: int, fdr: float, labels: Sequence[str]) -> None:
    """The main analysis's importance maps of the model's `top_k` dimensions beside each variant's
    (importance.variants), one column per analysis titled by its groups and permutation (and its
    name in `labels` where two share them)."""
    from latent_atlas.importance.figures import plot_variants
    from latent_atlas.plotting import save_figure

    names = [read_parquet_metadata(path)["groups"] for path in job.input.pixel]
    titles = [f"{name} (main)" if label == "main" else name if names.count(name) == 1 else f"{label}: {name}"
              for label, name in zip(labels, names)]
    tables = {title: read_parquet(path) for title, path in zip(titles, job.input.pixel)}
    save_figure(plot_variants(tables, read_parquet(job.input.latent), top_k, axes=load_image_axes(job.input.data),
                              fdr=fdr), job.output)
