"""Feature visualisation: regulariser gradients, the optimisation engine, the clip switch,
the dead-neuron census, adversarial examples, layer references, and the workflow's outputs."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from conftest import ROOT
from latent_atlas.featureviz.adversarial import adversarial_examples, adversarial_success
from latent_atlas.featureviz.census import activation_census, census_summary, coactivation_clusters, revive_dead
from latent_atlas.featureviz.describe import describe_images, layer_activations
from latent_atlas.featureviz.gallery import auto_starts, gallery
from latent_atlas.featureviz.layers import Layer, check_units, first_units, hidden_layer_sizes, resolve_layer
from latent_atlas.featureviz.optimise import (Optimiser, _jitter, l1_grad, l1_norm, prepare_model, start_images,
                                              total_variation, total_variation_grad, total_variation_prox)
from latent_atlas.featureviz.sweeps import confident_class_means


class TinyMLP(nn.Module):
    """A small classifier with the models' interface: forward, hidden, hidden_layer_names."""

    def __init__(self, hidden=(32, 24, 16), n_classes=4, shape=(1, 8, 8), seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.input_shape = tuple(shape)
        self.n_classes = n_classes
        dims = [int(np.prod(shape)), *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], n_classes)

    def hidden_layer_names(self):
        return [f"fc{i + 1}" for i in range(len(self.layers))]

    def hidden(self, x):
        h, acts = x.flatten(1), OrderedDict()
        for name, layer in zip(self.hidden_layer_names(), self.layers):
            h = torch.relu(layer(h))
            acts[name] = h
        return acts

    def forward(self, x):
        return self.out(self.hidden(x)[self.hidden_layer_names()[-1]])


