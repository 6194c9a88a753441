"""Bring your own model: networks trained elsewhere (torch.export, ONNX, state dict) and tables of
latents, checked against the native models they were exported from, through the stages' jobs.

A conv autoencoder and an MLP classifier are trained by the `train` job on a tiny dataset and
exported three ways; each export is imported (`import_model`), extracted and put through permutation
importance, and must give the native model's tables (to 1e-5 relative, bit for bit where the
format runs the same torch ops). Bad inputs stop with errors naming the key and the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from model_helpers import TINY_PARAMS, export_model, pickled_call, tiny_dataset
from rule_settings import geometry_table_settings, importance_settings, projection_settings

from latent_atlas.config import ConfigError, check_config
from latent_atlas.io import read_npz, read_parquet
from latent_atlas.runtime import Files, Job

ROOT = Path(__file__).resolve().parents[1]
IMPORTANCE = {"device": "cpu", "n_perm": 2, "block_size": 32, "max_samples": 16}
NATIVE = {"dense": ("dense_ae", "autoencoder"), "cnn": ("cnn_classifier", "classifier")}


def _train_job(data: str, folder: Path, name: str, arch: str, params: dict | None = None, dataset: str = "tiny",
               train: dict | None = None) -> Path:
    """model.pt of the `train` job (the workflow's training) on the dataset file `data`."""
    from latent_atlas.models import jobs

    spec = {"dataset": dataset, "arch": arch, "params": TINY_PARAMS[arch] if params is None else params,
            "train": train or {"epochs": 3, "batch_size": 32, "max_train_samples": 64, "lr": 0.01}}
    out = Files(model=str(folder / "model.pt"), metrics=str(folder / "metrics.json"),
                train_log=str(folder / "train_log.tsv"))
    jobs.train(Job(input=Files([data]), output=out, wildcards=Files(model=name)), seed=0, numeric_threads=1,
               arch=spec["arch"], arch_params=spec["params"], training=spec["train"],
               checkpoint_dir=str(folder / "ckpt"))
    return folder / "model.pt"


def _stage_outputs(data: str, model_pt: Path, name: str, kind: str, folder: Path) -> dict[str, pd.DataFrame]:
    """Extraction, pixel importance (one block: every pixel) and latent importance of model.pt."""
    from latent_atlas.importance import jobs as importance
    from latent_atlas.models import jobs

    extra = ({"reconstructions": str(folder / "reconstructions.npz")} if kind == "autoencoder"
             else {"predictions": str(folder / "predictions.parquet"), "hidden": str(folder / "hidden.parquet")})
    out = Files(latents=str(folder / "latents.parquet"), **extra)
    jobs.extract_model(Job(input=Files(data=data, model=str(model_pt)), output=out, wildcards=Files(model=name)),
                       numeric_threads=1, config_hash="h",
                       settings={"batch_size": 32, "reconstructions_per_class": 2, "hidden_max_samples": 50})
    from latent_atlas.importance.plan import plan
    from latent_atlas.io import write_json

    write_json(plan(data, IMPORTANCE["block_size"]), folder / "plan.json")
    inputs = Files(data=data, model=str(model_pt), plan=str(folder / "plan.json"))
    for rule, path in (("importance_block", "block.parquet"), ("latent_importance", "latent_importance.parquet")):
        job_function = getattr(importance, rule)
        job_function(Job(input=inputs, output=Files([str(folder / path)]),
                         wildcards=Files(dataset="tiny", model=name, block="0001")),
                     **importance_settings(job_function, IMPORTANCE, kind=kind, seed=3))
    tables = {k: read_parquet(v) for k, v in out.items() if v.endswith(".parquet")}
    tables["block"] = read_parquet(folder / "block.parquet")
    tables["latent_importance"] = read_parquet(folder / "latent_importance.parquet")
    if kind == "autoencoder":
        tables["reconstructions"] = pd.DataFrame(read_npz(out.reconstructions)["reconstruction"].reshape(-1, 1))
    return tables


def _import_job(data: str, spec: dict, name: str, out: Path):
    from latent_atlas.models import jobs

    jobs.import_model(Job(input=Files(data=data), output=Files(model=str(out)), wildcards=Files(model=name)),
                      arch=spec.get("arch"), arch_params=spec.get("params"), kind=spec.get("kind"),
                      source=spec["source"])


@pytest.fixture(scope="module")
def byom(tmp_path_factory):
    """The tiny dataset, each native model trained by the train job, its exports and stage tables."""
    from latent_atlas.data.store import save_dataset
    from latent_atlas.models.networks import load_model

    root = tmp_path_factory.mktemp("byom")
    data = str(root / "tiny")
    save_dataset(tiny_dataset(n=96), data)
    out = {"root": root, "data": data}
    for name, (arch, kind) in NATIVE.items():
        folder = root / name / "native"
        model_pt = _train_job(data, folder, name, arch)
        out[name] = {"native": _stage_outputs(data, model_pt, name, kind, folder),
                     "sources": export_model(load_model(model_pt), root / name / "files"),
                     "model_pt": model_pt}
    return out


def _assert_tables_close(loaded: dict, native: dict, exact: bool) -> None:
    assert loaded.keys() == native.keys()
    for key, table in native.items():
        other = loaded[key]
        assert list(other.columns) == list(table.columns), key
        for col in table.columns:
            a, b = other[col].to_numpy(), table[col].to_numpy()
            if exact or not np.issubdtype(b.dtype, np.floating):
                np.testing.assert_array_equal(a, b, err_msg=f"{key}.{col}")
            else:
                # importances are means of squared differences of float32 latents: one ulp of
                # onnxruntime-vs-torch difference in z moves the smallest ones by more than 1e-5 of
                # themselves, so they are compared to 2e-4 of the table's largest value (as the engine's
                # own tests compare its paths with each other)
                scale = (float(np.abs(b).max()) or 1.0) * (2e-4 if key == "block" or "importance" in key else 1e-5)
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=scale, err_msg=f"{key}.{col}")


