"""The settings the workflow's rules pass their job functions, from a config section: the tests and
benchmarks call the jobs as the rules (workflow/rules/*.smk) do."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

GEOMETRY_TABLE_AXES = ("bin_width", "off_centre_ratio", "width_ratio")
GEOMETRY_FIGURE_AXES = ("show_alone", "selected", "bin_width")


def importance_settings(job_function: Callable, section: Mapping[str, Any] | None = None, *, kind: str,
                        seed: int = 0, numeric_threads: int = 1) -> dict[str, Any]:
    """The keyword arguments a rule of importance.smk passes `job_function` (a job of
    latent_atlas.importance.jobs): its settings from the `importance` section `section` with the
    schema's defaults filled, `seed` and `numeric_threads`, and `logits` (classifier_logits for a
    model of `kind` "classifier", False for an autoencoder)."""
    from latent_atlas.schema import with_defaults

    settings = with_defaults(section, "#/properties/importance", "importance")
    given = {"seed": seed, "numeric_threads": numeric_threads,
             "logits": kind == "classifier" and settings["classifier_logits"]}
    # a keyword with a default (`samples`) is passed only where the config sets it
    names = [p.name for p in inspect.signature(job_function).parameters.values()
             if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    return {name: given[name] if name in given else settings[name] for name in names}


def geometry_table_settings(section: Mapping[str, Any]) -> dict[str, Any]:
    """What rule geometry_tables passes besides seed, numeric_threads and names, from the
    `geometry` section `section` (defaults filled)."""
    return {"axes": {key: section["axes"][key] for key in GEOMETRY_TABLE_AXES},
            **{key: section[key] for key in ("radius", "pca", "planes", "neighbours")}}


def geometry_figure_axes(section: Mapping[str, Any]) -> dict[str, Any]:
    """The `axes` rule plot_geometry passes, from the `geometry` section `section`."""
    return {key: section["axes"][key] for key in GEOMETRY_FIGURE_AXES}


def projection_settings(projection: Mapping[str, Any]) -> dict[str, Any]:
    """The `settings` rules geometry_tsne and geometry_umap pass: `geometry.projections.<method>`
    but its sample_sizes."""
    return {key: value for key, value in projection.items() if key != "sample_sizes"}