def _frozen(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture(scope="module")
def blobs():
    """Four classes of 8x8 images: a bright quadrant each, plus noise."""
    rng = np.random.default_rng(0)
    n = 400
    labels = np.arange(n) % 4
    x = rng.uniform(0, 0.3, size=(n, 1, 8, 8)).astype(np.float32)
    for i, c in enumerate(labels):
        r, q = divmod(int(c), 2)
        x[i, 0, 4 * r:4 * r + 4, 4 * q:4 * q + 4] += 0.6
    return np.clip(x, 0, 1), labels


@pytest.fixture(scope="module")
def trained(blobs):
    x, y = blobs
    model = TinyMLP()
    optim = torch.optim.Adam(model.parameters(), lr=0.01)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(150):
        optim.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        optim.step()
    model = _frozen(model)
    acc = (model(xt).argmax(1) == yt).float().mean().item()
    assert acc > 0.95
    return model


OPT = Optimiser.from_config({}, seed=0, progress=False)  # the schema defaults


# --- regularisers ------------------------------------------------------------------------------

def test_tv_and_l1_gradients_match_autograd_and_finite_differences():
    x = torch.rand(3, 2, 5, 6, dtype=torch.float64) - 0.3  # no ties: gradients are unique
    xa = x.clone().requires_grad_(True)
    (g_tv,) = torch.autograd.grad(total_variation(xa).sum(), xa)
    (g_l1,) = torch.autograd.grad(l1_norm(xa).sum(), xa)
    assert torch.allclose(total_variation_grad(x), g_tv)
    assert torch.allclose(l1_grad(x), g_l1)
    # finite differences at a few pixels, against the closed forms
    eps = 1e-6
    for idx in [(0, 0, 0, 0), (1, 1, 2, 3), (2, 0, 4, 5), (0, 1, 4, 0)]:
        e = torch.zeros_like(x)
        e[idx] = eps
        fd_tv = (total_variation(x + e) - total_variation(x - e))[idx[0]] / (2 * eps)
        fd_l1 = (l1_norm(x + e) - l1_norm(x - e))[idx[0]] / (2 * eps)
        assert fd_tv.item() == pytest.approx(total_variation_grad(x)[idx].item(), abs=1e-6)
        assert fd_l1.item() == pytest.approx(l1_grad(x)[idx].item(), abs=1e-6)


def test_total_variation_counts_neighbour_differences():
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 1.0  # one bright pixel: 4 differences of 1
    assert total_variation(x).item() == 4.0
    assert l1_norm(x).item() == 1.0


def test_tv_prox_solves_the_denoising_problem():
    """prox(v) = argmin 1/2 |z - v|^2 + lam TV(z): two pixels move towards each other by lam
    until they meet; on random images no perturbation does better; lam 0 returns v exactly."""
    v = torch.tensor([0.9, 0.1, 0.5, 0.45]).reshape(2, 1, 2, 1)  # two 2x1 images
    z, _ = total_variation_prox(v, torch.full((2, 1, 1, 1), 0.1), 200)
    assert torch.allclose(z.flatten(), torch.tensor([0.8, 0.2, 0.475, 0.475]), atol=1e-5)

    gen = torch.Generator().manual_seed(0)
    v = torch.rand(3, 1, 9, 7, generator=gen, dtype=torch.float64)
    lam = torch.tensor([0.0, 0.02, 0.1], dtype=torch.float64).reshape(3, 1, 1, 1)
    z, _ = total_variation_prox(v, lam, 500)
    assert torch.equal(z[0], v[0])

    def objective(x):
        return 0.5 * ((x - v) ** 2).sum(dim=(1, 2, 3)) + lam.flatten() * total_variation(x)

    best = objective(z)
    for _ in range(20):
        step = 1e-3 * torch.randn(v.shape, generator=gen, dtype=torch.float64)
        assert (objective(z + step) >= best - 1e-9).all()
    assert (total_variation(z)[1:] < total_variation(v)[1:]).all()


def test_high_tv_weight_smooths_instead_of_leaving_a_checkerboard(trained):
    """The study's literal TV update (a fixed-size step along the sign of the neighbour
    differences) ends in a 2-cycle: at TV 0.256 (lr 0.1) a checkerboard covers the images and
    their TV is higher than at TV 0.016. The proximal step (default) smooths them instead.
    Checkerboard measure: energy of the 2x2 diagonal detail (x00 - x01 - x10 + x11) / 4 over the
    image's variance (1 for a pure checkerboard, 0.25 for white noise, ~0 when smooth)."""
    def checkerboard(img):
        img = img[:, 0].astype(np.float64)
        d = (img[:, :-1, :-1] - img[:, 1:, :-1] - img[:, :-1, 1:] + img[:, 1:, 1:]) / 4
        return (d ** 2).mean(axis=(1, 2)) / img.var(axis=(1, 2))

    lay = resolve_layer("output", trained)
    units, weights = np.repeat([0, 1, 2, 3], 2), np.tile([0.016, 0.256], 4)
    x0 = start_images("zero", len(units), trained.input_shape)
    assert OPT.tv_step == "subgradient"  # featureviz.tv_step absent: the study's update
    results = {step: OPT.run(trained, lay, units, x0, steps=60, tv=weights, tv_step=step)
               for step in ("subgradient", "proximal")}
    high = weights == 0.256
    tv = {step: total_variation(torch.as_tensor(img)).numpy() for step, img in results.items()}
    assert checkerboard(results["subgradient"][high]).min() > 0.1  # the artefact, every class
    assert (tv["subgradient"][high] > tv["subgradient"][~high]).all()
    assert checkerboard(results["proximal"][high]).max() < 0.05
    assert (tv["proximal"][high] < tv["proximal"][~high]).all()
    with pytest.raises(ValueError, match="tv_step must be one of"):
        OPT.run(trained, lay, [0], x0[:1], steps=1, tv=0.1, tv_step="adam")


def test_jitter_rolls_each_image_by_its_own_shift():
    x = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 1, 4, 4)
    shifts = torch.tensor([[1, 0], [-1, 1]])
    out = _jitter(x, shifts)
    assert torch.equal(out[0], torch.roll(x[0], (1, 0), dims=(1, 2)))
    assert torch.equal(out[1], torch.roll(x[1], (-1, 1), dims=(1, 2)))


# --- the engine --------------------------------------------------------------------------------