@pytest.mark.parametrize("fmt", ["state_dict", "torch_export", "onnx"])
@pytest.mark.parametrize("name", list(NATIVE))
def test_a_loaded_model_gives_the_native_tables(byom, name, fmt, caplog):
    """Latents, predictions / reconstructions, pixel and latent importance of the imported model
    equal the native model's: bit for bit for the state dict and torch.export (same torch ops, the
    same fast paths); to 1e-5 of the largest value for ONNX (onnxruntime's kernels; importance on
    the same fast paths, through the graph converted with onnx2torch)."""
    arch, kind = NATIVE[name]
    folder = byom["root"] / name / fmt
    folder.mkdir()
    source = byom[name]["sources"][fmt]
    spec = {"dataset": "tiny", "source": source}
    spec.update({"arch": arch, "params": TINY_PARAMS[arch]} if fmt == "state_dict" else {"kind": kind})
    _import_job(byom["data"], spec, name, folder / "model.pt")
    if fmt == "state_dict":  # the record training writes, byte for byte
        assert (folder / "model.pt").read_bytes() == byom[name]["model_pt"].read_bytes()
    with caplog.at_level("INFO", logger="latent_atlas"):
        tables = _stage_outputs(byom["data"], folder / "model.pt", name, kind, folder)
    native = byom[name]["native"]
    if kind == "classifier" and fmt != "state_dict":  # a loaded program exposes one hidden layer: its features
        hidden = native["hidden"]
        native = {**native, "hidden": hidden[[c for c in hidden.columns if not c.startswith("conv")]]}
    _assert_tables_close(tables, native, exact=fmt != "onnx")
    path = {"dense": "kernel", "cnn": "local"}[name]  # ONNX too: converted, checked and read as a chain
    outputs = ["latent"] if kind == "autoencoder" else ["features", "logits"]
    for output in outputs:
        assert f"{output} output, on cpu: path {path}" in caplog.text
    # The compare stage says "identical": CKA 1, every neighbourhood kept, the probes exact.
    measures = _compare_job(byom["root"] / name / "native" / "latents.parquet", folder / "latents.parquet", folder)
    for column in ("linear_cka", "rbf_cka", "knn_overlap_k5"):
        assert measures[column].iloc[0] == pytest.approx(1.0, abs=1e-6), column
    assert measures["procrustes"].iloc[0] == pytest.approx(0.0, abs=1e-6)


def _compare_job(native: Path, loaded: Path, folder: Path) -> pd.DataFrame:
    """The compare stage's pair job on a native model's latents and a loaded copy's; its measures."""
    from latent_atlas.compare.jobs import compare_pair

    out = Files(measures=str(folder / "measures.parquet"), points=str(folder / "points.parquet"),
                dimensions=str(folder / "dimensions.parquet"))
    compare_pair(Job(input=Files(latents_a=str(native), latents_b=str(loaded)), output=out,
                     wildcards=Files(dataset="tiny", a="native", b="loaded")),
                 seed=0, numeric_threads=1, split="all", max_samples=200, k=[5], rbf_max_samples=100, svcca_k=4,
                 cv_folds=3)
    return read_parquet(out.measures)


def test_a_loaded_torch_export_classifier_has_the_native_gradients(byom):
    """featureviz optimises images through the model: a torch.export program passes gradients."""
    from latent_atlas.models.networks import load_model

    folder = byom["root"] / "cnn" / "grad"
    folder.mkdir()
    _import_job(byom["data"], {"dataset": "tiny", "kind": "classifier", "source": byom["cnn"]["sources"]["torch_export"]},
                "cnn", folder / "model.pt")
    x = torch.rand(3, 1, 16, 16, requires_grad=True)
    grads = []
    for path in (folder / "model.pt", byom["cnn"]["model_pt"]):
        model = load_model(path)
        x.grad = None
        torch.log_softmax(model(x), 1)[:, 2].sum().backward()
        grads.append(x.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)


