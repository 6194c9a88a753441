"""The workflow's decisions in the library (latent_atlas.rules, latent_atlas.config): which rules
run for which model, the hashes written into results, the atlas's sample count, config checks."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import TEST_CONFIG
from latent_atlas import rules
from latent_atlas.config import ConfigError, check_config
from latent_atlas.data.store import stored_sample_ids


def _config() -> dict:
    return yaml.safe_load(TEST_CONFIG.read_text())


@pytest.mark.parametrize("spec, expected", [
    ({"dataset": "d", "arch": "dense_ae", "params": {"latent_dim": 2}},
     ["train", "extract_autoencoder", "plot_model_autoencoder", "plot_latent_scatter", "plot_first_layer_weights"]),
    ({"dataset": "d", "arch": "conv_vae"}, ["train", "extract_autoencoder", "plot_model_autoencoder"]),
    ({"dataset": "d", "arch": "cnn_classifier"}, ["train", "extract_classifier_hidden", "plot_model_classifier"]),
    ({"dataset": "d", "arch": "mlp_classifier", "extract": {"hidden_layers": False}},
     ["train", "extract_classifier", "plot_model_classifier", "plot_first_layer_weights"]),
    ({"dataset": "d", "arch": "conv_ae", "source": {"format": "state_dict", "weights": "w.pt"}},
     ["import_model", "extract_autoencoder"]),
    ({"dataset": "d", "kind": "autoencoder", "source": {"format": "onnx", "encoder": "e.onnx"}},
     ["import_model", "extract_encoder"]),
    ({"dataset": "d", "kind": "classifier", "source": {"format": "torch_export", "encoder": "e.pt2",
                                                       "head": "h.pt2"}},
     ["import_model", "extract_classifier_hidden"]),
    ({"dataset": "d", "source": {"format": "latents", "table": "z.parquet"}}, ["import_latents"]),
    ({"dataset": "d", "arch": "dense_ae", "params": {"latent_dim": 2}, "train": {"snapshots": [1]}},
     ["train_with_snapshots", "extract_autoencoder", "plot_model_autoencoder", "plot_latent_scatter",
      "plot_first_layer_weights"]),
    # a snapshot (config.model_entries): its model's entry, its model.pt copied, no training figures
    ({"dataset": "d", "arch": "dense_ae", "params": {"latent_dim": 2}, "train": {"snapshots": [1]},
      "snapshot": {"of": "m", "epoch": 1}},
     ["snapshot_model", "extract_autoencoder", "plot_latent_scatter", "plot_first_layer_weights"]),
    ({"dataset": "d", "arch": "cnn_classifier", "train": {"snapshots": [1]}, "snapshot": {"of": "m", "epoch": 1}},
     ["snapshot_model", "extract_classifier_hidden"]),
])
def test_model_rules(spec, expected):
    assert rules.model_rules(spec) == expected


def test_model_config_hash_covers_the_model_its_dataset_seed_and_threads():
    cfg = _config()
    base = rules.model_config_hash(cfg, "conv_ae")
    assert base == rules.model_config_hash(copy.deepcopy(cfg), "conv_ae")
    for edit in (lambda c: c["models"]["conv_ae"]["train"].update(epochs=1),
                 lambda c: c["datasets"]["digits"].update(size=12),
                 lambda c: c.update(seed=5), lambda c: c.update(numeric_threads=3)):
        changed = copy.deepcopy(cfg)
        edit(changed)
        assert rules.model_config_hash(changed, "conv_ae") != base
    other = copy.deepcopy(cfg)
    other["models"]["cnn"]["train"]["epochs"] = 1  # another model's entry
    other["importance"]["n_perm"] = 9  # an analysis setting
    assert rules.model_config_hash(other, "conv_ae") == base


def test_run_config_hash_leaves_out_the_gpu_pool():
    cfg = _config()
    base = rules.run_config_hash(cfg)
    assert rules.run_config_hash({**cfg, "gpu": {"pool": "none"}}) == base
    assert rules.run_config_hash({**cfg, "seed": 1}) != base


def test_atlas_sample_count():
    assert rules.atlas_sample_count(None, 2000) == 2000
    assert rules.atlas_sample_count(500, 2000) == 500
    assert rules.atlas_sample_count("all", 2000) == rules.ALL_SAMPLES > 10**12


def test_readers_bind_the_model_or_dataset_of_a_key():
    found = rules.readers("models.cnn.train.lr")
    assert found["train"] == ("keys", {"model": "cnn"})
    assert "plot_model_classifier" not in found  # a figure does not read the training settings
    assert rules.readers("importance.top_k").keys() == {"importance_explorer", "plot_importance",
                                                        "plot_importance_variants", "figure_manifest"}
    assert rules.readers("geometry.projections.tsne.sample_sizes")["geometry_tsne"] == ("via", {})
    assert rules.readers("gpu.pool") == {}  # machine settings: nothing reruns


def test_random_points_classifier_must_be_a_classifier():
    cfg = _config()
    cfg["geometry"]["random_points"]["classifier"] = "conv_ae"
    with pytest.raises(ConfigError, match=r"geometry\.random_points\.classifier: 'conv_ae' is not a configured "
                                          r"classifier model \(classifiers: cnn, mlp\)"):
        check_config(cfg)


def test_explained_sample_ids_are_checked_against_existing_stores(tmp_path):
    cfg = _config()
    cfg["explain"]["samples"] = {"ids": [3, 7]}
    check_config(cfg, results=tmp_path)  # no store yet: the job checks them
    store = tmp_path / "data" / "digits"
    store.mkdir(parents=True)
    pd.DataFrame({"sample_id": np.arange(5, dtype=np.int64)}).to_parquet(store / "samples.parquet")
    assert stored_sample_ids(store).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match=r"explain\.samples\.ids: sample ids \[7\] are not in dataset 'digits' "
                                          r"of explain model 'cnn'"):
        check_config(cfg, results=tmp_path)
    cfg["explain"]["samples"] = {"ids": [3, 4]}
    check_config(cfg, results=tmp_path)


def test_a_variant_setting_reaches_the_analyses_that_do_not_override_it():
    config = {"importance": {"variants": {"patch": {"groups": "patch"},
                                          "cond": {"permutation": "conditional", "conditional": {"ring": 1}}}}}
    assert rules.variant_readers("importance.groups", config) == {"importance", "importance_cond"}
    assert rules.variant_readers("importance.patch.size", config) == {"importance", "importance_patch",
                                                                      "importance_cond"}
    assert rules.variant_readers("importance.conditional.ring", config) == {"importance", "importance_patch"}
    assert rules.variant_readers("importance.n_perm", config) is None
    assert rules.variant_readers("importance.groups", {}) == {"importance"}