@pytest.mark.parametrize("layer", [1, 2, 3, "output"])
def test_optimisation_raises_the_target_activation(trained, layer):
    lay = resolve_layer(layer, trained)
    units = list(range(min(4, lay.units)))
    # near-zero start (the study's): from a confident random start a softmax probability of
    # 1e-8 has a gradient too small to move it in float32
    x0 = start_images("zero", len(units), trained.input_shape)
    before = describe_images(trained, x0, lay, units, list("abcd"))["activation"].to_numpy()
    img = OPT.run(trained, lay, units, x0, steps=40)
    after = describe_images(trained, img, lay, units, list("abcd"))
    alive = before > 0  # a unit at 0 from this start has no gradient (the study's dead test)
    assert alive.sum() >= 2
    assert (after["activation"].to_numpy()[alive] > before[alive]).all()
    assert img.min() >= 0 and img.max() <= 1
    if layer == "output":
        assert (after["pred"].to_numpy() == units).all()
        assert (after["top1_prob"] >= after["top2_prob"]).all()
        assert (after["ratio"] > 1).all()


def test_engine_is_deterministic_with_a_seed(trained):
    lay = resolve_layer(2, trained)
    x0 = start_images("random", 5, trained.input_shape, random_state=3)
    a = OPT.run(trained, lay, range(5), x0, steps=10, tv=0.01, jitter=True)
    b = OPT.run(trained, lay, range(5), x0, steps=10, tv=0.01, jitter=True)
    assert np.array_equal(a, b)


def test_pinned_pixels_move_again_only_without_clipping_the_regulariser_gradients(trained):
    """The study's switch: with clip's derivative applied only to the activation gradient
    (default), TV/L1 pull pixels that were pushed past a bound back inside; with the derivative
    applied to the regulariser gradients too, those pixels stay pinned at the bound."""
    lay = resolve_layer("output", trained)
    x0 = np.full((2, 1, 8, 8), 0.3, dtype=np.float32)
    x0[:, :, 2:6, 2:6] = 1.05  # raw values past the upper bound: the network sees 1.0 there
    pinned = x0 > 1
    kwargs = dict(steps=5, tv=0.05, l1=0.5, clip=True)
    free = OPT.run(trained, lay, [0, 1], x0, **kwargs)
    stuck = OPT.run(trained, lay, [0, 1], x0, clip_regulariser_gradients=True, **kwargs)
    assert (stuck[pinned] == 1.0).all()  # pinned for good: no gradient reaches them
    assert (free[pinned] < 1.0).mean() > 0.5  # the regularisers moved them back inside
    assert OPT.clip_regulariser_gradients is False  # the study's choice is the schema default


def test_without_clipping_pixels_leave_the_unit_range(trained):
    lay = resolve_layer("output", trained)
    x0 = start_images("zero", 4, trained.input_shape)
    img = OPT.run(trained, lay, range(4), x0, steps=50, lr=1.0, clip=False)
    assert img.min() < 0 or img.max() > 1


def test_per_image_weights_run_a_sweep_in_one_batch(trained):
    """A batch with one TV/L1 weight per image gives each image what a run on its own gives."""
    lay = resolve_layer(2, trained)
    x0 = start_images("random", 3, trained.input_shape, random_state=2)
    tv, l1 = [0.0, 0.02, 0.2], [0.01, 0.0, 0.05]
    batch = OPT.run(trained, lay, [0, 1, 2], x0, steps=20, tv=tv, l1=l1)
    for i in range(3):
        alone = OPT.run(trained, lay, [i], x0[i:i + 1], steps=20, tv=tv[i], l1=l1[i])
        assert np.allclose(batch[i], alone[0], atol=1e-5)
    assert not np.allclose(batch[1], batch[2])
    with pytest.raises(ValueError, match="tv: expected a scalar or one value per image"):
        OPT.run(trained, lay, [0, 0, 0], x0, steps=1, tv=[0.1, 0.2])


# --- layer references --------------------------------------------------------------------------

def test_layer_references_are_one_based_and_validated(trained):
    assert resolve_layer(1, trained) == Layer(1, "fc1", 32)
    assert resolve_layer(3, trained) == Layer(3, "fc3", 16)
    assert resolve_layer(4, trained) == resolve_layer("output", trained) == Layer(4, "output", 4)
    for bad in (0, 5, -1, "fc1"):
        with pytest.raises(ValueError, match=r"featureviz.gallery.layers: layer .* does not exist; "
                                             r"the model has hidden layers 1..3"):
            resolve_layer(bad, trained, "featureviz.gallery.layers")
    with pytest.raises(ValueError, match=r"units \[16\] do not exist in layer 3"):
        check_units([0, 16], resolve_layer(3, trained))


