"""The workflow's decisions, in the library where tests cover them: which rules run for which
model, the hashes written into results, the atlas's sample count, and the settings each rule reads.

The workflow (`workflow/rules/*.smk`) calls these; it holds no decision of its own. `READS` is the
one statement of which config keys each rule's job reads: the docs table of rules
(docs/architecture.md) is generated from it, and tests/test_reruns.py edits every key of the config
schema on a finished run and checks that Snakemake reruns exactly the jobs this map names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from latent_atlas.config import model_entries
from latent_atlas.config import snapshot_name
from latent_atlas.io import config_hash
from latent_atlas.models.archs import (extract_settings, is_dense, model_kind, model_latent_size, model_offers,
                                       model_snapshots, model_source)
from latent_atlas.schema import with_defaults

# atlas.n_samples: "all" maps every sample of the split: a count no split reaches (map_subset
# takes min(n, available)).
ALL_SAMPLES = 2**62


def model_rules(spec: Mapping[str, Any]) -> list[str]:
    """Names of the models stage's rules that run for the model entry `spec` (the rules' {model}
    wildcard constraints and the stage's targets both come from here). A snapshot's entry
    (`config.model_entries`) gets its model.pt from its model's training (snapshot_model) and
    runs the rules that read a model.pt, not the training figures (its training log is its
    model's)."""
    source, kind, offers = model_source(spec), model_kind(spec), model_offers(spec)
    trained, network = source == "train", "network" in offers
    snapshot = "snapshot" in spec
    trains = trained and not snapshot
    classifier = kind == "classifier"
    hidden = classifier and extract_settings(spec)["hidden_layers"]
    decodes = "decoder" in offers
    runs = {
        "train": trains and not model_snapshots(spec),
        "train_with_snapshots": trains and bool(model_snapshots(spec)),
        "snapshot_model": snapshot,
        "import_model": network and not trained,
        "import_latents": not network,
        "extract_autoencoder": kind == "autoencoder" and decodes,
        "extract_encoder": kind == "autoencoder" and not decodes,
        "extract_classifier": classifier and not hidden,
        "extract_classifier_hidden": hidden,
        "plot_model_autoencoder": kind == "autoencoder" and trains,
        "plot_model_classifier": classifier and trains,
        "plot_latent_scatter": model_latent_size(spec) == 2,
        "plot_first_layer_weights": bool(spec.get("arch")) and is_dense(spec["arch"]),
    }
    return [name for name, yes in runs.items() if yes]


def model_config_hash(config: Mapping[str, Any], model: str) -> str:
    """Hash of what a model's files depend on (written into its latents' metadata): its entry, its
    dataset's entry, the seed and the thread count; a snapshot's (`model@epoch`): its model's, and
    the epoch."""
    snapshot = model_entries(config["models"])[model].get("snapshot")
    spec = config["models"][snapshot["of"] if snapshot else model]
    return config_hash({
        "model": spec,
        "dataset": config["datasets"].get(spec["dataset"]),
        "seed": config["seed"],
        "numeric_threads": config["numeric_threads"],
        **({"epoch": snapshot["epoch"]} if snapshot else {}),
    })


def run_config_hash(config: Mapping[str, Any]) -> str:
    """Hash of the whole config (the figure manifest's); the local GPU pool (`gpu`) changes no
    result, so it stays out."""
    return config_hash({key: value for key, value in config.items() if key != "gpu"})


def atlas_sample_count(atlas_n: int | str | None, explain_n: int) -> int:
    """Samples the atlas's own maps take: `atlas.n_samples` (None: explain's count; "all": every
    sample of the split)."""
    if atlas_n is None:
        return int(explain_n)
    return ALL_SAMPLES if atlas_n == "all" else int(atlas_n)


@dataclass(frozen=True)
class Reads:
    """The config keys a rule's jobs read. A key names its whole subtree; `{model}` and
    `{dataset}` stand for the job's wildcards (a model's keys rerun that model's jobs only; those
    of its snapshots, `model@epoch`, too: a snapshot's entry is its model's).

    keys : the job's params (or its outputs' names) hold each: a change reruns every job of the
        rule it reaches.
    via : keys that decide which jobs the rule has, which files they take, or a value derived from
        them: a change reruns a job only where it changes that (the `models` lists, the sample
        sizes that name maps, a link to another stage's page).
    """

    keys: tuple[str, ...] = ()
    via: tuple[str, ...] = ()


SEEDED = ("seed", "numeric_threads")  # the job's random streams and the thread count its bits depend on
FIGURE = ("figures.formats",)  # a figure rule writes one file per format
TRAIN = (*SEEDED, "models.{model}.arch", "models.{model}.params", "models.{model}.train")
MODEL_HASH = ("models.{model}", "datasets.{dataset}", "seed", "numeric_threads")  # model_config_hash
FV_OPTIMISER = ("featureviz.lr", "featureviz.output_objective", "featureviz.clip_regulariser_gradients",
                "featureviz.tv_step")
EXPLAIN_MAPS = ("explain.split", "explain.tsne", "explain.umap", "explain.pca.loading_components")
# which pairs, so which jobs, there are (a model's snapshots are compared over training)
COMPARED = ("compare.pairs", "compare.snapshots", "models.{model}.train.snapshots",
            "models.{model}.train.epochs")  # the last snapshot is the trained model: not compared with it
ATLAS_MODELS = ("atlas.models", "explain.models", "geometry.models")  # atlas.models defaults to the other two
# whether a compared model's maps are explain's (workflow compare_maps_of: same samples, same job)
EXPLAIN_SAME_MAPS = ("explain.models", "explain.split", "explain.n_samples", "explain.samples.ids")


def _keys(prefix: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{prefix}.{name}" for name in names)


def _entry_keys(prefix: str, ref: str, but: tuple[str, ...]) -> tuple[str, ...]:
    """Every key of the schema object `ref` under `prefix` but those in `but`."""
    from latent_atlas.schema import schema_node

    return _keys(prefix, *(name for name in schema_node(ref)["properties"] if name not in but))


# The importance settings that make a group layout (the plan's). An analysis of importance.variants
# takes them and the permutation settings from the main analysis unless it sets its own (workflow
# analysis_settings): a key reaches the analyses that do not override it (`variant_readers`).
GROUPING = _keys("importance", "groups", "patch", "superpixel")
VARIANT_SETTINGS = ("groups", "patch", "superpixel", "permutation", "conditional")


def variant_readers(key: str, config: Mapping[str, Any]) -> set[str] | None:
    """The importance analyses (`{analysis}` wildcard values) that read `key`, when `key` is one of
    the settings a variant may override (VARIANT_SETTINGS): the main one and every variant that
    does not set it; None for any other key (every analysis reads it)."""
    parts = key.split(".")
    if parts[0] != "importance" or len(parts) < 2 or parts[1] not in VARIANT_SETTINGS:
        return None
    variants = config.get("importance", {}).get("variants", {}) or {}
    return {"importance"} | {f"importance_{name}" for name, own in variants.items() if parts[1] not in own}


READS: dict[str, Reads] = {
    # data
    # the dataset's entry but its attribute table (dataset_attributes reads that)
    "prepare_data": Reads(("seed", *_entry_keys("datasets.{dataset}", "#/$defs/dataset", but=("attributes",)))),
    "dataset_attributes": Reads(("seed", "datasets.{dataset}")),
    "plot_dataset_examples": Reads(("seed", *FIGURE)),
    # models
    "train": Reads(TRAIN),
    "train_with_snapshots": Reads(TRAIN),
    "snapshot_model": Reads(via=("models.{model}.train.snapshots",)),
    "import_model": Reads(("models.{model}.arch", "models.{model}.params", "models.{model}.kind",
                           "models.{model}.source")),
    "import_latents": Reads(("models.{model}.source", *MODEL_HASH)),
    "extract_autoencoder": Reads(("models.{model}.extract", *MODEL_HASH)),
    "extract_encoder": Reads(("models.{model}.extract", *MODEL_HASH)),
    "extract_classifier": Reads(("models.{model}.extract", *MODEL_HASH)),
    "extract_classifier_hidden": Reads(("models.{model}.extract", *MODEL_HASH)),
    "plot_model_autoencoder": Reads(FIGURE),
    "plot_model_classifier": Reads(FIGURE),
    "plot_latent_scatter": Reads(FIGURE),
    "plot_first_layer_weights": Reads(FIGURE),
    # geometry
    "geometry_tables": Reads((*SEEDED, *_keys("geometry.axes", "bin_width", "off_centre_ratio", "width_ratio"),
                              "geometry.radius", "geometry.pca", "geometry.planes", "geometry.neighbours"),
                             via=("geometry.models",)),
    "geometry_tsne": Reads((*SEEDED, *_keys("geometry.projections.tsne", "perplexity", "early_exaggeration",
                                            "early_exaggeration_iter", "n_iter", "initialization", "metric")),
                           via=("geometry.models", "geometry.projections.raw", "geometry.projections.pca_components",
                                "geometry.projections.tsne.sample_sizes")),
    "geometry_umap": Reads((*SEEDED, *_keys("geometry.projections.umap", "n_neighbors", "min_dist", "metric",
                                            "sample_sizes"),
                            "geometry.projections.raw", "geometry.projections.pca_components"),
                           via=("geometry.models",)),
    "geometry_random_points": Reads((*SEEDED, "geometry.random_points"), via=("geometry.models",)),
    "plot_geometry": Reads((*_keys("geometry.axes", "show_alone", "selected", "bin_width"), *FIGURE),
                           via=("geometry.models", "geometry.projections.raw", "geometry.projections.pca_components",
                                "geometry.projections.tsne.sample_sizes", "geometry.projections.umap.sample_sizes")),
    "plot_geometry_random_points": Reads(FIGURE, via=("geometry.models",)),
    "geometry_compare": Reads(FIGURE, via=("geometry.models",)),
    # explain
    "explain_maps": Reads((*SEEDED, *EXPLAIN_MAPS, "explain.n_samples", "explain.samples.ids", "explain.samples.file",
                           "explain.samples.selection"),
                          via=("explain.models",)),
    "explain_quality": Reads((*SEEDED, "explain.quality"), via=("explain.models",)),
    "explain_features": Reads((*SEEDED, "explain.features.near_constant", "explain.clusters.method",
                               "explain.clusters.n_clusters"), via=("explain.models",)),
    "explain_ridge": Reads((*SEEDED, "explain.ridge.alphas", "explain.ridge.cv_folds"), via=("explain.models",)),
    "explain_samples": Reads(("numeric_threads",), via=("explain.models",)),
    "plot_explain": Reads(("explain.ridge.top", "explain.pca.arrows", "explain.clusters.top_features",
                           "explain.pca.top_contributors", "explain.samples.max_maps", *FIGURE),
                          via=("explain.models",)),
    # importance
    # the patch and superpixel settings only where the analysis groups by them
    "importance_plan": Reads(("importance.block_size", "importance.groups"),
                             via=("importance.models", "importance.patch", "importance.superpixel",
                                  "importance.variants")),
    "importance_block": Reads((*SEEDED, *_keys("importance", "max_samples", "device", "method", "n_perm", "batch_size",
                                               "memory_mb", "sign_threshold", "confidence", "permutation",
                                               "samples")),
                              # the conditional settings only where the permutation is conditional
                              via=("importance.models", "importance.classifier_logits", "importance.block_size",
                                   *GROUPING, "importance.conditional", "importance.variants")),
    "importance_gather": Reads(_keys("importance", "min_effect", "fdr", "permutation"),
                               via=("importance.models", "importance.block_size", *GROUPING, "importance.variants")),
    "importance_gather_logits": Reads(_keys("importance", "min_effect", "fdr", "permutation"),
                                      via=("importance.models", "importance.block_size", *GROUPING,
                                           "importance.variants", "importance.classifier_logits")),
    "latent_importance": Reads((*SEEDED, *_keys("importance", "max_samples", "device", "n_perm", "batch_size",
                                                "confidence", "samples")),
                               via=("importance.models",)),
    "importance_explorer": Reads(_keys("importance", "top_k", "n_perm", "fdr"), via=("importance.models",)),
    "plot_importance": Reads((*_keys("importance", "top_k", "classes", "fdr"), *FIGURE), via=("importance.models",)),
    "plot_importance_variants": Reads((*_keys("importance", "top_k", "fdr"), *FIGURE),
                                      via=("importance.models", "importance.variants")),
    # featureviz
    "featureviz_unregularised": Reads((*SEEDED, *FV_OPTIMISER, "featureviz.unregularised"),
                                      via=("featureviz.models",)),
    "featureviz_adversarial": Reads((*SEEDED, *FV_OPTIMISER,
                                     *_keys("featureviz.adversarial", "split", "per_pair", "steps", "lr",
                                            "objective", "max_linf", "success_threshold")),
                                    via=("featureviz.models",)),
    "featureviz_tv_sweep": Reads((*SEEDED, *FV_OPTIMISER, "featureviz.tv_sweep"), via=("featureviz.models",)),
    "featureviz_tv_l1_grid": Reads((*SEEDED, *FV_OPTIMISER, "featureviz.tv_l1_grid"), via=("featureviz.models",)),
    "featureviz_gallery": Reads((*SEEDED, *FV_OPTIMISER,
                                 *_keys("featureviz.gallery", "units", "tv", "l1", "penalty", "steps", "start",
                                        "start_images", "jitter"), "featureviz.samples"),
                                via=("featureviz.models", "featureviz.gallery.layers")),
    "featureviz_census": Reads((*SEEDED, *FV_OPTIMISER, "featureviz.census"), via=("featureviz.models",)),
    "plot_featureviz": Reads(("featureviz.adversarial.show", "featureviz.display", *FIGURE),
                             via=("featureviz.models", "featureviz.gallery.layers",
                                  "featureviz.tv_l1_grid.hidden_layer")),
    # atlas
    "atlas_maps": Reads((*SEEDED, *EXPLAIN_MAPS, "atlas.n_samples"), via=(*ATLAS_MODELS, "explain.n_samples")),
    "atlas_quality": Reads((*SEEDED, "explain.quality"), via=(*ATLAS_MODELS, "atlas.n_samples")),
    "atlas_points": Reads(("numeric_threads", "atlas.k"), via=(*ATLAS_MODELS, "atlas.n_samples")),
    # its attribute table where the model is in the attributes stage or the dataset has attributes
    "atlas": Reads(("seed", "atlas.point_size", "atlas.thumbnails", "atlas.layout", "atlas.max_page_mb",
                    "atlas.tile_points"),
                   via=(*ATLAS_MODELS, "atlas.n_samples", "importance.models", "attributes.models",
                        "datasets.{dataset}.attributes", "anomaly.models")),
    # compare
    "compare_maps": Reads((*SEEDED, "explain.tsne", "explain.umap", "explain.pca.loading_components",
                           "compare.split", "compare.max_samples", "compare.samples"), via=COMPARED),
    "compare_pair": Reads((*SEEDED, *_keys("compare", "split", "max_samples", "k", "rbf_max_samples", "svcca_k",
                                           "cv_folds", "samples")),
                          via=COMPARED),
    "compare_table": Reads(via=COMPARED),
    # their maps are explain's where explain maps the same samples (compare_maps_of)
    "plot_compare": Reads(("compare.show", *FIGURE), via=(*COMPARED, *EXPLAIN_SAME_MAPS)),
    # the comparison page: the first of compare.k, the atlas's point size and thumbnails
    "compare_page": Reads(("seed", "compare.k", "atlas.point_size",
                           *_keys("atlas.thumbnails", "max_samples", "format", "quality", "sheet_size")),
                          via=(*COMPARED, *EXPLAIN_SAME_MAPS)),
    # attributes
    "attribute_probes": Reads((*SEEDED, *_keys("attributes", "names", "split", "max_samples", "cv_folds", "mi_bins",
                                               "top_dimensions")), via=("attributes.models",)),
    "disentanglement": Reads((*SEEDED, *_keys("attributes", "factors", "max_samples", "mi_bins", "dci")),
                             via=("attributes.models",)),
    "attribute_traversals": Reads((*SEEDED, *_keys("attributes", "split", "max_samples", "traversal")),
                                  via=("attributes.models",)),
    "plot_attributes": Reads(("attributes.top_dimensions", *FIGURE), via=("attributes.models",)),
    "attribute_scores": Reads(via=("attributes.models",)),
    "plot_attribute_scores": Reads(FIGURE, via=("attributes.models",)),
    # anomaly: the normal classes default to the model's training classes (the one-class protocol)
    "anomaly_scores": Reads((*SEEDED, *_keys("anomaly", "normal_classes", "normal_attributes", "error", "fpr",
                                             "top_k", "batch_size", "baselines"), "models.{model}.train.classes",
                             "models.{model}.train.attributes",
                             "models.{model}.train.validation_fraction", "models.{model}.train.max_train_samples"),
                            via=("anomaly.models",)),
    "plot_anomaly": Reads(FIGURE, via=("anomaly.models",)),
    # figures: the manifest records the hash of the whole config (run_config_hash: all but `gpu`)
    "figure_manifest": Reads(("*",)),
}


def _matches(pattern: str, key: str) -> dict[str, str] | None:
    """The wildcard values under which `pattern` covers the dotted `key` (a pattern names its
    subtree; "*" every key but the machine settings in `gpu`), or None."""
    if pattern == "*":
        return {} if key.split(".")[0] != "gpu" else None
    p, k = pattern.split("."), key.split(".")
    if len(p) > len(k):
        return None
    bound = {}
    for part, name in zip(p, k):
        if part.startswith("{") and part.endswith("}"):
            bound[part[1:-1]] = name
        elif part != name:
            return None
    return bound


def readers(key: str) -> dict[str, tuple[str, dict[str, str]]]:
    """The rules that read the dotted config `key`: rule -> ("keys" or "via", wildcard values
    the key binds, e.g. {"model": "cnn"} for models.cnn.train.lr)."""
    out = {}
    for rule, reads in READS.items():
        for kind, patterns in (("keys", reads.keys), ("via", reads.via)):
            for pattern in patterns:
                bound = _matches(pattern, key)
                if bound is not None and rule not in out:
                    out[rule] = (kind, bound)
    return out


def compare_pairs(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The model pairs the compare stage compares, in order, each once: `compare.pairs` (`all`:
    every pair of configured models on the same dataset, in config order), then for each model of
    `compare.snapshots` its snapshots against the final model and each snapshot against the next."""
    section = config.get("compare") or {}
    models = config["models"]
    pairs = section.get("pairs") or []
    if pairs == "all":
        names = list(models)
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
                 if models[a]["dataset"] == models[b]["dataset"]]
    out = [tuple(pair) for pair in pairs]
    for model in section.get("snapshots") or []:
        steps = [snapshot_name(model, epoch) for epoch in model_snapshots(models[model])]
        out += [(step, model) for step in steps if step != snapshot_name(model, _epochs(models[model]))]
        out += list(zip(steps, steps[1:]))
    return list(dict.fromkeys(out))


def compared_models(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """The (base) models of compared pairs, each once, in order of first appearance among the
    pairs' A sides, then their B sides (a snapshot `model@epoch` counts as its model): the rows of
    the comparison page."""
    names = [a for a, _ in pairs] + [b for _, b in pairs]
    return list(dict.fromkeys(name.partition("@")[0] for name in names))


def _epochs(spec: Mapping[str, Any]) -> int:
    return int(with_defaults(spec.get("train"), "#/$defs/train", "train")["epochs"])