@pytest.mark.parametrize("name", list(NATIVE))
def test_explain_reads_the_first_layer_of_a_torch_export_program(byom, name, tmp_path):
    """explain_samples on a torch.export model gives the native model's first-layer activations
    (read from the program's layer chain), also when the program normalises its input itself."""
    from latent_atlas.explain import jobs as explain
    from latent_atlas.models.networks import load_model

    arch, kind = NATIVE[name]
    latents = byom["root"] / name / "native" / "latents.parquet"
    pd.DataFrame({"sample_id": read_parquet(latents)["sample_id"].iloc[::7]}).to_parquet(tmp_path / "placement.parquet")

    def samples(model_pt: Path) -> dict:
        out = tmp_path / f"{model_pt.parent.name}.npz"
        explain.explain_samples(Job(input=Files(data=byom["data"], model=str(model_pt), latents=str(latents),
                                                placement=str(tmp_path / "placement.parquet")),
                                    output=Files([str(out)]), wildcards=Files(dataset="tiny", model=name)),
                                numeric_threads=1)
        return read_npz(out)

    folder = tmp_path / "loaded"
    folder.mkdir()
    _import_job(byom["data"], {"dataset": "tiny", "kind": kind, "source": byom[name]["sources"]["torch_export"]},
                name, folder / "model.pt")
    loaded, native = samples(folder / "model.pt"), samples(byom[name]["model_pt"])
    assert str(loaded["first_layer_kind"]) == str(native["first_layer_kind"]) == {"dense": "dense", "cnn": "conv"}[name]
    assert loaded["first_layer"].any()
    np.testing.assert_array_equal(loaded["first_layer"], native["first_layer"])

    # a program that normalises its input itself: the normalisation folds into the chain, so its
    # first layer reads too (programs that are no chain are refused: tests/test_chain.py)
    folder = tmp_path / "shifted"
    source = export_model(load_model(byom[name]["model_pt"]), folder, formats=("torch_export",),
                          normalised={"input_range": "-1,1"})["torch_export"]
    _import_job(byom["data"], {"dataset": "tiny", "kind": kind, "source": {**source, "input_range": "0,1"}},
                name, folder / "model.pt")
    shifted, plain = load_model(folder / "model.pt"), load_model(tmp_path / "loaded" / "model.pt")
    x = torch.rand(6, *shifted.input_shape)
    with torch.no_grad():  # the shifted program computes the native network of (x + 1) / 2
        torch.testing.assert_close(shifted.first_layer()[0](x), plain.first_layer()[0]((x + 1) / 2),
                                   rtol=1e-5, atol=1e-5)


