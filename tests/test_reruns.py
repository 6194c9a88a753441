"""Every config key reruns exactly the jobs that read it.

For every leaf key of the config schema (walked from the schema, not a hand list), the key is
edited to another valid value on a finished run of config/test.yaml, and Snakemake's dry run says
which jobs must run (tests/rerun_probe.py). That list is compared with the rules that
`latent_atlas.rules.READS` names as reading the key:
- a job that must run for a reason of its own (its params, its input set, missing outputs) belongs
  to a rule reading the key, for the model or dataset the key belongs to;
- every job of a rule whose params hold the key (READS `keys`) runs.
Jobs that run only because a job they read from runs are the key's consequences, not its readers.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, TEST_CONFIG
from latent_atlas.config import section_refusal
from latent_atlas.rules import READS, readers, variant_readers
from latent_atlas.schema import fill_defaults, schema_node

# Keys that cannot take another valid value on the test config, and why.
NOT_EDITABLE = {
    "datasets.*.source": "another source is another dataset (its own folder or download)",
    "models.*.dataset": "the test config has one dataset",
    "models.*.kind": "only for torch_export and onnx sources; the test config trains its models",
    "models.*.source": "the test config trains its models (tests/test_byom.py runs loaded ones)",
    "datasets.*.series": "a series source's options need its window and a file of recordings (tests/"
                         "test_tabular.py reads them); they reach prepare_data as the dataset entry",
    "datasets.*.attributes": "a table of the dataset's sample ids (tests/test_attributes.py reads one); its "
                             "keys reach dataset_attributes alone, as the dataset entry's spec",
}
# A selection file (samples: {file, selection}) must hold sample ids of the run's data; absent, the
# rules keep their inputs and params. tests/test_selection.py runs one and edits its file.
NOT_EDITABLE.update({key: "a selection file of the run's sample ids (tests/test_selection.py)"
                     for key in ("explain.samples.file", "explain.samples.selection", "importance.samples",
                                 "featureviz.samples", "compare.samples")})

# The model whose entry carries each model key (the arch must take it); others use conv_ae.
MODEL_FOR = {"params.hidden": "dense_ae", "params.latent_activation": "dense_ae", "params.feature_dim": "cnn",
             "arch": "dense_ae", "extract.hidden_layers": "cnn", "extract.hidden_max_samples": "cnn",
             "train.momentum": "mlp", "train.beta": "conv_vae"}

# Edits the schema alone cannot choose (values that must fit the test data or models).
EDITS = {
    "models.*.arch": "dense_vae",
    "models.*.params.channels": [8, 16, 16, 16],
    "models.*.params.kernel_size": 5,
    "models.*.train.lr_schedule": [{"epoch": 1, "lr": 0.001}],
    "datasets.*.class_names": [f"digit {i}" for i in range(10)],
    "datasets.*.classes": [0, 1, 2],
    "datasets.*.fold_labels": {"9": 8},
    "datasets.*.band": [200, 3800],
    "datasets.*.db_range": [-40, 0],
    "datasets.*.attribute": "Smiling",
    "datasets.*.path": "resources/elsewhere",
    "datasets.*.prefix": "other-",
    "geometry.random_points.classifier": "mlp",
    "geometry.planes.axis_pairs": [[0, 1]],
    "atlas.thumbnails.max_samples": 50,
    "atlas.tile_points": 512,
    "featureviz.unregularised.hidden_layer": 2,
    "featureviz.tv_l1_grid.hidden_layer": 2,
    "featureviz.gallery.layers": [2, 3],
    "featureviz.gallery.units": 4,
    "figures.formats": ["png", "pdf"],
    "compare.pairs": [["conv_ae", "conv_vae"], ["dense_ae", "conv_ae"]],
    "compare.snapshots": [],
    "gpu.pool": "none",
    "gpu.lock_dir": ".snakemake/other-gpu-slots",
    "importance.variants": {"patch": {"groups": "patch"}},  # the test config's variant, marginal
    "datasets.*.factors.shapes": ["square", "heart"],
    "attributes.traversal.arithmetic": "scale",
    "datasets.*.table.label_column": "label",
    "datasets.*.table.split_column": "split",
    "models.*.train.attributes": {"class": [0, 1, 2]},
    "anomaly.normal_attributes": {"class": [0, 1]},
}


def _resolve(node: dict) -> dict:
    if "$ref" in node:
        return {**schema_node(node["$ref"]), **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def leaf_keys(config: dict) -> list[tuple[str, str, dict]]:
    """(dotted key, generic key with * for entry names, schema node) of every leaf of the schema,
    dataset and model entries taken from `config` (one model per model key: MODEL_FOR)."""
    out = []

    def walk(node, path, generic):
        node = _resolve(node)
        props = node.get("properties")
        if node.get("type") == "object" and props:
            for name, sub in props.items():
                walk(sub, path + [name], generic + [name])
        else:
            out.append((".".join(path), ".".join(generic), node))

    root = schema_node("#")
    for name, sub in root["properties"].items():
        if name == "datasets":  # the first dataset's keys: every dataset's reach the same rules
            walk(schema_node("#/$defs/dataset"), ["datasets", next(iter(config["datasets"]))], ["datasets", "*"])
        elif name == "models":
            model_keys = []
            walk(schema_node("#/$defs/model"), ["models", "_"], ["models", "*"])
            model_keys, out[:] = [k for k in out if k[1].startswith("models.")], [k for k in out
                                                                                 if not k[1].startswith("models.")]
            for _, generic, node in model_keys:
                rest = generic.split(".", 2)[2]
                model = MODEL_FOR.get(rest, "conv_ae")
                out.append((f"models.{model}.{rest}", generic, node))
        else:
            walk(sub, [name], [name])
    return out


def _get(config: dict, key: str):
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(config: dict, key: str, value) -> None:
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def edited_value(key: str, generic: str, node: dict, current, config: dict):
    """Another valid value of `key` (currently `current`)."""
    if generic in EDITS:
        return EDITS[generic]
    if key.endswith(".metric"):
        return "cosine"
    if key.endswith(".models"):
        section = key.split(".")[0]
        able = [m for m in config["models"] if section_refusal(section, config["models"][m]) is None]
        listed = list(current if current is not None else able)
        extra = [m for m in able if m not in listed]
        return listed + extra[:1] if extra else listed[:-1]
    types = node.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if "enum" in node:
        return next(v for v in node["enum"] if v != current)
    if current is None or isinstance(current, str) and "string" not in types:
        low = node.get("minimum", node.get("exclusiveMinimum", 0))
        if "integer" in types:
            return max(int(low), 2)
        if "number" in types:
            return 0.5
        if "boolean" in types:
            return True
        if "array" in types:
            item = _resolve(node.get("items", {}))
            item_types = item.get("type")
            if item_types == "string" or item_types == ["string"]:
                return ["a"]
            return [max(item.get("minimum", 1), 1)]
        raise AssertionError(f"{key}: no edit for a {types} key; add one to EDITS")
    if isinstance(current, bool):
        return not current
    if isinstance(current, int):
        top = node.get("maximum")
        return current + 1 if top is None or current + 1 <= top else current - 1
    if isinstance(current, float):
        low = node.get("exclusiveMinimum", node.get("minimum", 0))
        return current / 2 if current / 2 > low else current * 1.5 if current else 0.5
    if isinstance(current, list):
        if len(current) > max(1, node.get("minItems", 0)):
            return current[:-1]
        item = _resolve(node.get("items", {}))
        last = current[-1] if current else item.get("minimum", 1)
        return current + [last * 2 if isinstance(last, (int, float)) and last else 1]
    raise AssertionError(f"{key}: no edit for value {current!r}; add one to EDITS")


def _skipped(generic: str) -> str | None:
    for pattern, why in NOT_EDITABLE.items():
        if generic == pattern or generic.startswith(pattern + "."):
            return why
    return None


def _consistent(job: dict, bound: dict[str, str], models: dict, analyses: set[str] | None = None) -> bool:
    """Whether a job is one of the jobs a key of the model or dataset `bound` names (and, for an
    importance setting a variant may override, of the analyses that read it: `analyses`)."""
    wc = job["wildcards"]
    if analyses is not None and "analysis" in wc and wc["analysis"] not in analyses:
        return False
    if "model" in bound:
        # a snapshot (model@epoch) is its model; a compared pair (a, b) belongs to both of its models
        named = [wc[key].partition("@")[0] for key in ("model", "a", "b") if key in wc]
        if named:
            return bound["model"] in named
        return wc.get("dataset", models[bound["model"]]["dataset"]) == models[bound["model"]]["dataset"]
    if "dataset" in bound:
        return wc.get("dataset", bound["dataset"]) == bound["dataset"]
    return True


def rerun_problems(key: str, value, result: dict, filled: dict) -> list[str]:
    """What disagrees between READS and the dry run `result` of the edit `key` = `value` of the
    config `filled` (defaults filled in)."""
    if "error" in result:
        return [f"{key} = {value!r}: the workflow refused it: {result['error']}"]
    models, problems = filled["models"], []
    expected = readers(key)
    analyses = variant_readers(key, filled)
    if key.endswith(".models"):  # a model added to (or dropped from) a list: its jobs alone
        (changed,) = set(value) ^ set(_get(filled, key))
        expected = {rule: (kind, {"model": changed} if rule != "figure_manifest" else bound)
                    for rule, (kind, bound) in expected.items()}
    for job in result["jobs"]:
        if job.get("run") != "own" or job["rule"] == "all":
            continue
        kind, bound = expected.get(job["rule"], (None, {}))
        if kind is None or not _consistent(job, bound, models, analyses):
            problems.append(f"{key} = {value!r} reruns {job['rule']} {job['wildcards']}, which does not read it")
    for job in result["jobs"]:
        kind, bound = expected.get(job["rule"], (None, {}))
        if kind == "keys" and _consistent(job, bound, models, analyses) and not job.get("run"):
            problems.append(f"{key} = {value!r} does not rerun {job['rule']} {job['wildcards']}, which reads it")
    return problems


def test_the_comparison_finds_too_many_and_too_few_reruns():
    """rerun_problems fails a shard rerun by a figure setting, a missed rerun of a reader, and
    another model's shards rerun when a model joins importance.models; it passes what READS says."""
    filled = fill_defaults(yaml.safe_load(TEST_CONFIG.read_text()), schema_node("#"))
    block = {"rule": "importance_block", "wildcards": {"dataset": "digits", "model": "dense_ae", "block": "0000"}}
    plot = {"rule": "plot_importance", "wildcards": {"dataset": "digits", "model": "dense_ae"}}
    assert rerun_problems("importance.top_k", 2, {"jobs": [{**block, "run": "own"}, {**plot, "run": "own"}]},
                          filled) == [f"importance.top_k = 2 reruns importance_block {block['wildcards']}, "
                                      "which does not read it"]
    assert rerun_problems("importance.top_k", 2, {"jobs": [block, plot]}, filled) == [
        f"importance.top_k = 2 does not rerun plot_importance {plot['wildcards']}, which reads it"]
    assert rerun_problems("importance.top_k", 2, {"jobs": [block, {**plot, "run": "own"}]}, filled) == []
    added = {"rule": "importance_block", "wildcards": {"dataset": "digits", "model": "conv_ae", "block": "0000"},
             "run": "own"}
    assert rerun_problems("importance.models", ["dense_ae", "conv_ae"], {"jobs": [added, block]}, filled) == []
    assert len(rerun_problems("importance.models", ["dense_ae", "conv_ae"],
                              {"jobs": [added, {**block, "run": "own"}]}, filled)) == 1


