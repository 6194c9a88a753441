"""The geometry stage's jobs: one function per rule of workflow/rules/geometry.smk."""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np

from latent_atlas.data.store import load_dataset
from latent_atlas.devices import default_device
from latent_atlas.geometry.figures import (plot_axis_density, plot_compare, plot_neighbours, plot_pca,
                                           plot_planes, plot_projections, plot_radius, plot_random_points)
from latent_atlas.geometry.maps import projection_table
from latent_atlas.geometry.random_points import decode_random_points
from latent_atlas.geometry.summary import compare_summaries
from latent_atlas.geometry.tables import model_tables
from latent_atlas.io import read_npz, read_parquet, write_npz, write_parquet
from latent_atlas.latents import read_latents
from latent_atlas.plotting import save_figure, use_style
from latent_atlas.runtime import Job

log = logging.getLogger("latent_atlas")

# Projection methods as the figure titles name them.
METHOD_NAMES = {"tsne": "t-SNE (openTSNE)", "umap": "UMAP"}


def geometry_tables(job: Job, *, seed: int, numeric_threads: int, names: Sequence[str], axes: Mapping,
                    radius: Mapping, pca: Mapping, planes: Mapping, neighbours: Mapping) -> None:
    """Density along axes, radius, PCA, planes, neighbours and the summary of one model's latents:
    the tables `names`, one per output, from the `geometry` settings of those names (`axes`: its
    bin_width, off_centre_ratio and width_ratio)."""
    latents = read_latents(job.input[0])
    meta = {k: v for k, v in latents.metadata.items() if k in ("dataset", "model", "arch")}
    settings = {"axes": axes, "radius": radius, "pca": pca, "planes": planes, "neighbours": neighbours}
    tables = model_tables(latents.z, latents.ids, settings, random_state=int(seed))
    for name, path in zip(names, job.output):
        write_parquet(tables[name], path, metadata=meta)


def _write_maps(job: Job, method: str, grid, settings: Mapping, seed: int, numeric_threads: int) -> None:
    """One map table of `method` per (space, sample size) of `grid`, to the job's outputs in order."""
    latents = read_latents(job.input[0])
    for (space, n), path in zip(grid, job.output):
        log.info("%s of %s, n=%d", method, space, n)
        # openTSNE's result depends on its thread count: numeric_threads, never the job's cores.
        table = projection_table(latents.z, latents.ids, method, settings, space, int(n),
                                 random_state=int(seed), n_jobs=int(numeric_threads))
        write_parquet(table, path, metadata={"method": method, "space": space, "n_requested": int(n),
                                             "params": dict(settings)})


def geometry_tsne(job: Job, *, seed: int, numeric_threads: int, settings: Mapping) -> None:
    """One t-SNE map (wildcards space, n) with `settings` (geometry.projections.tsne but its
    sample_sizes)."""
    _write_maps(job, "tsne", [(job.wildcards.space, int(job.wildcards.n))], settings, seed, numeric_threads)


def geometry_umap(job: Job, *, seed: int, numeric_threads: int, settings: Mapping,
                  grid: Sequence[tuple[str, int]]) -> None:
    """Every UMAP map of one model, one per (space, sample size) of `grid`, in one job (numba
    compiles once per process), with `settings` (geometry.projections.umap but its sample_sizes)."""
    _write_maps(job, "umap", grid, settings, seed, numeric_threads)


def geometry_random_points(job: Job, *, seed: int, numeric_threads: int, n_per_set: int,
                           offset_scale: float, classifier: str | None) -> None:
    """Decode `n_per_set` latents drawn from N(0, I), a fitted Gaussian, the bounding box and
    offsets of real ones (noise std = `offset_scale` x each axis's std); score the images against
    the training images (and the model `classifier`, `job.input.classifier`, if any)."""
    # Imported here: it imports torch, which takes seconds and no other geometry job needs.
    from latent_atlas.models.networks import load_model

    device = default_device()
    model = load_model(job.input.model, map_location=device)
    judge = load_model(job.input.classifier[0], map_location=device) if classifier else None
    ds = load_dataset(job.input.data)
    train = ds.train().images  # read a chunk at a time by nearest_image_distance
    images, scores = decode_random_points(
        model, read_latents(job.input.latents).z, train, n_per_set, offset_scale,
        judge, random_state=int(seed))
    write_npz(job.output.images, sets=np.array(list(images)), **images)
    write_parquet(scores, job.output.scores, metadata={"classifier": classifier})


def plot_geometry(job: Job, *, axes: Mapping) -> None:
    """The figures of one model's geometry tables and projection maps; `axes`: show_alone,
    selected and bin_width of geometry.axes."""
    use_style()
    i, o, model, s = job.input, job.output, job.wildcards.model, axes
    save_figure(plot_axis_density(read_parquet(i.axis_density), read_parquet(i.axis_summary), s["show_alone"],
                                  s["selected"],
                                  title=f"{model}: density along each axis (bin width {s['bin_width']:g})"), o.axes)
    save_figure(plot_radius(read_parquet(i.radius_histogram), read_parquet(i.radius_summary),
                            title=f"{model}: radius |z|"), o.radius)
    save_figure(plot_pca(read_parquet(i.pca_variance), title=f"{model}: PCA of the latents"), o.pca)
    save_figure(plot_planes(read_parquet(i.planes), read_parquet(i.zoom), title=f"{model}: planes, zoomed"),
                o.planes)
    save_figure(plot_neighbours(read_parquet(i.neighbours), read_parquet(i.intrinsic_dimension),
                                title=f"{model}: neighbours and intrinsic dimension"), o.neighbours)
    for method, name in METHOD_NAMES.items():
        if method in o.keys():
            tables = [read_parquet(i[key]) for key in i.keys() if key.startswith(f"{method}_")]
            save_figure(plot_projections(tables, title=f"{model}: {name}"), o[method])


def plot_geometry_random_points(job: Job) -> None:
    """Grids of the images decoded from random latent points, one per way of drawing them."""
    use_style()
    arrays = read_npz(job.input.images)
    images = {str(name): arrays[str(name)] for name in arrays["sets"]}
    fig = plot_random_points(images, read_parquet(job.input.scores),
                             title=f"{job.wildcards.model}: decoded random latent points")
    save_figure(fig, job.output.figure)


def geometry_compare(job: Job) -> None:
    """Side-by-side geometry of the models of one dataset: one summary table and a figure.

    Inputs are named "<model>:<table>".
    """
    use_style()
    models: dict[str, dict] = {}
    for key, path in job.input.items():
        model, table = key.split(":", 1)
        models.setdefault(model, {})[table] = read_parquet(path)
    write_parquet(compare_summaries({m: t["summary"] for m, t in models.items()}), job.output.table)
    fig = plot_compare(models, title=f"{job.wildcards.dataset}: latent geometry of " + " vs ".join(models))
    save_figure(fig, job.output.figure)
