"""The compare stage: which pairs are compared, config errors, the jobs and figures on small cases
(the measures themselves: tests/test_compare_measures.py)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import TEST_CONFIG
from latent_atlas.config import ConfigError, check_config
from latent_atlas.rules import compare_pairs


def _config(**compare) -> dict:
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cfg["compare"] = compare
    return cfg


def test_pairs_all_means_every_pair_of_one_dataset():
    cfg = _config(pairs="all")
    cfg["datasets"]["other"] = {"source": "sklearn_digits"}
    cfg["models"]["elsewhere"] = {**copy.deepcopy(cfg["models"]["dense_ae"]), "dataset": "other"}
    pairs = compare_pairs(cfg)
    names = [m for m, spec in cfg["models"].items() if spec["dataset"] == cfg["models"]["dense_ae"]["dataset"]]
    assert pairs == [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    assert not any("elsewhere" in pair for pair in pairs)


def test_snapshot_pairs_follow_training():
    cfg = _config(pairs=[["conv_ae", "conv_vae"]], snapshots=["conv_ae"])
    cfg["models"]["conv_ae"]["train"]["snapshots"] = [1, 5, 15]  # 15 = epochs: the trained model itself
    assert compare_pairs(cfg) == [("conv_ae", "conv_vae"), ("conv_ae@1", "conv_ae"), ("conv_ae@5", "conv_ae"),
                                  ("conv_ae@1", "conv_ae@5"), ("conv_ae@5", "conv_ae@15")]


@pytest.mark.parametrize("compare, message", [
    ({"pairs": [["conv_ae", "nope"]]}, r"compare\.pairs\[0\]: 'nope' is not a defined model"),
    ({"pairs": [["conv_ae", "conv_ae"]]}, r"compare\.pairs\[0\]: compares 'conv_ae' with itself"),
    ({"pairs": [["conv_ae@3", "conv_vae"]]}, r"compare\.pairs\[0\]: 'conv_ae@3' is not a snapshot of conv_ae"),
    ({"snapshots": ["dense_ae"]}, r"compare\.snapshots\[0\]: 'dense_ae' takes no training snapshots"),
])
def test_config_errors_name_the_key(compare, message):
    with pytest.raises(ConfigError, match=message):
        check_config(_config(**compare))


def test_a_pair_of_two_datasets_shares_no_samples():
    cfg = _config(pairs=[["conv_ae", "elsewhere"]])
    cfg["datasets"]["other"] = {"source": "sklearn_digits"}
    cfg["models"]["elsewhere"] = {**copy.deepcopy(cfg["models"]["dense_ae"]), "dataset": "other"}
    with pytest.raises(ConfigError, match=r"compare\.pairs\[0\]: models 'conv_ae' \(dataset 'digits'\) and "
                                          r"'elsewhere' \(dataset 'other'\) share no samples"):
        check_config(cfg)


@pytest.mark.parametrize("max_samples, compare_maps", [(300, ["mlp"]), (200, ["cnn", "mlp"])])
def test_a_model_explain_maps_on_the_same_samples_reuses_explains_maps(tmp_path, max_samples, compare_maps):
    """The test config explains the cnn on 300 test samples: comparing it on those 300 reads
    explain's maps (no compare_maps job of its own), on 200 it maps them itself."""
    import re

    from conftest import run_snakemake

    cfg = _config(pairs=[["cnn", "mlp"]], max_samples=max_samples)
    assert cfg["explain"]["n_samples"] == 300 and cfg["explain"]["models"] == ["cnn"]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", "results/figures/digits/compare.html", configfile=config)
    out = proc.stdout + proc.stderr
    planned = sorted(re.findall(r"rule compare_maps:\n(?:.*\n)*?\s+wildcards: dataset=digits, model=(\w+)", out))
    assert planned == compare_maps
    page_inputs = re.search(r"rule compare_page:\n\s+input: (.*)", out).group(1)
    cnn_maps = "explain" if "cnn" not in compare_maps else "compare"
    assert f"results/digits/cnn/{cnn_maps}/maps.parquet" in page_inputs
    assert "results/digits/mlp/compare/maps.parquet" in page_inputs