# --- dead neurons ------------------------------------------------------------------------------

def test_census_finds_a_neuron_killed_on_purpose(trained, blobs):
    model = TinyMLP()
    model.load_state_dict(trained.state_dict())
    model = _frozen(model)
    with torch.no_grad():  # layer 2 unit 5: weights <= 0 on non-negative inputs, bias < 0
        model.layers[1].weight[5] = -model.layers[1].weight[5].abs()
        model.layers[1].bias[5] = -1.0
    census, samples = activation_census(model, blobs[0], batch_size=64, keep=100)
    row = census[(census["layer"] == 2) & (census["unit"] == 5)].iloc[0]
    assert row["dead"] and row["max_activation"] == 0 and row["active_fraction"] == 0
    assert samples["fc2"].shape == (100, 24)
    revived = revive_dead(model, census, OPT, steps=20, random_starts=2)
    row = revived[(revived["layer"] == 2) & (revived["unit"] == 5)].iloc[0]
    assert not row["revivable"] and row["optimised_activation"] == 0
    summary = census_summary(revived)
    assert summary.loc[summary["layer"] == 2, "dead"].item() >= 1
    assert (summary["tried"] == summary["dead"]).all()


def test_coactivation_finds_units_that_fire_together():
    rng = np.random.default_rng(0)
    base = np.maximum(rng.normal(size=(500, 1)), 0)
    acts = np.maximum(rng.normal(size=(500, 6)), 0)
    acts[:, [1, 4]] = base * [1.0, 2.0] + 0.01 * rng.random((500, 2))  # 1 and 4 fire together
    import pandas as pd

    census = pd.DataFrame({"layer": 1, "layer_name": "fc1", "unit": np.arange(6),
                           "active_fraction": (acts > 0).mean(0)})
    clusters = coactivation_clusters({"fc1": acts.astype(np.float32)}, census, threshold=0.9)
    assert sorted(clusters["unit"]) == [1, 4]
    assert clusters["mean_correlation"].iloc[0] > 0.99


# --- adversarial examples ----------------------------------------------------------------------

def test_adversarial_example_flips_the_prediction_within_a_small_linf(trained, blobs):
    x, y = blobs
    table, images = adversarial_examples(
        trained, x[:40], y[:40], np.arange(40), list("abcd"), OPT, per_pair=1, steps=60,
        lr=0.05, objective="log_probability", max_linf=0.3, success_threshold=0.5)
    assert len(table) == 4 * 3 and images.shape == (12, 2, 1, 8, 8)
    assert (table["pred_before"] == table["source_class"]).all()
    assert table["success"].mean() > 0.5
    ok = table[table["success"]]
    assert (ok["pred"] == ok["target_class"]).all()
    assert (table["linf"] <= 0.3 + 1e-6).all()
    diff = np.abs(images[:, 1] - images[:, 0]).reshape(len(table), -1).max(1)
    assert np.allclose(diff, table["linf"], atol=1e-6)
    rates = adversarial_success(table, list("abcd"))
    assert len(rates) == 12 and rates["success_rate"].between(0, 1).all()


def test_confident_class_means():
    probs = np.array([[0.95, 0.05], [0.5, 0.5], [0.99, 0.01], [0.0, 1.0]])
    images = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1)
    means, counts = confident_class_means(probs, images, threshold=0.9)
    assert counts.tolist() == [2, 1]
    assert means[:, 0, 0, 0].tolist() == [1.0, 3.0]


def test_confident_class_means_read_in_chunks_equal_the_whole_class_mean(tmp_path, monkeypatch):
    """Chunked reads from the store give the bits of one float64 mean over the class's images."""
    from latent_atlas.data.store import load_dataset, write_dataset
    from latent_atlas.featureviz import sweeps

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(300, 2, 5, 7), dtype=np.uint8)
    write_dataset(tmp_path / "d", np.arange(300), ["test"] * 300, np.zeros(300), ["a"], "d", [images])
    stored = load_dataset(tmp_path / "d").images
    probs = rng.dirichlet([0.3] * 4, size=300)
    monkeypatch.setattr(sweeps, "CHUNK_BYTES", 7 * 2 * 5 * 7 * 4)  # 7 images a chunk
    means, counts = confident_class_means(probs, stored, threshold=0.5)
    whole = np.asarray(stored)
    for c in range(4):
        m = probs[:, c] > 0.5
        assert counts[c] == m.sum() > 7
        assert np.array_equal(means[c], whole[m].mean(axis=0, dtype=np.float64).astype(np.float32))