def test_input_normalisation_is_applied_before_the_encoder(byom):
    """A network that expects [-1, 1] inputs: the loaded model maps [0, 1] images to it."""
    from latent_atlas.models.networks import load_model

    native = load_model(byom["cnn"]["model_pt"])
    folder = byom["root"] / "norm"
    folder.mkdir()
    source = export_model(native, folder, formats=("torch_export",), normalised={"input_range": "-1,1"})["torch_export"]
    _import_job(byom["data"], {"dataset": "tiny", "kind": "classifier", "source": source}, "norm", folder / "model.pt")
    loaded = load_model(folder / "model.pt")
    x = torch.rand(5, 1, 16, 16)
    torch.testing.assert_close(loaded.features(x), native.features(x), rtol=1e-6, atol=1e-6)
    # the normalisation (the source's [-1, 1] and the graph's own (x - shift) / scale) folds into
    # the layer chain, so the local importance path still applies
    from latent_atlas.importance.engine import model_stack

    stack, why = model_stack(loaded, "features")
    assert stack is not None, why
    with torch.no_grad():
        torch.testing.assert_close(stack(x), native.features(x), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Tables of latents
# --------------------------------------------------------------------------------------------
def _import_latents(table_source: dict, name: str, out: Path, data: str | None, dataset="tiny"):
    from latent_atlas.models import jobs

    jobs.import_latents(Job(input=Files(**({"data": data} if data else {})), output=Files(latents=str(out)),
                            wildcards=Files(dataset=dataset, model=name)),
                        source={"format": "latents", **table_source}, config_hash="h")


def test_a_latents_table_is_matched_by_sample_id_row_order_or_stands_alone(byom, tmp_path):
    native = byom["dense"]["native"]["latents"]
    zcols = [c for c in native.columns if c.startswith("z")]
    shuffled = native.sample(frac=1.0, random_state=0).rename(columns={c: f"dim_{c}" for c in zcols})
    shuffled[["sample_id", *[f"dim_{c}" for c in zcols]]].to_parquet(tmp_path / "by_id.parquet")
    _import_latents({"table": str(tmp_path / "by_id.parquet")}, "t", tmp_path / "a.parquet", byom["data"])
    pd.testing.assert_frame_equal(read_parquet(tmp_path / "a.parquet"), native)

    np.save(tmp_path / "rows.npy", native[zcols].to_numpy())
    _import_latents({"table": str(tmp_path / "rows.npy"), "match": "row_order"}, "t", tmp_path / "b.parquet",
                    byom["data"])
    pd.testing.assert_frame_equal(read_parquet(tmp_path / "b.parquet"), native)

    np.savez(tmp_path / "alone.npz", latents=native[zcols].to_numpy(),
             species=native["label_name"].to_numpy().astype(str))
    _import_latents({"table": str(tmp_path / "alone.npz"), "match": "standalone", "label_column": "species"},
                    "t", tmp_path / "c.parquet", None, dataset="my_embeddings")
    alone = read_parquet(tmp_path / "c.parquet")
    np.testing.assert_array_equal(alone[zcols].to_numpy(), native[zcols].to_numpy())
    assert list(alone["label_name"]) == list(native["label_name"]) and set(alone["split"]) == {"test"}
    assert list(alone["sample_id"]) == list(range(len(native)))


def test_a_parquet_of_latents_runs_geometry_and_its_projections(byom, tmp_path):
    """geometry_tables and a t-SNE map from an imported table equal those from the native latents."""
    from latent_atlas.geometry import jobs as geometry
    from latent_atlas.schema import with_defaults

    native_path = byom["root"] / "dense" / "native" / "latents.parquet"
    native = read_parquet(native_path)
    native.to_parquet(tmp_path / "mine.parquet")
    _import_latents({"table": str(tmp_path / "mine.parquet")}, "dense", tmp_path / "latents.parquet", byom["data"])
    cfg = yaml.safe_load((ROOT / "config" / "examples" / "latents.yaml").read_text())
    settings = with_defaults(cfg["geometry"], "#/properties/geometry", "geometry")
    results = {}
    for which, latents in (("native", native_path), ("table", tmp_path / "latents.parquet")):
        d = tmp_path / which
        tables = [str(d / f"{t}.parquet") for t in ("axis_density", "axis_summary", "radius_histogram",
                                                     "radius_summary", "pca_variance", "pca_loadings", "pca_scores",
                                                     "planes", "zoom", "neighbours", "intrinsic_dimension", "summary")]
        names = [Path(t).stem for t in tables]
        geometry.geometry_tables(Job(input=Files([str(latents)]), output=Files(tables),
                                     wildcards=Files(dataset="tiny", model="dense")),
                                 seed=0, numeric_threads=1, names=names, **geometry_table_settings(settings))
        tsne = str(d / "tsne_raw_n50.parquet")
        geometry.geometry_tsne(Job(input=Files([str(latents)]), output=Files([tsne]),
                                   wildcards=Files(dataset="tiny", model="dense", space="raw", n="50")),
                               seed=0, numeric_threads=1, settings=projection_settings(settings["projections"]["tsne"]))
        results[which] = [read_parquet(p) for p in (*tables, tsne)]
    for a, b in zip(results["table"], results["native"]):
        pd.testing.assert_frame_equal(a, b)


# --------------------------------------------------------------------------------------------
# Bad inputs: clear errors, nothing written
# --------------------------------------------------------------------------------------------
def _bad_import(byom, tmp_path, spec, match):
    out = tmp_path / "model.pt"
    out.write_bytes(b"earlier result")
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        _import_job(byom["data"], spec, "mine", out)
    assert out.read_bytes() == b"earlier result"


def test_an_input_shape_mismatch_names_both_shapes_and_the_file(byom, tmp_path):
    from latent_atlas.models.networks import build_model

    other = build_model("cnn_classifier", (1, 8, 8), 3, TINY_PARAMS["cnn_classifier"]).eval()
    sources = export_model(other, tmp_path / "small")
    for fmt in ("onnx", "torch_export"):  # the ONNX example has an autoencoder only
        spec = {"dataset": "tiny", "kind": "classifier", "source": sources[fmt]}
        _bad_import(byom, tmp_path, spec, rf"models\.mine\.source\.encoder \(.*encoder\.{'pt2' if fmt == 'torch_export' else 'onnx'}\) "
                                          r"takes inputs of shape \(\?, 1, 8, 8\); the dataset's images are \(batch, 1, 16, 16\)")
    spec = {"dataset": "tiny", "arch": "cnn_classifier", "params": TINY_PARAMS["cnn_classifier"], "source": sources["state_dict"]}
    _bad_import(byom, tmp_path, spec, r"(?s)models\.mine\.source\.weights: .*weights\.pt does not fit arch 'cnn_classifier'.*"
                                      r"size mismatch for fc\.weight")


def test_unreadable_files_several_onnx_inputs_and_nan_outputs_stop_the_import(byom, tmp_path, capfd):
    (tmp_path / "junk.pt2").write_bytes(b"not a program")
    spec = {"dataset": "tiny", "kind": "autoencoder", "source": {"format": "torch_export", "encoder": str(tmp_path / "junk.pt2")}}
    capfd.readouterr()
    _bad_import(byom, tmp_path, spec, r"models\.mine\.source\.encoder \(.*junk\.pt2\): not a torch\.export program "
                                      r".*\(RuntimeError: PytorchStreamReader failed reading zip archive: not a ZIP archive")
    assert "Traceback" not in capfd.readouterr().err  # torch.export logs one before it raises; held back
    spec["source"]["encoder"] = str(tmp_path / "gone.pt2")
    _bad_import(byom, tmp_path, spec, r"models\.mine\.source\.encoder: file not found: .*gone\.pt2")

    class Two(torch.nn.Module):
        def forward(self, x, y):
            return x.flatten(1) + y.flatten(1)

    x = torch.rand(2, 1, 16, 16)
    torch.onnx.export(Two(), (x, x), str(tmp_path / "two.onnx"), dynamo=False, input_names=["a", "b"],
                      dynamic_axes={"a": {0: "n"}, "b": {0: "n"}})
    spec = {"dataset": "tiny", "kind": "autoencoder", "source": {"format": "onnx", "encoder": str(tmp_path / "two.onnx")}}
    _bad_import(byom, tmp_path, spec, r"two\.onnx\): the ONNX graph has 2 inputs \(a, b\); set source\.input_name")

    class Nan(torch.nn.Module):
        def forward(self, x):
            return torch.log(x.flatten(1) - 2.0)

    torch.export.save(torch.export.export(Nan(), (x,), dynamic_shapes=({0: torch.export.Dim("batch")},)), tmp_path / "nan.pt2")
    spec = {"dataset": "tiny", "kind": "autoencoder", "source": {"format": "torch_export", "encoder": str(tmp_path / "nan.pt2")}}
    _bad_import(byom, tmp_path, spec, r"nan\.pt2\): the encoder output 0 of the first batch has \d+ NaN or infinite values")

    torch.save({"weights": [1, 2]}, tmp_path / "list.pt")
    spec = {"dataset": "tiny", "arch": "conv_ae", "source": {"format": "state_dict", "weights": str(tmp_path / "list.pt")}}
    _bad_import(byom, tmp_path, spec, r"list\.pt holds a dict, not a state dict")


def test_a_state_dict_is_never_unpickled(byom, tmp_path):
    """A pickle that would run code is refused by weights_only loading, not executed."""
    pickled_call(tmp_path / "evil.pt", Path.write_text, tmp_path / "pwned", "ran")
    spec = {"dataset": "tiny", "arch": "conv_ae", "source": {"format": "state_dict", "weights": str(tmp_path / "evil.pt")}}
    # protocol 2 pickles the method as getattr(Path, "write_text"): getattr is the first global met
    _bad_import(byom, tmp_path, spec, r"models\.mine\.source\.weights: .*evil\.pt holds a pickled global "
                                      r"builtins\.getattr, which is refused \(only tensors and plain containers")
    assert not (tmp_path / "pwned").exists()


def test_a_latents_table_that_does_not_match_the_dataset_is_refused(byom, tmp_path):
    native = byom["dense"]["native"]["latents"]
    out = tmp_path / "latents.parquet"
    out.write_bytes(b"earlier result")
    native.iloc[:-3].to_parquet(tmp_path / "short.parquet")
    with pytest.raises(ValueError, match=r"short\.parquet has 93 rows; dataset 'tiny' has 96 samples: 3 of its "
                                         r"sample_ids are not in the table \(e\.g\. \[1093, 1094, 1095\]\)"):
        _import_latents({"table": str(tmp_path / "short.parquet")}, "t", out, byom["data"])
    with pytest.raises(ValueError, match=r"has 93 rows; dataset 'tiny' has 96 samples \(source\.match: row_order"):
        _import_latents({"table": str(tmp_path / "short.parquet"), "match": "row_order"}, "t", out, byom["data"])
    bad = native.copy()
    bad.loc[5, "z1"] = np.nan
    bad.to_parquet(tmp_path / "nan.parquet")
    with pytest.raises(ValueError, match=r"nan\.parquet: 1 NaN or infinite latent values in 1 rows \(first rows \[5\]\)"):
        _import_latents({"table": str(tmp_path / "nan.parquet")}, "t", out, byom["data"])
    assert out.read_bytes() == b"earlier result"


def _config(models: dict, **sections) -> dict:
    return {"datasets": {"tiny": {"source": "sklearn_digits"}}, "models": models,
            **{k: {"models": v} for k, v in sections.items()}}


def test_config_checks_name_the_key_before_any_job_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "enc.onnx").write_bytes(b"x")
    (tmp_path / "z.parquet").write_bytes(b"x")
    table = {"dataset": "tiny", "source": {"format": "latents", "table": "z.parquet"}}
    onnx = {"dataset": "tiny", "kind": "classifier", "source": {"format": "onnx", "encoder": "enc.onnx", "logits_output": 1}}
    check_config(_config({"emb": table, "net": onnx}, geometry=["emb"]))
    (tmp_path / "enc.pt2").write_bytes(b"x")  # explain reads a torch.export program's first layer (in its job)
    check_config(_config({"pt2": {**onnx, "source": {"format": "torch_export", "encoder": "enc.pt2", "logits_output": 1}}},
                         explain=["pt2"]))
    cases = [
        (_config({"emb": table}, importance=["emb"]),
         r"importance\.models\[0\]: model 'emb' cannot run importance: importance takes autoencoder and classifier "
         r"models; it is a table of latents"),
        (_config({"emb": table}, featureviz=["emb"]), r"featureviz\.models\[0\]: model 'emb' cannot run featureviz"),
        (_config({"net": onnx}, explain=["net"]),
         r"explain\.models\[0\]: model 'net' cannot run explain: it reads the network's first layer, which built-in "
         r"archs and torch\.export programs expose; onnxruntime runs the graph only as a whole"),
        (_config({"net": onnx}, featureviz=["net"]),
         r"featureviz\.models\[0\]: model 'net' cannot run featureviz: onnxruntime gives no gradients"),
        (_config({"net": onnx}, importance=["net"]), r"latent importance needs the class layer: give the classifier's source\.head"),
        (_config({"net": {**onnx, "source": {**onnx["source"], "encoder": "gone.onnx"}}}),
         r"models\.net\.source\.encoder: file not found: gone\.onnx"),
        (_config({"net": {k: v for k, v in onnx.items() if k != "kind"}}), r"models\.net\.kind: required for source\.format 'onnx'"),
        (_config({"net": {"dataset": "tiny"}}), r"models\.net: needs `arch` \(a model trained here\) or `source`"),
        (_config({"net": {**onnx, "source": {"format": "onnx", "encoder": "enc.onnx"}}}),
         r"models\.net\.source: a classifier needs `head`"),
        (_config({"emb": {**table, "dataset": "elsewhere"}}), r"models\.emb\.dataset: 'elsewhere' is not a defined dataset"),
    ]
    for cfg, match in cases:
        with pytest.raises(ConfigError, match=match):
            check_config(cfg)
    check_config(_config({"emb": {**table, "dataset": "elsewhere", "source": {**table["source"], "match": "standalone"}}}))


