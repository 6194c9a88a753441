"""Out-of-core datasets: a CelebA-layout folder through the data, train and extract jobs, and the
peak memory of the jobs that read the store (it must not grow with the dataset)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from latent_atlas.data.store import load_dataset, write_dataset
from latent_atlas.data.synthetic import CELEBA_ATTRIBUTES, write_celeba_folder
from latent_atlas.io import read_parquet

from conftest import ROOT, run_snakemake

torch = pytest.importorskip("torch")
# Whole jobs on hundreds to thousands of images (Snakemake, subprocesses): not in `make test-fast`.
pytestmark = pytest.mark.slow


def test_a_celeba_folder_goes_through_the_workflow(tmp_path):
    """200 synthetic faces in CelebA's own layout through Snakemake: prepare_data (2 decoding
    processes), train, extract_autoencoder, geometry_tables. The streamed training gives the weights
    that training on the same images held as one array gives."""
    import yaml

    from latent_atlas.models.training import train_model
    from latent_atlas.models.networks import build_model, load_model

    folder = write_celeba_folder(tmp_path / "celeba", 200, seed=2)
    model_spec = {"dataset": "faces", "arch": "conv_ae", "params": {"channels": [4, 4, 8, 8], "latent_dim": 4},
                  "train": {"epochs": 1, "batch_size": 32}}
    cfg = {"seed": 0, "numeric_threads": 2,  # prepare_data: 2 decoding processes under Snakemake
           "datasets": {"faces": {"source": "celeba", "path": str(folder), "attribute": "Male", "size": 24}},
           "models": {"ae": model_spec}, "geometry": {"models": ["ae"]},
           # the attributes stage on CelebA's 40 attributes (few samples: every split, 2 folds)
           "attributes": {"models": ["ae"], "split": "all", "max_samples": 200, "cv_folds": 2,
                          "dci": {"n_estimators": 2, "max_depth": 3},
                          "traversal": {"samples": 1, "steps": [-1, 0, 1], "attributes": 2, "axes": 2,
                                        "components": 2, "arithmetic": "Smiling"}}}
    work = tmp_path / "run"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    run_snakemake(work, "--cores", "2", "results/faces/ae/latents.parquet", "results/faces/ae/geometry/summary.parquet",
                  "results/figures/faces/ae/attributes_arithmetic.png", "results/figures/faces/attributes_scores.png",
                  configfile=work / "config.yaml", timeout=600)
    store = work / "results" / "data" / "faces"
    ds = load_dataset(store)
    assert len(ds) == 200 and ds.input_shape == (3, 24, 24) and (ds.split == "test").sum() == 22

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # numeric_threads, as the train job ran
    try:
        torch.manual_seed(0)
        in_memory = train_model(build_model("conv_ae", (3, 24, 24), 2, model_spec["params"]), np.asarray(ds.images),
                                ds.labels, ds.split, model_spec["train"], seed=0, progress=False).model
    finally:
        torch.set_num_threads(threads)
    streamed = load_model(work / "results" / "faces" / "ae" / "model.pt").state_dict()
    for name, value in in_memory.state_dict().items():
        assert torch.equal(value, streamed[name]), name
    table = read_parquet(work / "results" / "faces" / "ae" / "latents.parquet")
    np.testing.assert_array_equal(table["sample_id"], ds.sample_id)
    assert table.shape == (200, 4 + 4) and np.isfinite(table.filter(like="z").to_numpy()).all()
    assert len(read_parquet(work / "results" / "faces" / "ae" / "geometry" / "summary.parquet"))
    # the attributes: CelebA's 40 read through to the store's table, probed, scored and walked
    attributes = read_parquet(store / "attributes.parquet")
    assert list(attributes.columns) == ["sample_id", "class", *CELEBA_ATTRIBUTES]
    np.testing.assert_array_equal(attributes["sample_id"], ds.sample_id)
    np.testing.assert_array_equal(attributes["class"], attributes["Male"])
    probes = read_parquet(work / "results" / "faces" / "ae" / "attributes" / "probes.parquet")
    assert probes["attribute"].tolist() == ["class", *CELEBA_ATTRIBUTES]
    scores = read_parquet(work / "results" / "faces" / "attribute_scores.parquet")
    assert scores["factors"].iat[0] == ", ".join(CELEBA_ATTRIBUTES) and np.isfinite(scores["value"]).all()
    traversals = read_parquet(work / "results" / "faces" / "ae" / "attributes" / "traversals.parquet")
    assert {"attribute", "axis", "component", "arithmetic_with", "arithmetic_without"} <= set(traversals["panel"])
    assert set(traversals.loc[traversals["panel"].str.startswith("arithmetic"), "name"]) == {"Smiling"}


# The child measures the peak RSS that a job adds once torch is imported and the model exists
# (resource.getrusage, kilobytes on Linux): the old store read every image as float32 first.
_PEAK_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import torch
    from latent_atlas.models import extract
    from latent_atlas.models.networks import build_model, load_model
    from latent_atlas.models.training import train_model
    from latent_atlas.data.store import load_dataset

    torch.manual_seed(0)
    model = build_model("dense_ae", (3, 96, 96), 2, {"hidden": [16], "latent_dim": 4})
    x = torch.zeros(64, 3, 96, 96)
    model(x).sum().backward()  # torch's own first-use allocations, before the baseline
    del x
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base = peak()
    ds = load_dataset(sys.argv[1])
    train_model(model, ds.images, ds.labels, ds.split, {"epochs": 1, "batch_size": 64, "eval_batch_size": 64}, seed=0,
                progress=False, device="cpu")
    after_train = peak()
    extract.compute_latents(model, ds.images, 64)
    print(json.dumps({"train": after_train - base, "extract": peak() - base}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in kilobytes (Linux)")
def test_train_and_extract_peak_memory_is_flat_in_the_number_of_images(tmp_path):
    """Stores of 1,000 and 3,000 RGB 96x96 images: 221 MB more as float32, which the whole-array
    path held (and 55 MB more as uint8). Training one epoch and extracting latents from the
    store add the same peak RSS for both, within 40 MB: memory does not grow with N."""
    shape = (3, 96, 96)
    added = {}
    for n in (1000, 3000):
        rng = np.random.default_rng(0)
        chunks = (rng.integers(0, 256, size=(500, *shape), dtype=np.uint8) for _ in range(n // 500))
        split = np.where(np.arange(n) < n - 500, "train", "test")
        write_dataset(tmp_path / f"n{n}", np.arange(n), split, np.arange(n) % 2, ["a", "b"], "big", chunks)
        result = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(tmp_path / f"n{n}")], capture_output=True,
                                text=True, check=True, env={"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "2",
                                                            "PATH": "/usr/bin:/bin"})
        added[n] = json.loads(result.stdout.strip().splitlines()[-1])
    float_mb = 2000 * int(np.prod(shape)) * 4 / 2**20
    assert float_mb > 200
    for job in ("train", "extract"):
        assert added[3000][job] - added[1000][job] < 40, (job, added, float_mb)