# --- the models' classifiers -------------------------------------------------------------------

@pytest.mark.parametrize("arch, params", [("mlp_classifier", {"hidden": [16, 12]}),
                                          ("cnn_classifier", {"channels": [4], "feature_dim": 8})])
def test_engine_runs_on_the_pipelines_classifiers(arch, params):
    from latent_atlas.models.networks import build_model

    torch.manual_seed(0)
    model = prepare_model(build_model(arch, (1, 8, 8), 3, params), "cpu")
    sizes = hidden_layer_sizes(model)
    assert [name for name, _ in sizes] == model.hidden_layer_names()
    for ref in (1, len(sizes), "output"):
        lay = resolve_layer(ref, model)
        units = first_units(3, lay)
        x0 = start_images("random", len(units), model.input_shape, random_state=0)
        img = OPT.run(model, lay, units, x0, steps=3, tv=0.01, l1=0.001, jitter=True)
        df = describe_images(model, img, lay, units, ["a", "b", "c"])
        assert len(df) == len(units) and df["layer"].eq(lay.number).all()


# --- the jobs (without Snakemake) --------------------------------------------------------------

def test_tv_l1_grid_job_writes_the_table_its_images_and_metadata(tmp_path):
    from latent_atlas.schema import defaults
    from latent_atlas.featureviz.jobs import featureviz_tv_l1_grid
    from latent_atlas.io import read_npz, read_parquet, read_parquet_metadata
    from latent_atlas.models.networks import build_model, load_model, save_model
    from latent_atlas.runtime import Files, Job

    torch.manual_seed(0)
    save_model(build_model("mlp_classifier", (1, 8, 8), 3, {"hidden": [16, 12]}), tmp_path / "model.pt",
               class_names=["a", "b", "c"])
    section = defaults("#/properties/featureviz")
    optimiser = {k: section[k] for k in ("lr", "output_objective", "clip_regulariser_gradients")}
    settings = {**section["tv_l1_grid"], "hidden_layer": 2, "tv": [0.0, 0.1], "l1_fractions": [0.0, 1.0],
                "steps_output": 3, "steps_hidden": 3}
    job = Job(input=Files(model=str(tmp_path / "model.pt")),
              output=Files(table=str(tmp_path / "grid.parquet"), images=str(tmp_path / "grid.npz")),
              wildcards=Files(dataset="toy", model="m"))
    featureviz_tv_l1_grid(job, seed=0, numeric_threads=1, optimiser=optimiser, settings=settings)

    table, images = read_parquet(job.output.table), read_npz(job.output.images)["images"]
    assert table["panel"].tolist() == ["output"] * 4 + ["hidden"] * 4
    assert table["index"].tolist() == list(range(8)) and images.shape == (8, 1, 8, 8)
    assert table.loc[table["panel"] == "hidden", "layer"].eq(2).all()
    assert table["tv_weight"].tolist() == [0.0, 0.0, 0.1, 0.1] * 2
    meta = read_parquet_metadata(job.output.table)
    assert meta["class_names"] == ["a", "b", "c"] and meta["model"] == "m"
    assert meta["settings"] == settings and meta["optimiser"] == optimiser
    # each row describes the image at its index
    model = prepare_model(load_model(job.input.model), "cpu")
    out = table[table["panel"] == "output"]
    again = describe_images(model, images[out["index"]], resolve_layer("output", model), out["unit"])
    assert np.array_equal(again["activation"].to_numpy(), out["activation"].to_numpy())


# --- the workflow's outputs (config/test.yaml end to end) --------------------------------------