# --------------------------------------------------------------------------------------------
# The example configs
# --------------------------------------------------------------------------------------------
EXAMPLES = ("state_dict", "torch_export", "onnx", "latents")


def _example(tmp_path: Path, example: str) -> dict:
    """config/examples/<example>.yaml, with a placeholder at each file it names under tmp_path."""
    cfg = yaml.safe_load((ROOT / "config" / "examples" / f"{example}.yaml").read_text())
    for spec in cfg["models"].values():
        for key in ("weights", "encoder", "decoder", "head", "table"):
            if key in spec["source"]:
                target = tmp_path / spec["source"][key]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"placeholder")  # config checks look for the file, not its content
    return cfg


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_example_configs_pass_validation(tmp_path, monkeypatch, example):
    from latent_atlas.config import schema_errors
    from latent_atlas.schema import SCHEMA_PATH

    cfg = _example(tmp_path, example)
    monkeypatch.chdir(tmp_path)
    assert schema_errors(cfg, SCHEMA_PATH) == []
    check_config(cfg)
    (tmp_path / next(iter(cfg["models"].values()))["source"].get("table", "none")).unlink(missing_ok=True)
    if example == "latents":
        with pytest.raises(ConfigError, match=r"models\.digits_embedding\.source\.table: file not found"):
            check_config(cfg)


