"""Checks of the configuration that a JSON schema cannot express (cross-references, sizes).

Snakemake's validate() checks types, unknown keys and fills defaults first; `check_config` then
checks how the parts refer to each other and raises ConfigError naming the key path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

from latent_atlas.models.archs import ARCH_DEFAULTS, AUTOENCODER_ARCHS, arch_kind
from latent_atlas.schema import ConfigError, fill_defaults, schema_node

AUTOENCODERS = set(AUTOENCODER_ARCHS)
CLASSIFIERS = set(ARCH_DEFAULTS) - AUTOENCODERS

# Analysis sections that take only some model kinds in their `models:` list; every other section
# with a `models:` list (every analysis stage, also one added later) takes every kind.
SECTION_KINDS = {
    "featureviz": CLASSIFIERS,
}


def schema_errors(config: Mapping[str, Any], schema_path: str | Path) -> list[str]:
    """Every schema violation of `config`, each as 'key.path: what was expected'."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err.absolute_path)
        where = where.replace(".[", "[") or "<top level>"
        messages.append(f"{where}: {err.message}")
    return messages


def model_kind(arch: str) -> str:
    """'autoencoder' or 'classifier' (the arch registry's answer, for the rule files)."""
    return arch_kind(arch)


def check_config(config: Mapping[str, Any]) -> None:
    datasets = config.get("datasets", {})
    models = config.get("models", {})
    for name, ds in datasets.items():
        _check_dataset(f"datasets.{name}", ds)
    for name, m in models.items():
        if m["dataset"] not in datasets:
            raise ConfigError(
                f"models.{name}.dataset: {m['dataset']!r} is not a defined dataset "
                f"(defined: {', '.join(sorted(datasets)) or 'none'})"
            )
        sched = m.get("train", {}).get("lr_schedule", [])
        epochs = [s["epoch"] for s in sched]
        if epochs != sorted(set(epochs)):
            raise ConfigError(f"models.{name}.train.lr_schedule: epochs must be strictly increasing, got {epochs}")
    sections = [key for key, value in config.items() if isinstance(value, Mapping) and "models" in value
                and key != "models"]
    for section in sections:
        kinds = SECTION_KINDS.get(section, AUTOENCODERS | CLASSIFIERS)
        listed = config[section]["models"] or []
        for i, name in enumerate(listed):
            if name not in models:
                raise ConfigError(
                    f"{section}.models[{i}]: {name!r} is not a defined model "
                    f"(defined: {', '.join(sorted(models)) or 'none'})"
                )
            arch = models[name]["arch"]
            if arch not in kinds:
                raise ConfigError(
                    f"{section}.models[{i}]: model {name!r} has arch {arch!r}; "
                    f"{section} takes {', '.join(sorted(kinds))}"
                )


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
    if source == "audio_digits":
        low, high = ds["band"]
        nyquist = ds["sample_rate"] / 2
        if not 0 <= low < high < nyquist:
            raise ConfigError(
                f"{key}.band: need 0 <= low < high < sample_rate/2 = {nyquist:g} Hz, got [{low}, {high}]"
            )
        lo_db, hi_db = ds["db_range"]
        if not lo_db < hi_db:
            raise ConfigError(f"{key}.db_range: need low < high, got [{lo_db}, {hi_db}]")