@pytest.mark.slow
def test_workflow_writes_the_featureviz_tables_and_figures(e2e_run):
    import yaml

    import matplotlib.pyplot as plt
    import pandas as pd

    from latent_atlas.io import read_npz, read_parquet, read_parquet_metadata, sha256_file

    cfg = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())["featureviz"]
    d = e2e_run / "results" / "digits" / "mlp" / "featureviz"
    figs = e2e_run / "results" / "figures" / "digits" / "mlp"
    stems = ["unregularised", "adversarial", "adversarial_success", "tv_sweep", "tv_l1_grid_output",
             "tv_l1_grid_hidden", "dead_neurons", "coactivation"]
    stems += [f"gallery_layer{layer}" for layer in cfg["gallery"]["layers"]]
    manifest = pd.read_csv(e2e_run / "results" / "figures" / "MANIFEST.tsv", sep="\t")
    for stem in stems:
        path = figs / f"featureviz_{stem}.png"
        image = plt.imread(path)[..., :3]
        assert min(image.shape[:2]) > 100 and image.std() > 0.01, stem  # a drawn figure, not a blank
        row = manifest[manifest["file"] == f"results/figures/digits/mlp/featureviz_{stem}.png"]
        assert row["rule"].tolist() == ["plot_featureviz"], stem
        assert row["sha256"].item() == sha256_file(path), stem

    unreg = read_parquet(d / "unregularised.parquet")
    assert set(unreg["clip"]) == {False, True}
    assert unreg.loc[unreg["layer_name"] == "output", "unit"].nunique() == 10
    images = read_npz(d / "unregularised.npz")["images"]
    clipped = images[unreg.loc[unreg["clip"], "index"].to_numpy()]
    assert clipped.min() >= 0 and clipped.max() <= 1

    adv = read_parquet(d / "adversarial.parquet")
    assert len(adv) == 10 * 9 * cfg["adversarial"]["per_pair"]
    assert (adv["pred_before"] == adv["source_class"]).all()
    assert adv["success"].any()
    assert read_npz(d / "adversarial.npz")["images"].shape[1] == 2
    meta = read_parquet_metadata(d / "adversarial.parquet")
    assert meta["model"] == "mlp" and len(meta["class_names"]) == 10

    grid = read_parquet(d / "tv_l1_grid.parquet")
    assert set(grid["panel"]) == {"output", "hidden"}
    assert (grid.loc[grid["panel"] == "hidden", "layer"] == cfg["tv_l1_grid"]["hidden_layer"]).all()
    for layer in cfg["gallery"]["layers"]:
        gal = read_parquet(d / f"gallery_layer{layer}.parquet")
        assert (gal["layer"] == layer).all() and len(gal) == cfg["gallery"]["units"]

    summary = read_parquet(d / "dead_summary.parquet")
    assert summary["layer"].tolist() == [1, 2, 3]
    assert summary["units"].tolist() == [64, 48, 32]
    census = read_parquet(d / "dead_neurons.parquet")
    assert census.groupby("layer")["dead"].sum().tolist() == summary["dead"].tolist()
    assert not census.loc[~census["dead"], "revivable"].any()


def test_auto_starts_use_a_random_start_where_the_unit_is_off(trained):
    lay = resolve_layer(1, trained)
    units = list(range(lay.units))
    zero = start_images("zero", len(units), trained.input_shape)
    on = describe_images(trained, zero, lay, units)["activation"].to_numpy() > 0
    assert on.any() and (~on).any()
    x0, kinds = auto_starts(trained, lay, units, OPT)
    assert np.all(x0[on] == 0.01)
    assert not np.any(x0[~on] == 0.01)
    assert [k for k, o in zip(kinds, on) if o] == ["zero"] * int(on.sum())


def test_auto_starts_fall_back_on_the_real_image_that_activates_the_unit_most(trained, blobs):
    """A unit that neither the near-zero nor the random start activates (no gradient through its
    ReLU) starts from the real image that activates it most, and optimisation raises it."""
    model = TinyMLP()
    model.load_state_dict(trained.state_dict())
    with torch.no_grad():  # unit 0 of layer 1 fires only where the top-left quadrant is lit
        w = torch.full((64,), -1.0)
        w.view(8, 8)[:4, :4] = 1.0
        model.layers[0].weight[0] = w
        model.layers[0].bias[0] = -3.0
    model = _frozen(model)
    lay = resolve_layer(1, model)
    x, y = blobs
    acts = layer_activations(model, x, lay)[:, 0]
    assert acts.max() > 0 and (acts > 0).mean() < 0.5
    ids = np.arange(1000, 1000 + len(x))
    x0, kinds = auto_starts(model, lay, [0, 1], OPT, images=x, image_ids=ids)
    best = int(acts.argmax())
    assert kinds[0] == f"image:{1000 + best}" and np.array_equal(x0[0], x[best])
    assert kinds[1] in ("zero", "random")
    table, _ = gallery(model, ["a", "b", "c", "d"], OPT, layer=1, units=[0], tv=0.0, l1=0.0, steps=5,
                      start="auto", jitter=False, penalty=0.0, images=x, image_ids=ids)
    assert table["start"].tolist() == [kinds[0]]
    assert table["activation"].item() > acts.max()
    # Without real images to fall back on, the unit stays at 0 (the study's blank images).
    blank, _ = gallery(model, ["a", "b", "c", "d"], OPT, layer=1, units=[0], tv=0.0, l1=0.0, steps=5,
                      start="auto", jitter=False, penalty=0.0)
    assert blank["activation"].item() == 0 and blank["start"].item() == "random"