# The network behind every example entry of a kind, unless a state_dict entry names its arch.
NATIVE_ARCH = {"autoencoder": "conv_ae", "classifier": "cnn_classifier"}
FEATUREVIZ_RULES = {"featureviz_unregularised", "featureviz_adversarial", "featureviz_tv_sweep", "featureviz_tv_l1_grid",
                    "featureviz_gallery", "featureviz_census", "plot_featureviz"}
# Smaller settings than the examples' (the test's time): one block of pixels, 32 images, t-SNE of the raw
# latents on 50 points, no UMAP.
SHRINK = {
    "importance": {"n_perm": 2, "block_size": 256, "max_samples": 32, "device": "cpu"},
    "geometry": {"neighbours": {"n_samples": 200},
                 "projections": {"pca_components": [], "tsne": {"sample_sizes": [50]}, "umap": {"sample_sizes": []}}},
    "featureviz": {"adversarial": {"per_pair": 1, "steps": 10, "show": 2}},
}


def _section_models(cfg: dict, section: str) -> list[str]:
    """The models an example runs `section` on: its list, else every model that can (as the workflow)."""
    from latent_atlas.config import section_refusal

    names = cfg.get(section, {}).get("models")
    return list(names) if names is not None else [m for m, s in cfg["models"].items() if section_refusal(section, s) is None]


def _merged_examples() -> tuple[dict, dict[str, dict]]:
    """Every config/examples/<format>.yaml's models and datasets in one config, and each example.

    Importance and featureviz run on the models the examples run them on (their lists or the
    defaults), with the examples' settings made smaller (SHRINK). Geometry runs on the latents
    example's tables only: the networks' latents are compared with the native model's instead.
    """
    examples = {e: yaml.safe_load((ROOT / "config" / "examples" / f"{e}.yaml").read_text()) for e in EXAMPLES}
    merged: dict = {"datasets": {}, "models": {}}
    for example, cfg in examples.items():
        for key in ("seed", "numeric_threads", "figures"):
            assert merged.setdefault(key, cfg[key]) == cfg[key], f"{example}.yaml: {key} differs from the other examples'"
        for name, spec in cfg["datasets"].items():
            assert merged["datasets"].setdefault(name, spec) == spec, f"{example}.yaml: datasets.{name} differs"
        assert not merged["models"].keys() & cfg["models"].keys(), f"{example}.yaml: a model name is taken"
        merged["models"].update(cfg["models"])
    for section in ("importance", "featureviz", "geometry"):
        settings = {}
        for cfg in examples.values():
            settings.update({k: v for k, v in cfg.get(section, {}).items() if k != "models"})
        settings.update(SHRINK[section])
        models = [m for e, cfg in examples.items() if section != "geometry" or e == "latents"
                  for m in _section_models(cfg, section)]
        merged[section] = {**settings, "models": models}
    return merged, examples


def _importance_run(merged: dict) -> list[str]:
    """The importance models the run computes: one per format, of different kinds where the
    examples allow (the suite's time; test_a_loaded_model_gives_the_native_tables covers every
    format x kind through the jobs). Not a state dict's: its model.pt is the native record byte
    for byte (the test checks it), so its tables are the native model's."""
    from latent_atlas.models.archs import model_kind

    picked: list[str] = []
    for fmt in ("onnx", "torch_export"):  # the ONNX example has an autoencoder only
        names = [m for m in merged["importance"]["models"] if merged["models"][m]["source"]["format"] == fmt]
        covered = {model_kind(merged["models"][m]) for m in picked}
        fresh = [m for m in names if model_kind(merged["models"][m]) not in covered]
        picked += (fresh or names)[:1]
    return picked


def _targets(merged: dict) -> list[str]:
    """What the run asks for, not `all` (the test's time): every model's latents, the importance
    tables (_importance_run), the geometry tables and a t-SNE map, and featureviz to its figures
    (plot_featureviz needs every featureviz table). Explain, the atlas and the other figures are
    left out."""
    from latent_atlas.models.archs import model_kind

    def base(name):
        return f"results/{merged['models'][name]['dataset']}/{name}"

    out = [f"{base(m)}/latents.parquet" for m in merged["models"]]
    for m in _importance_run(merged):
        logits = ["pixel_importance_logits"] if model_kind(merged["models"][m]) == "classifier" else []
        out += [f"{base(m)}/importance/{t}.parquet" for t in ("pixel_importance", "latent_importance", *logits)]
    sizes = merged["geometry"]["projections"]["tsne"]["sample_sizes"]
    out += [f"{base(m)}/geometry/{t}.parquet" for m in merged["geometry"]["models"]
            for t in ("summary", *(f"tsne_raw_n{n}" for n in sizes))]
    out += [f"results/figures/{merged['models'][m]['dataset']}/{m}/featureviz_unregularised.png"
            for m in merged["featureviz"]["models"]]
    return out


def _jobs_run(snakemake_output: str) -> dict[str, set[str]]:
    """{rule: the models of its jobs} from Snakemake's job log."""
    ran: dict[str, set[str]] = {}
    for rule, body in re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n)*)", snakemake_output, re.M):
        model = re.search(r"wildcards:.*\bmodel=([\w-]+)", body)
        ran.setdefault(rule, set()).add(model.group(1) if model else "")
    return ran


