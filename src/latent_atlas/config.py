"""Checks of the configuration that a JSON schema cannot express (cross-references, sizes).

Snakemake's validate() checks types, unknown keys and fills defaults first; `check_config` then
checks how the parts refer to each other and raises ConfigError naming the key path.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from latent_atlas.models.archs import model_kind, model_offers, model_snapshots, model_source, source_settings
from latent_atlas.schema import SCHEMA_PATH, ConfigError, fill_defaults, schema_node, with_defaults

# What an analysis section needs of a model in its `models:` list: the model kinds it takes (None:
# every kind, latents tables included) and what the model must offer (`archs.model_offers`). Every
# other section with a `models:` list (also one added later) takes every model, tables included.
SECTION_NEEDS: dict[str, tuple[set[str] | None, tuple[str, ...]]] = {
    "featureviz": ({"classifier"}, ("network", "gradients")),
    "importance": ({"autoencoder", "classifier"}, ("network", "decoder|head")),
    "explain": ({"autoencoder", "classifier"}, ("network", "layers")),
    "anomaly": ({"autoencoder"}, ("network", "decoder")),
}

# Why a model lacks what a section needs, for the error message.
_LACKS = {
    "network": "it is a table of latents (source.format: latents), not a network",
    "gradients": "onnxruntime gives no gradients (export the network with torch.export for this)",
    "decoder": "it decodes: give the autoencoder's source.decoder",
    "head": "latent importance needs the class layer: give the classifier's source.head",
    "layers": "it reads the network's first layer, which built-in archs and torch.export programs "
              "expose; onnxruntime runs the graph only as a whole",
}


def snapshot_name(model: str, epoch: int) -> str:
    """The name of model `model`'s training snapshot after epoch `epoch`: "<model>@<epoch>"."""
    return f"{model}@{epoch}"