def probe(workdir, configs: list[dict], processes: int = 1) -> list[dict]:
    """Dry runs of `configs` on the finished run in `workdir`, in order, in `processes` probe
    processes at once (a dry run uses one core)."""
    from concurrent.futures import ThreadPoolExecutor

    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))

    def run(chunk: list[dict]) -> list[dict]:
        proc = subprocess.run([sys.executable, str(ROOT / "tests" / "rerun_probe.py"), str(workdir)],
                              input=json.dumps(chunk), capture_output=True, text=True, env=env, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return [json.loads(line) for line in proc.stdout.splitlines()]

    with ThreadPoolExecutor(processes) as pool:
        lines = list(pool.map(run, [configs[i::processes] for i in range(processes)]))
    return [lines[i % processes][i // processes] for i in range(len(configs))]


@pytest.mark.slow
def test_every_key_reruns_exactly_its_readers(e2e_run):
    base = yaml.safe_load(TEST_CONFIG.read_text())
    filled = fill_defaults(copy.deepcopy(base), schema_node("#"))
    edits, skipped = [], {}
    for key, generic, node in leaf_keys(filled):
        why = _skipped(generic)
        if why:
            skipped[generic] = why
            continue
        current = _get(filled, key)
        value = edited_value(key, generic, node, current, filled)
        assert value != current, key
        config = copy.deepcopy(base)
        _set(config, key, value)
        edits.append((key, value, config))
    assert set(skipped) <= {g for _, g, _ in leaf_keys(filled)} and len(edits) > 150

    results = probe(e2e_run, [base] + [config for _, _, config in edits], processes=2)
    unchanged = [j for j in results[0]["jobs"] if j.get("run") and j["rule"] != "all"]
    assert not unchanged, f"the unedited config reruns {unchanged}"

    problems = []
    for (key, value, _), result in zip(edits, results[1:]):
        problems += rerun_problems(key, value, result, filled)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


def test_reads_names_real_rules_and_keys():
    """READS names each rule of the workflow once, and only keys the schema has."""
    from latent_atlas.rules import _matches

    filled = fill_defaults(copy.deepcopy(yaml.safe_load(TEST_CONFIG.read_text())), schema_node("#"))
    keys = [generic for _, generic, _ in leaf_keys(filled)]
    for rule, reads in READS.items():
        for pattern in reads.keys + reads.via:
            if pattern != "*":
                generic = pattern.replace("{model}", "*").replace("{dataset}", "*")
                assert any(_matches(generic, k) is not None for k in keys), f"{rule}: {pattern} is no config key"