def _native_tables(data: str, model_pt: Path, spec: dict, name: str, folder: Path) -> dict[str, pd.DataFrame]:
    """Latents (and predictions) of model.pt by the extraction job, with the entry's settings."""
    from latent_atlas.models import jobs
    from latent_atlas.models.archs import extract_settings, model_kind

    folder.mkdir(parents=True, exist_ok=True)
    out = Files(latents=str(folder / "latents.parquet"),
                **({"predictions": str(folder / "predictions.parquet")} if model_kind(spec) == "classifier" else {}))
    jobs.extract_model(Job(input=Files(data=data, model=str(model_pt)), output=out, wildcards=Files(model=name)),
                       numeric_threads=1, settings=extract_settings(spec), config_hash="h")
    return {key: read_parquet(path) for key, path in out.items()}


def _native_importance(data: str, model_pt: Path, classifier: bool, section: dict, folder: Path) -> dict[str, pd.DataFrame]:
    """pixel_importance (and _logits) and latent_importance tables of model.pt by the stage's jobs."""
    from latent_atlas.importance import jobs as importance
    from latent_atlas.io import read_json
    from latent_atlas.schema import with_defaults

    folder.mkdir(parents=True, exist_ok=True)
    settings = with_defaults({k: v for k, v in section.items() if k != "models"}, "#/properties/importance",
                             "importance")

    def rule_settings(job_function):
        return importance_settings(job_function, settings, kind="classifier" if classifier else "autoencoder", seed=0)

    plan = str(folder / "plan.json")
    importance.importance_plan(Job(input=Files([data]), output=Files([plan])),
                               **rule_settings(importance.importance_plan))
    blocks = [str(folder / f"block_{b:04d}.parquet") for b in range(read_json(plan)["n_blocks"])]
    for block in blocks:
        importance.importance_block(Job(input=Files(data=data, model=str(model_pt), plan=plan), output=Files([block]),
                                        wildcards=Files(dataset="digits", model="native", block=block[-12:-8])),
                                    **rule_settings(importance.importance_block))
    outputs = ["primary"] + (["logits"] if classifier and settings["classifier_logits"] else [])
    tables = {}
    for output in outputs:
        suffix = "" if output == "primary" else "_logits"
        path = folder / f"pixel_importance{suffix}.parquet"
        importance.importance_gather(Job(input=Files(shards=blocks, plan=plan),
                                         output=Files(pixel=str(path), group=str(folder / f"group_importance{suffix}.parquet")),
                                         wildcards=Files(dataset="digits", model="native", analysis="importance")),
                                     output_name=output, min_effect=settings["min_effect"], fdr=settings["fdr"],
                                     permutation=settings["permutation"])
        tables[path.stem] = read_parquet(path)
    path = folder / "latent_importance.parquet"
    importance.latent_importance(Job(input=Files(data=data, model=str(model_pt)), output=Files([str(path)]),
                                     wildcards=Files(dataset="digits", model="native")),
                                 **rule_settings(importance.latent_importance))
    tables[path.stem] = read_parquet(path)
    return tables


def _write_table(path: Path, latents: pd.DataFrame, source: dict) -> None:
    """A latents table as a user brings it: latent columns renamed, rows shuffled (unless matched
    by row order), with sample_id or its own labels as `source.match` needs."""
    zcols = [c for c in latents.columns if re.fullmatch(r"z\d+", c)]
    match = source.get("match", "sample_id")
    rows = latents if match == "row_order" else latents.sample(frac=1.0, random_state=0)
    arrays = {"latents": rows[zcols].to_numpy()}
    if match == "sample_id":
        arrays["sample_id"] = rows["sample_id"].to_numpy()
    if match == "standalone":
        arrays[source.get("label_column", "label")] = rows["label_name"].to_numpy().astype(str)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        z = arrays.pop("latents")
        pd.DataFrame({**{f"dim_{c}": z[:, i] for i, c in enumerate(zcols)}, **arrays}).to_parquet(path)
    elif path.suffix == ".npz":
        np.savez(path, **arrays)
    else:
        np.save(path, arrays["latents"])


