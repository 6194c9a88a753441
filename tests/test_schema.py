"""The config schema as the one source of defaults (latent_atlas.schema)."""

from __future__ import annotations

import pytest
import yaml

from latent_atlas.schema import SCHEMA_PATH, defaults, with_defaults

KEYWORDS_WITH_NULL = {"default"}  # `default: null` is a real default; any other null is a YAML slip


def _null_keys(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if value is None and key not in KEYWORDS_WITH_NULL:
                yield f"{path}/{key}"
            yield from _null_keys(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _null_keys(value, f"{path}[{i}]")


def test_schema_has_no_stray_keys():
    """An unquoted comma in a flow-mapping description splits it into a stray null-valued key."""
    assert list(_null_keys(yaml.safe_load(SCHEMA_PATH.read_text()))) == []


def test_stray_key_detector_finds_an_unquoted_comma():
    node = yaml.safe_load("a: {type: integer, description: Stratified, seeded folds.}")
    assert list(_null_keys(node)) == ["/a/seeded folds."]


def test_defaults_follow_refs_and_nested_sections():
    train = defaults("#/$defs/train")
    assert train["epochs"] == 10 and train["optimizer"] == "adam" and train["lr_schedule"] == []
    importance = defaults("#/properties/importance")
    assert importance["method"] == "auto" and importance["n_perm"] == 4
    # A nested section with `default: {}` is filled recursively.
    geometry = defaults("#/properties/geometry")
    assert geometry["projections"]["tsne"]["perplexity"] == 30


def test_with_defaults_keeps_given_values_and_names_unknown_keys():
    filled = with_defaults({"n_perm": 2}, "#/properties/importance", "importance")
    assert filled["n_perm"] == 2 and filled["block_size"] == defaults("#/properties/importance")["block_size"]
    with pytest.raises(ValueError, match=r"importance: unknown keys \['nperm'\]"):
        with_defaults({"nperm": 2}, "#/properties/importance", "importance")


def test_defaults_equal_what_snakemake_validate_fills(tmp_path):
    """The library's defaults are the workflow's: Snakemake's validate() on a minimal config.
    (validate() does not follow `$ref`s, so a model's `train` section is filled by the library.)"""
    from snakemake.utils import validate

    config = {"datasets": {"d": {"source": "sklearn_digits"}},
              "models": {"m": {"dataset": "d", "arch": "dense_ae"}}}
    validate(config, schema=str(SCHEMA_PATH))
    assert config["models"]["m"]["extract"] == defaults("#/$defs/model")["extract"]
    assert config["importance"] == defaults("#/properties/importance")
    assert config["geometry"] == defaults("#/properties/geometry")


@pytest.mark.parametrize("path", sorted((SCHEMA_PATH.parents[2] / "config").rglob("*.yaml")), ids=lambda p: p.name)
def test_validate_config_fills_what_snakemake_validate_fills(path):
    """The workflow fills defaults with schema.validate_config (the schema read once); Snakemake's
    validate() gives the same config for every shipped one, and both refuse a wrong type."""
    import copy

    import jsonschema
    from snakemake.utils import validate

    from latent_atlas.config import validate_config

    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict) or "datasets" not in config:
        pytest.skip(f"{path.name} is not a workflow config")
    ours, theirs = copy.deepcopy(config), copy.deepcopy(config)
    validate_config(ours)
    validate(theirs, schema=str(SCHEMA_PATH))
    assert ours == theirs and ours != config
    bad = {**copy.deepcopy(config), "seed": "zero"}
    with pytest.raises(jsonschema.ValidationError, match="'zero' is not of type 'integer'"):
        validate_config(bad)
