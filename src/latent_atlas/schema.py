"""The config schema (latent_atlas/config.schema.yaml) as the only source of config defaults.

Snakemake's validate() fills the defaults into the workflow's config; library code called without
the workflow (tests, notebooks, jobs that get one section) fills them from the same schema here.
This module imports only yaml, so every job may use it.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import yaml

# libyaml's parser where PyYAML has it (the schema loads ~10x faster: it is read on every
# Snakemake start, also in each SLURM job step); the same documents as yaml.SafeLoader.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

class ConfigError(ValueError):
    """A configuration problem; the message names the key path and what was expected."""


# In the package (not under workflow/) because the library reads it: an installed copy has it too.
SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


@lru_cache(maxsize=None)
def _schema(path: str) -> dict:
    if not Path(path).is_file():
        raise FileNotFoundError(f"config schema not found at {path}")
    return yaml.load(Path(path).read_text(), Loader=SAFE_LOADER)


def schema_node(pointer: str, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """The part of the config schema at a JSON pointer, e.g. "#/$defs/train" or
    "#/properties/importance" (a copy: callers may not change the cached schema)."""
    node = _schema(str(schema_path))
    for part in pointer.lstrip("#").strip("/").split("/"):
        if part:
            node = node[part]
    return copy.deepcopy(node)


def fill_defaults(instance: Any, schema: Mapping[str, Any]) -> Any:
    """Fill `instance` in place with the schema's `default`s, the way Snakemake's validate() does
    (a missing property takes its `default`, where the schema names one; objects that are present
    are filled recursively, `$ref`s followed); return it."""
    if "$ref" in schema:
        schema = {**schema_node(schema["$ref"]), **{k: v for k, v in schema.items() if k != "$ref"}}
    if isinstance(instance, dict):
        for key, sub in schema.get("properties", {}).items():
            if "$ref" in sub:
                sub = {**schema_node(sub["$ref"]), **{k: v for k, v in sub.items() if k != "$ref"}}
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                fill_defaults(instance[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in set(instance) - set(schema.get("properties", {})):
                fill_defaults(instance[key], extra)
    return instance


def defaults(pointer: str) -> dict:
    """Defaults of the object at `pointer` in the schema, e.g. defaults("#/$defs/train")."""
    return fill_defaults({}, schema_node(pointer))


def with_defaults(section: Mapping[str, Any] | None, pointer: str, key: str) -> dict:
    """A config section (`key`, e.g. "importance" or "models.ae.train") with the schema's defaults
    at `pointer` filled in; an unknown key is a ValueError naming it and the known keys."""
    node = schema_node(pointer)
    section = copy.deepcopy(dict(section or {}))
    known = node.get("properties", {})
    if node.get("additionalProperties") is False:
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise ValueError(f"{key}: unknown keys {unknown}; known: {sorted(known)}")
    return fill_defaults(section, node)