@pytest.mark.slow
def test_the_example_configs_run_in_the_workflow(tmp_path):
    """The four config/examples files run merged into one config by one Snakemake run that asks
    for the files the test reads (_targets; settings made smaller, see _merged_examples): their byom/ files are exports of a conv
    autoencoder and a CNN classifier trained by the train job on the examples' dataset (the
    ONNX example's with its input_range), and tables of the autoencoder's latents.

    Imports run instead of training; every exported network's latents equal the native model's
    (bit for bit for state_dict and torch_export, 1e-5 relative for ONNX), and so do the importance
    tables of the torch_export and ONNX models (ONNX: to 2e-4 of the table's largest value, see
    _assert_tables_close; the state dict's model.pt is the native one byte for byte); the tables of
    latents give geometry tables and t-SNE maps; featureviz runs to its figures on the
    torch_export classifier. Explain, the atlas and the model figures are not asked for.
    """
    from conftest import run_snakemake

    from latent_atlas.data.build import build_dataset
    from latent_atlas.data.store import save_dataset
    from latent_atlas.models.archs import model_kind
    from latent_atlas.models.networks import load_model

    merged, examples = _merged_examples()
    for example, cfg in examples.items():  # nothing of an example escapes the run
        assert all(merged["models"][m] == spec for m, spec in cfg["models"].items()), example
    (dataset,) = merged["datasets"]
    models = merged["models"]
    networks = [m for m, spec in models.items() if spec["source"]["format"] != "latents"]
    tables = [m for m in models if m not in networks]
    work, native_dir = tmp_path / "run", tmp_path / "native"
    data = str(native_dir / dataset)  # the dataset store folder
    native_dir.mkdir()
    save_dataset(build_dataset(dataset, merged["datasets"][dataset], seed=merged["seed"]), data)

    threads = torch.get_num_threads()
    torch.set_num_threads(merged["numeric_threads"])  # the run's jobs' threads: float sums depend on them
    try:
        natives = {}  # kind -> model.pt of the train job
        for kind in sorted({model_kind(models[m]) for m in networks}):
            given = [(m, s["arch"], s["params"]) for m, s in models.items()
                     if s["source"]["format"] == "state_dict" and model_kind(s) == kind]
            # a state dict's model.pt is the train job's record, which holds the model's name
            name, arch, params = given[0] if given else (kind, NATIVE_ARCH[kind], None)
            natives[kind] = _train_job(data, native_dir / kind, name, arch, params, dataset,
                                       {"epochs": 2, "batch_size": 32, "max_train_samples": 1024, "lr": 0.01})
        expected, importance = {}, {}
        for name in networks:
            spec, kind = models[name], model_kind(models[name])
            source = spec["source"]
            normalised = {k: source[k] for k in ("input_range", "mean", "std") if source.get(k) is not None}
            files = export_model(load_model(natives[kind]), tmp_path / "exports" / name, formats=(source["format"],),
                                 normalised=normalised or None)[source["format"]]
            for key in ("weights", "encoder", "decoder", "head"):
                if key in source:
                    (work / source[key]).parent.mkdir(parents=True, exist_ok=True)
                    (work / source[key]).write_bytes(Path(files[key]).read_bytes())
            expected[name] = _native_tables(data, natives[kind], spec, name, native_dir / name)
            if name in _importance_run(merged) and kind not in importance:
                importance[kind] = _native_importance(data, natives[kind], kind == "classifier", merged["importance"],
                                                      native_dir / f"{kind}_importance")
    finally:
        torch.set_num_threads(threads)
    native_latents = expected[next(m for m in networks if model_kind(models[m]) == "autoencoder")]["latents"]
    for name in tables:
        _write_table(work / models[name]["source"]["table"], native_latents, models[name]["source"])
    config = tmp_path / "examples.yaml"
    config.write_text(yaml.safe_dump(merged, sort_keys=False))

    proc = run_snakemake(work, "--cores", "2", *_targets(merged), configfile=config, timeout=600)
    ran = _jobs_run(proc.stdout + proc.stderr)
    assert "train" not in ran and ran["import_model"] == set(networks) and ran["import_latents"] == set(tables), ran

    results = {m: work / "results" / spec["dataset"] / m for m, spec in models.items()}
    for name in networks:
        fmt = models[name]["source"]["format"]
        if fmt == "state_dict":  # the record training writes, byte for byte
            assert (results[name] / "model.pt").read_bytes() == natives[model_kind(models[name])].read_bytes()
        got = {key: read_parquet(results[name] / f"{key}.parquet") for key in expected[name]}
        _assert_tables_close(got, expected[name], exact=fmt != "onnx")

    for name in _importance_run(merged):
        kind = model_kind(models[name])
        got = {t: read_parquet(results[name] / "importance" / f"{t}.parquet") for t in importance[kind]}
        _assert_tables_close(got, importance[kind], exact=models[name]["source"]["format"] != "onnx")

    zcols = [c for c in native_latents.columns if re.fullmatch(r"z\d+", c)]
    for name in tables:
        latents, source = read_parquet(results[name] / "latents.parquet"), models[name]["source"]
        if source.get("match", "sample_id") != "standalone":  # matched back to the dataset's rows
            pd.testing.assert_frame_equal(latents, native_latents)
        else:  # its own rows, in the table's order, with its own labels
            rows = native_latents.sample(frac=1.0, random_state=0)
            np.testing.assert_array_equal(latents[zcols].to_numpy(), rows[zcols].to_numpy())
            assert list(latents["label_name"]) == list(rows["label_name"])
    geometry = set(merged["geometry"]["models"])
    assert geometry == set(tables) and ran["geometry_tables"] == geometry and ran["geometry_tsne"] == geometry, ran
    for name in geometry:
        for table in ("summary", "pca_variance", "neighbours", "tsne_raw_n50"):
            frame = read_parquet(results[name] / "geometry" / f"{table}.parquet")
            assert len(frame) > 0, (name, table)
        assert np.isfinite(frame.select_dtypes("number").to_numpy()).all()

    assert merged["featureviz"]["models"], "no example runs featureviz"
    for name in merged["featureviz"]["models"]:
        assert all(name in ran.get(rule, ()) for rule in FEATUREVIZ_RULES), ran
        files = sorted((results[name] / "featureviz").iterdir())
        for path in files:  # tables may be empty (no co-active clusters); the optimised images are not
            # optimised_activation is NaN for the units the census did not optimise
            values = (read_parquet(path).drop(columns="optimised_activation", errors="ignore")
                      .select_dtypes("number").to_numpy() if path.suffix == ".parquet"
                      else np.concatenate([a.ravel() for a in read_npz(path).values() if a.dtype.kind == "f"]))
            assert np.isfinite(values).all() and (values.size or path.suffix == ".parquet"), path
        assert sum(p.suffix == ".npz" for p in files) >= 5, files
        figures = sorted((work / "results" / "figures" / models[name]["dataset"] / name).glob("featureviz_*.png"))
        assert len(figures) >= 8 and all(f.stat().st_size > 1000 for f in figures), figures