def test_adversarial_figure_shows_darkened_colour_pixels_as_negative():
    """The difference panel is the signed difference averaged over channels: a colour pixel the
    attack darkened is drawn below zero (clipping it like an image would hide it)."""
    import pandas as pd

    from latent_atlas.featureviz.figures import plot_adversarial_examples

    orig = np.full((3, 4, 4), 0.5, np.float32)
    res = orig.copy()
    res[:, 0, 0] -= 0.25  # darkened
    res[:, 3, 3] += 0.125  # brightened
    table = pd.DataFrame({"index": [0], "source_class": [0], "target_class": [1], "success": [True],
                          "source_prob": [0.9], "target_prob": [0.8], "l2": [0.1], "linf": [0.25],
                          "before_p0": [0.9], "before_p1": [0.1], "after_p0": [0.2], "after_p1": [0.8]})
    fig = plot_adversarial_examples(table, np.stack([orig, res])[None], ["a", "b"], show=1)
    diff = fig.axes[2].images[0].get_array()
    assert diff.shape == (4, 4)
    assert diff[0, 0] == pytest.approx(-0.25) and diff[3, 3] == pytest.approx(0.125)
    assert fig.axes[2].images[0].get_clim() == (-0.25, 0.25)


@pytest.mark.parametrize("display, clim", [("per_image", (0.02, 0.06)), ("fixed", (0.0, 1.0))])
def test_tv_sweep_figure_stretches_faint_images_and_writes_each_probability_under_it(display, clim):
    """per_image (the study's display) maps a faint image's own range to black..white; fixed keeps
    [0, 1]. Under each optimised image its probability from the table, under the class mean its
    count; the class-mean column stays."""
    import pandas as pd

    from latent_atlas.featureviz.figures import plot_tv_sweep

    faint = np.full((2, 1, 4, 4), 0.02, np.float32)
    faint[:, 0, 1, 1] = 0.06
    table = pd.DataFrame({"index": [0, 1], "unit": [1, 1], "tv_weight": [0.004, 0.256], "l1_weight": [0.0, 0.0],
                          "activation": [0.734, 0.412], "steps": [20, 20]})
    means = np.stack([np.full((1, 4, 4), v, np.float32) for v in (0.1, 0.3)])
    means[1, 0, 0, 0] = 0.9
    fig = plot_tv_sweep(table, faint, means, np.array([0, 7]), ["a", "b"], 0.9, display=display)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 3  # two TV weights + the class mean
    assert [ax.get_xlabel() for ax in image_axes] == ["p=0.73", "p=0.41", "n=7"]
    assert image_axes[0].images[0].get_clim() == pytest.approx(clim)
    assert image_axes[2].images[0].get_clim() == pytest.approx((0.3, 0.9) if display == "per_image" else (0, 1))
    assert ("own range" in fig._suptitle.get_text()) == (display == "per_image")


def test_figures_refuse_an_unknown_display():
    import pandas as pd

    from latent_atlas.featureviz.figures import plot_gallery

    table = pd.DataFrame({"index": [0], "unit": [0], "layer": [1], "layer_name": ["fc1"], "activation": [1.0],
                          "ratio": [2.0], "tv_weight": [0.1], "l1_weight": [0.0], "steps": [5]})
    with pytest.raises(ValueError, match="featureviz.display"):
        plot_gallery(table, np.zeros((1, 1, 4, 4), np.float32), display="auto")