def model_entries(models: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Every model entry of `models` (the config's) by name, each followed by its training
    snapshots (`train.snapshots`) as entries of their own, "<model>@<epoch>": the model's entry
    with `snapshot` = {"of": model, "epoch": epoch} added. A snapshot is the model as it was after
    that epoch, so every stage takes it as it takes the model (same arch, kind, dataset, extract
    settings); the `snapshot` key tells the rules that it is not trained by a job of its own."""
    out: dict[str, Mapping[str, Any]] = {}
    for name, spec in models.items():
        out[name] = spec
        for epoch in model_snapshots(spec):
            out[snapshot_name(name, epoch)] = {**spec, "snapshot": {"of": name, "epoch": epoch}}
    return out


def _unknown_model(key: str, name: str, models: Mapping[str, Any]) -> ConfigError:
    """The error for a `models:` list naming `name`, which is neither a model nor one's snapshot."""
    base, at, _ = name.rpartition("@")
    if at and base in models:
        epochs = model_snapshots(models[base])
        return ConfigError(f"{key}: {name!r} is not a snapshot of {base} (its train.snapshots: "
                           f"{epochs if epochs else 'none'})")
    return ConfigError(f"{key}: {name!r} is not a defined model (defined: {', '.join(sorted(models)) or 'none'})")


def _check_snapshots(key: str, m: Mapping[str, Any]) -> None:
    """`train.snapshots` (at `key`): a model trained here, epochs strictly increasing, none beyond
    `train.epochs`."""
    epochs = m["train"]["snapshots"]
    if model_source(m) != "train":
        raise ConfigError(f"{key}: only for models trained here (this one's weights come from "
                          f"source.format {model_source(m)!r})")
    if epochs != sorted(set(epochs)):
        raise ConfigError(f"{key}: epochs must be strictly increasing, got {epochs}")
    trained = with_defaults(m["train"], "#/$defs/train", key.rpartition(".")[0])["epochs"]
    beyond = [e for e in epochs if e > trained]
    if beyond:
        raise ConfigError(f"{key}: {beyond} beyond the last epoch (train.epochs: {trained}); a snapshot "
                          f"is taken after an epoch of training")


@lru_cache(maxsize=None)
def _default_filling_validator(path: str):
    """A jsonschema validator of the schema at `path` that sets each missing property that has a
    `default` before validating it: the recipe of jsonschema's FAQ that Snakemake's
    `snakemake.utils.validate` uses (each default a copy here: the schema is cached)."""
    from jsonschema import Draft202012Validator, validators

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, properties, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": set_defaults})(schema_node("#", path))


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Validate `config` against the schema and fill its defaults in place, as Snakemake's
    validate(config, schema) does (the same recipe; tests/test_schema.py compares the two on every
    shipped config), without reading the schema again: Snakemake's reader parses it in pure
    Python, 0.25 s at every start of the workflow, also in each SLURM job step. Raises
    jsonschema's ValidationError; returns `config`."""
    _default_filling_validator(str(schema_path)).validate(config)
    return config


def schema_errors(config: Mapping[str, Any], schema_path: str | Path) -> list[str]:
    """Every schema violation of `config`, each as 'key.path: what was expected'."""
    import jsonschema

    schema = schema_node("#", schema_path)  # the schema as read once per process
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err.absolute_path)
        where = where.replace(".[", "[") or "<top level>"
        messages.append(f"{where}: {err.message}")
    return messages


def section_refusal(section: str, spec: Mapping[str, Any]) -> str | None:
    """Why the model entry `spec` cannot run analysis `section` (None: it can)."""
    standalone = model_source(spec) == "latents" and source_settings(spec)["match"] == "standalone"
    if section == "atlas" and standalone:
        return ("the atlas shows each sample's image, and a standalone table has no dataset "
                "(match the table to a dataset: source.match sample_id or row_order)")
    if section == "attributes" and standalone:
        return ("the attributes are the dataset's, and a standalone table has no dataset "
                "(match the table to a dataset: source.match sample_id or row_order)")
    kinds, needs = SECTION_NEEDS.get(section, (None, ()))
    kind = model_kind(spec)
    if kinds is not None and kind not in kinds:
        what = "a table of latents" if kind == "latents" else f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
        return f"{section} takes {' and '.join(sorted(kinds))} models; it is {what}"
    layered = ("train", "state_dict", "torch_export")
    offers = model_offers(spec) | ({"layers"} if model_source(spec) in layered else set())
    if "layers" in needs and model_source(spec) == "torch_export":
        from latent_atlas.models.loaded import first_layer_refusal  # reads the program (torch)

        why = first_layer_refusal(source_settings(spec), "source.encoder")
        if why:
            return why
    for need in needs:
        if need == "decoder|head":
            need = "decoder" if kind == "autoencoder" else "head"
        if need not in offers:
            return _LACKS[need]
    return None


# The files each source format reads (required first), and the keys it takes besides `format`.
SOURCE_FILES = {
    "state_dict": (("weights",), ()),
    "torch_export": (("encoder",), ("decoder", "head")),
    "onnx": (("encoder",), ("decoder", "head")),
    "latents": (("table",), ()),
}
_SOURCE_KEYS = {
    "state_dict": {"weights"},
    "torch_export": {"encoder", "decoder", "head", "latent_output", "logits_output", "input_range", "mean",
                     "std"},
    "latents": {"table", "match", "label_column", "columns"},
}
_SOURCE_KEYS["onnx"] = _SOURCE_KEYS["torch_export"] | {"input_name"}


def source_files(spec: Mapping[str, Any]) -> dict[str, str]:
    """{source key: path} of the files a model entry reads instead of training (empty when trained)."""
    source = spec.get("source") or {}
    required, optional = SOURCE_FILES.get(source.get("format"), ((), ()))
    return {key: source[key] for key in (*required, *optional) if source.get(key)}


def _check_source(key: str, m: Mapping[str, Any], datasets: Mapping[str, Any]) -> None:
    """A model entry's `source` against its format; its files must exist and be readable."""
    fmt = model_source(m)
    if fmt == "train":
        if not m.get("arch"):
            raise ConfigError(f"{key}: needs `arch` (a model trained here) or `source` (a model or "
                              f"latents loaded from files)")
        if m.get("kind"):
            raise ConfigError(f"{key}.kind: only for torch_export and onnx sources; {m['arch']!r} "
                              f"decides the kind of a trained model")
        return
    source = m["source"]
    # validate() may have filled the schema's defaults in: a key at its default was not given
    default = source_settings({"source": {"format": fmt}})
    given = {k for k in source if k != "format" and source[k] != default.get(k)}
    extra = sorted(given - _SOURCE_KEYS[fmt])
    if extra:
        raise ConfigError(f"{key}.source: {extra} do not apply to format {fmt!r} "
                          f"(it takes {sorted(_SOURCE_KEYS[fmt])})")
    for req in SOURCE_FILES[fmt][0]:
        if not source.get(req):
            raise ConfigError(f"{key}.source.{req}: required for format {fmt!r}")
    if fmt == "state_dict" and not m.get("arch"):
        raise ConfigError(f"{key}.arch: required for source.format 'state_dict' (the weights' architecture)")
    if fmt in ("torch_export", "onnx", "latents"):
        for k in ("arch", "params", "train"):
            if m.get(k):
                raise ConfigError(f"{key}.{k}: does not apply to source.format {fmt!r}")
    if fmt in ("torch_export", "onnx"):
        if not m.get("kind"):
            raise ConfigError(f"{key}.kind: required for source.format {fmt!r} (autoencoder or classifier)")
        wrong = {"autoencoder": ("head", "logits_output"), "classifier": ("decoder",)}[m["kind"]]
        for k in wrong:
            if source.get(k) is not None:
                raise ConfigError(f"{key}.source.{k}: does not apply to a {m['kind']}")
        if m["kind"] == "classifier" and not source.get("head") and source.get("logits_output") is None:
            raise ConfigError(f"{key}.source: a classifier needs `head` (features -> logits) or "
                              f"`logits_output` (the encoder's output holding the logits)")
        for k in ("mean", "std"):
            if source.get(k) is not None and len(source[k]) not in (1, 3):
                raise ConfigError(f"{key}.source.{k}: one value or one per channel (3), got {source[k]}")
        if (source.get("mean") is None) != (source.get("std") is None):
            raise ConfigError(f"{key}.source: give both `mean` and `std`, or neither")
    elif m.get("kind"):
        raise ConfigError(f"{key}.kind: only for torch_export and onnx sources")
    if fmt == "latents" and source.get("match", "sample_id") != "standalone" and m["dataset"] not in datasets:
        raise ConfigError(
            f"{key}.dataset: {m['dataset']!r} is not a defined dataset (defined: "
            f"{', '.join(sorted(datasets)) or 'none'}); a table matched by {source.get('match', 'sample_id')} "
            f"needs one (or set source.match: standalone)")
    for k, path in source_files(m).items():
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{key}.source.{k}: file not found: {path} (paths are relative to the "
                              f"working directory {Path.cwd()})")
        try:
            with p.open("rb") as f:
                f.read(1)
        except OSError as err:
            raise ConfigError(f"{key}.source.{k}: cannot read {path}: {err}") from None


def check_config(config: Mapping[str, Any], results: str | Path | None = None) -> None:
    """Raise ConfigError, naming the key, for what the schema cannot express: cross-references
    between sections, files that must exist, and (with `results`, the results folder, once a
    dataset's store exists there) sample ids the stores do not hold."""
    datasets = config.get("datasets", {})
    models = config.get("models", {})
    for name, ds in datasets.items():
        _check_dataset(f"datasets.{name}", ds)
    for name, m in models.items():
        _check_source(f"models.{name}", m, datasets)
        standalone = model_source(m) == "latents" and source_settings(m)["match"] == "standalone"
        if m["dataset"] not in datasets and not standalone:
            raise ConfigError(
                f"models.{name}.dataset: {m['dataset']!r} is not a defined dataset "
                f"(defined: {', '.join(sorted(datasets)) or 'none'})"
            )
        sched = m.get("train", {}).get("lr_schedule", [])
        epochs = [s["epoch"] for s in sched]
        if epochs != sorted(set(epochs)):
            raise ConfigError(f"models.{name}.train.lr_schedule: epochs must be strictly increasing, got {epochs}")
        if "snapshots" in m.get("train", {}):
            _check_snapshots(f"models.{name}.train.snapshots", m)
    entries = model_entries(models)
    sections = [key for key, value in config.items() if isinstance(value, Mapping) and "models" in value
                and key != "models"]
    for section in sections:
        listed = config[section]["models"] or []
        for i, name in enumerate(listed):
            if name not in entries:
                raise _unknown_model(f"{section}.models[{i}]", name, models)
            why = section_refusal(section, entries[name])
            if why:
                raise ConfigError(f"{section}.models[{i}]: model {name!r} cannot run {section}: {why}")
    _check_random_points_classifier(config)
    _check_compare(config)
    if results is not None:
        _check_explained_samples(config, Path(results))


def _check_random_points_classifier(config: Mapping[str, Any]) -> None:
    name = (config.get("geometry") or {}).get("random_points", {}).get("classifier")
    models = config.get("models", {})
    if name is not None and (name not in models or model_kind(models[name]) != "classifier"):
        classifiers = sorted(m for m, spec in models.items() if model_kind(spec) == "classifier")
        raise ConfigError(f"geometry.random_points.classifier: {name!r} is not a configured classifier model "
                          f"(classifiers: {', '.join(classifiers) or 'none'})")


def _compared_dataset(config: Mapping[str, Any], key: str, name: str) -> str:
    """The dataset of a model or snapshot (`model@epoch`) named in the compare section; a
    ConfigError naming `key` for a name that is neither, or a table with samples of its own."""
    models = config.get("models", {})
    entries = model_entries(models)
    if name not in entries:
        raise _unknown_model(key, name, models)
    spec = entries[name]
    if model_source(spec) == "latents" and source_settings(spec)["match"] == "standalone":
        raise ConfigError(f"{key}: {name!r} is a standalone table of latents: its samples are its own, and no "
                          f"other model shares them (match it to a dataset: source.match sample_id)")
    return spec["dataset"]


def _check_compare(config: Mapping[str, Any]) -> None:
    """compare.pairs name models (or snapshots) that share samples; compare.snapshots name models
    that take snapshots."""
    section = config.get("compare") or {}
    pairs = section.get("pairs") or []
    for i, pair in enumerate([] if pairs == "all" else pairs):
        key = f"compare.pairs[{i}]"
        a, b = pair
        if a == b:
            raise ConfigError(f"{key}: compares {a!r} with itself")
        da, db = _compared_dataset(config, key, a), _compared_dataset(config, key, b)
        if da != db:
            raise ConfigError(f"{key}: models {a!r} (dataset {da!r}) and {b!r} (dataset {db!r}) share no samples; "
                              f"compare models of one dataset")
    for i, name in enumerate(section.get("snapshots") or []):
        key = f"compare.snapshots[{i}]"
        _compared_dataset(config, key, name)
        if name not in config["models"] or not model_snapshots(config["models"][name]):
            raise ConfigError(f"{key}: {name!r} takes no training snapshots (set models.{name}.train.snapshots)")


def explain_models(config: Mapping[str, Any]) -> list[str]:
    """The models the explain section maps: `explain.models`, or every model that can run it."""
    models = config.get("models", {})
    names = (config.get("explain") or {}).get("models")
    return list(names) if names is not None else [m for m in models if section_refusal("explain", models[m]) is None]


def _check_explained_samples(config: Mapping[str, Any], results: Path) -> None:
    """explain.samples.ids name samples of every explain model's dataset: checked against each
    dataset's store that exists (a first run checks them in the explain_maps job)."""
    from latent_atlas.data.store import stored_sample_ids

    ids = (config.get("explain") or {}).get("samples", {}).get("ids") or []
    if not ids:
        return
    entries = model_entries(config["models"])
    for name in explain_models(config):
        dataset = entries[name]["dataset"]
        known = stored_sample_ids(results / "data" / dataset)
        if known is None:
            continue
        missing = sorted(set(int(i) for i in ids) - set(known.tolist()))
        if missing:
            raise ConfigError(
                f"explain.samples.ids: sample ids {missing} are not in dataset {dataset!r} of explain model "
                f"{name!r} ({results / 'data' / dataset}); name samples of every dataset explain.models maps")


def _check_dataset(key: str, ds: Mapping[str, Any]) -> None:
    # validate() does not fill entries behind a `$ref`: take their defaults from the schema.
    ds = fill_defaults(dict(ds), schema_node("#/$defs/dataset"))
    source = ds["source"]
    needs_path = {"idx", "image_folder", "celeba", "audio_digits"}
    if source in needs_path and not ds.get("path"):
        raise ConfigError(f"{key}.path: required for source {source!r} (the folder holding the data)")
    if source == "torchvision" and not ds.get("name"):
        raise ConfigError(f"{key}.name: required for source 'torchvision' (MNIST, FashionMNIST, EMNIST or CelebA)")
    split = ds.get("split", {})
    if split.get("method") == "speaker" and source != "audio_digits":
        raise ConfigError(f"{key}.split.method: 'speaker' needs source 'audio_digits', not {source!r}")
    if source == "audio_digits" and ds.get("representation") == "waveform":
        if ds.get("duration") is None:
            raise ConfigError(f"{key}.duration: representation waveform needs a duration (seconds every "
                              "recording is padded or cut to, so that every sample has one length)")
    elif source == "audio_digits":  # the spectrogram's settings
        low, high = ds["band"]
        nyquist = ds["sample_rate"] / 2
        if not 0 <= low < high < nyquist:
            raise ConfigError(
                f"{key}.band: need 0 <= low < high < sample_rate/2 = {nyquist:g} Hz, got [{low}, {high}]"
            )
        lo_db, hi_db = ds["db_range"]
        if not lo_db < hi_db:
            raise ConfigError(f"{key}.db_range: need low < high, got [{lo_db}, {hi_db}]")
