"""The attributes stage: the store's attribute table (source attributes, a user's table), the
probes, directions and dimension scores, and the traversals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mutual_info_score, roc_auc_score

from latent_atlas.attributes.probes import angle, check_attribute, dimension_scores, directions, probe
from latent_atlas.attributes.traversals import largest_variance_axes, nearest_rows, principal_components, walk
from latent_atlas.data.build import plan_dataset, write_attribute_table
from latent_atlas.data.store import DataError
from latent_atlas.data.synthetic import CELEBA_ATTRIBUTES, write_celeba_folder
from latent_atlas.io import read_parquet, read_parquet_metadata


def _digits_samples(spec, seed=0):
    plan = plan_dataset("digits", spec, seed)
    return plan, pd.DataFrame({"sample_id": plan.index})


DIGITS = {"source": "sklearn_digits", "split": {"method": "fraction", "test_fraction": 0.25}}


# --------------------------------------------------------------------------------------------
# The attribute table
# --------------------------------------------------------------------------------------------

def test_celeba_attributes_go_through_to_the_table_as_in_the_file(tmp_path):
    """CelebA-layout folder -> plan -> attributes.parquet: every one of the 40 attributes of every
    kept sample equals list_attr_celeba.txt's value (-1/1 -> 0/1), int8, with the class first."""
    folder = write_celeba_folder(tmp_path / "celeba", 60, seed=3)
    spec = {"source": "celeba", "path": str(folder), "attribute": "Smiling", "size": 16,
            "subsample": {"train": 30}}
    plan = plan_dataset("faces", spec, 0)
    out = tmp_path / "attributes.parquet"
    names = write_attribute_table("faces", spec, 0, pd.DataFrame({"sample_id": plan.index}), out)
    assert names == ["class", *CELEBA_ATTRIBUTES]
    table = read_parquet(out)
    lines = (folder / "list_attr_celeba.txt").read_text().splitlines()
    assert lines[1].split() == list(CELEBA_ATTRIBUTES)
    values = {int(line.split()[0].split(".")[0]) - 1: [int(v) for v in line.split()[1:]] for line in lines[2:]}
    assert table["sample_id"].tolist() == plan.index.tolist() and len(table) == len(plan)
    expected = np.array([values[i] for i in plan.index]) > 0
    assert np.array_equal(table[list(CELEBA_ATTRIBUTES)].to_numpy(), expected.astype(np.int8))
    assert all(table[c].dtype == np.int8 for c in table.columns[1:])
    assert np.array_equal(table["class"], table["Smiling"])  # the class is the `attribute`
    described = read_parquet_metadata(out)["attributes"]
    assert described[0] == {"name": "class", "origin": "class", "levels": ["not Smiling", "Smiling"]}


def test_a_users_attribute_table_is_matched_by_sample_id(tmp_path):
    plan, samples = _digits_samples(DIGITS)
    rng = np.random.default_rng(0)
    ids = np.arange(len(plan.source.labels))[::-1]  # every source sample, in another order
    own = pd.DataFrame({"sample_id": ids, "round": np.isin(plan.source.labels[ids], [0, 6, 8, 9]),
                        "ink": rng.integers(0, 4, len(ids)).astype(float)})
    own.to_csv(tmp_path / "own.csv", index=False)
    spec = {**DIGITS, "attributes": {"file": str(tmp_path / "own.csv"), "id_column": "sample_id"}}
    names = write_attribute_table("digits", spec, 0, samples, tmp_path / "a.parquet")
    table = read_parquet(tmp_path / "a.parquet")
    assert names == ["class", "round", "ink"]
    by_id = own.set_index("sample_id").loc[plan.index]
    assert np.array_equal(table["round"], by_id["round"].astype(int)) and table["round"].dtype == np.int8
    assert np.array_equal(table["ink"], by_id["ink"].astype(int))
    assert np.array_equal(table["class"], plan.labels)


@pytest.mark.parametrize("edit, message", [
    (lambda df: df.assign(sample_id=df["sample_id"] + 5000), "sample id(s) the dataset's source does not have"),
    (lambda df: df.iloc[10:], "has no row for 10 sample(s)"),
    (lambda df: df.assign(ink=df["ink"] + 0.5), "column 'ink': attribute values must be whole numbers"),
    (lambda df: df.assign(ink=np.where(df.index == 3, np.nan, df["ink"])), "column 'ink': 1 missing values"),
    (lambda df: df.assign(ink="a"), "column 'ink': attribute values must be integers or booleans"),
    (lambda df: df.rename(columns={"ink": "class"}), "column 'class' has the name of an attribute"),
])
def test_bad_attribute_tables_are_refused_naming_the_file_and_column(tmp_path, edit, message):
    plan, samples = _digits_samples(DIGITS)
    own = pd.DataFrame({"sample_id": np.arange(len(plan.source.labels)), "ink": 1.0})
    path = tmp_path / "own.csv"
    edit(own).to_csv(path, index=False)
    spec = {**DIGITS, "attributes": {"file": str(path), "id_column": "sample_id"}}
    with pytest.raises(DataError) as err:
        write_attribute_table("digits", spec, 0, samples, tmp_path / "a.parquet")
    assert message in str(err.value) and "datasets.digits.attributes" in str(err.value)
    assert str(path) in str(err.value)
    assert not (tmp_path / "a.parquet").exists()


def test_an_attribute_table_for_another_selection_of_samples_is_refused(tmp_path):
    _, samples = _digits_samples(DIGITS)
    with pytest.raises(DataError, match="rerun prepare_data"):
        write_attribute_table("digits", {**DIGITS, "subsample": {"train": 100}}, 0, samples, tmp_path / "a.parquet")


# --------------------------------------------------------------------------------------------
# Probes, directions, dimensions
# --------------------------------------------------------------------------------------------

def _planted(n=1200, d=6, seed=0):
    """Latents where a binary attribute shifts the mean along a known direction (mostly z2)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    u = np.zeros(d)
    u[2], u[4] = 1.0, 0.3
    Z = rng.normal(size=(n, d)) + 2.0 * y[:, None] * u
    return Z, y, u


def test_the_probe_and_directions_find_a_planted_attribute():
    Z, y, u = _planted()
    p = probe(Z, y, cv_folds=5, random_state=0)
    # the best possible AUC of the planted shift (Bayes): the AUC of the true projection
    best = roc_auc_score(y, Z @ u)
    assert abs(p["roc_auc"] - best) < 0.02 and p["roc_auc"] > 0.85 and p["n_folds"] == 5
    assert 0.75 < p["balanced_accuracy"] <= 1
    found = directions(Z, y)
    assert angle(found["mean_difference"], u) < 8
    assert angle(found["probe_normal"], u) < 12
    assert angle(found["mean_difference"], -u) > 170  # sign: with - without


def test_dimension_scores_rank_the_planted_dimension_first_and_match_sklearns_mutual_information():
    Z, y, _ = _planted()
    scores = dimension_scores(Z, y, ordered=False, n_bins=20)
    assert scores.set_index("dim").loc[2, "rank"] == 1 and scores.set_index("dim").loc[4, "rank"] == 2
    edges = np.linspace(Z[:, 2].min(), Z[:, 2].max(), 21)
    binned = np.clip(np.digitize(Z[:, 2], edges[1:-1]), 0, 19)
    assert scores["mutual_information"].iat[2] == pytest.approx(mutual_info_score(binned, y), rel=1e-9)
    assert scores["abs_correlation"].iat[2] == pytest.approx(abs(np.corrcoef(Z[:, 2], y)[0, 1]), rel=1e-9)


def test_the_correlation_ratio_of_an_unordered_attribute():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 900)
    Z = rng.normal(size=(900, 2))
    Z[:, 0] += np.array([0.0, 3.0, -3.0])[y]  # a class effect no straight line through the levels shows
    eta = dimension_scores(Z, y, ordered=False, n_bins=10)["abs_correlation"].to_numpy()
    means = np.array([Z[y == k, 0].mean() for k in range(3)])
    between = sum((y == k).sum() * (means[k] - Z[:, 0].mean()) ** 2 for k in range(3))
    assert eta[0] == pytest.approx(np.sqrt(between / ((Z[:, 0] - Z[:, 0].mean()) ** 2).sum()), rel=1e-9)
    assert eta[0] > 0.8 and eta[1] < 0.15


def test_an_attribute_with_one_value_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"attributes.names: attribute 'Bald' has a single value"):
        check_attribute(np.zeros(50, int), "Bald", "attributes.names")


# --------------------------------------------------------------------------------------------
# Traversals
# --------------------------------------------------------------------------------------------

def test_walks_step_in_stds_along_the_direction_and_keep_the_code_at_step_zero():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(500, 4)) * [1, 2, 3, 4]
    z0 = Z[:3].astype(np.float32)
    codes = walk(z0, np.array([0, 0, 2.0, 0]), Z, [-2, 0, 1])
    assert codes.shape == (3, 3, 4) and codes.dtype == np.float32
    assert np.array_equal(codes[:, 1], z0)
    sigma = Z[:, 2].std()
    assert np.allclose(codes[:, 2, 2] - z0[:, 2], sigma, rtol=1e-5)
    assert np.allclose(codes[:, 0, 2] - z0[:, 2], -2 * sigma, rtol=1e-5)
    assert np.array_equal(codes[:, :, [0, 1, 3]], np.repeat(z0[:, None, [0, 1, 3]], 3, axis=1))
    assert largest_variance_axes(Z, 2).tolist() == [3, 2]
    pcs = principal_components(Z, 2)
    assert abs(pcs[0, 3]) > 0.99 and np.allclose(np.linalg.norm(pcs, axis=1), 1)


def test_nearest_rows_equals_a_brute_force_search():
    rng = np.random.default_rng(2)
    ref, queries = rng.normal(size=(1000, 5)), rng.normal(size=(40, 5))
    expected = np.argmin(((queries[:, None] - ref[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(nearest_rows(ref, queries, chunk=128), expected)


def test_decoding_the_unmodified_code_reproduces_the_models_reconstruction_exactly():
    torch = pytest.importorskip("torch")
    from latent_atlas.attributes.jobs import _Decoded
    from latent_atlas.data.store import Dataset
    from latent_atlas.models.networks import build_model

    torch.manual_seed(0)
    model = build_model("conv_vae", (1, 16, 16), 3, {"channels": [4, 4, 8, 8], "latent_dim": 5}).eval()
    images = np.random.default_rng(0).random((12, 1, 16, 16)).astype(np.float32)
    ds = Dataset(images, np.zeros(12, int), ["a"], np.array(["test"] * 12), np.arange(12), "t")
    draw = _Decoded(model, ds, np.arange(12))
    rows = np.array([3, 7, 8])
    z0 = draw.codes(rows)
    codes = walk(z0, np.ones(5), np.random.default_rng(1).normal(size=(100, 5)), [-1, 0, 1])
    decoded, shown = draw.images(codes.reshape(-1, 5))
    with torch.no_grad():
        reconstruction = np.stack([model(torch.from_numpy(images[r:r + 1]))[0].numpy() for r in rows])
    assert np.array_equal(decoded.reshape(3, 3, 1, 16, 16)[:, 1], reconstruction)
    assert not np.array_equal(decoded.reshape(3, 3, 1, 16, 16)[:, 0], reconstruction)
    assert (shown == -1).all()


# --------------------------------------------------------------------------------------------
# The jobs, on a code that carries known factors
# --------------------------------------------------------------------------------------------

def _stage_inputs(tmp_path, n=600, seed=0):
    """A latents table whose z0 is factor `a` (4 levels), z1 is binary `b`, z2 is noise, and the
    attribute table of the same samples (in another order), as the workflow writes them."""
    from latent_atlas.io import write_parquet
    from latent_atlas.latents import file_metadata, id_frame, latents_frame_of

    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 4, n), rng.integers(0, 2, n)
    z = np.stack([a + 0.1 * rng.normal(size=n), b + 0.1 * rng.normal(size=n), rng.normal(size=n)], 1)
    ids = np.arange(n) * 3
    split = np.where(np.arange(n) % 4 == 0, "test", "train")
    frame = latents_frame_of(id_frame(ids, split, b, ["no", "yes"]), z.astype(np.float32))
    write_parquet(frame, tmp_path / "latents.parquet", file_metadata("d", "m", "dense_ae", "x"))
    order = rng.permutation(n)
    table = pd.DataFrame({"sample_id": ids[order], "class": b[order].astype(np.int8), "a": a[order].astype(np.int8),
                          "b": b[order].astype(np.int8)})
    described = [{"name": "class", "origin": "class", "levels": ["no", "yes"]},
                 {"name": "a", "origin": "source", "levels": [0.0, 1.0, 2.0, 3.0]},
                 {"name": "b", "origin": "source", "levels": None}]
    write_parquet(table, tmp_path / "attributes.parquet", {"dataset": "d", "attributes": described})
    return tmp_path / "latents.parquet", tmp_path / "attributes.parquet"


def _probes_job(tmp_path, latents, attributes):
    from latent_atlas.runtime import Files, Job

    out = {name: tmp_path / f"{name}.parquet" for name in ("probes", "directions", "angles", "dimensions")}
    return Job(input=Files(latents=latents, attributes=attributes), output=Files(**out),
               wildcards=Files(dataset="d", model="m")), out


def test_the_probe_job_finds_which_dimension_carries_which_attribute(tmp_path):
    from latent_atlas.attributes.jobs import attribute_probes

    job, out = _probes_job(tmp_path, *_stage_inputs(tmp_path))
    attribute_probes(job, seed=0, numeric_threads=1, names=None, split="all", max_samples=10000, cv_folds=3,
                     mi_bins=20, top_dimensions=2)
    probes = read_parquet(out["probes"]).set_index("attribute")
    assert probes.index.tolist() == ["class", "a", "b"]
    assert probes.loc["b", "roc_auc"] > 0.99 and probes.loc["a", "balanced_accuracy"] > 0.9
    assert probes["ordered"].tolist() == [True, True, True]  # class and b binary, a numeric levels
    dims = read_parquet(out["dimensions"])
    top = dims[dims["rank"] == 1].set_index("attribute")["dim"]
    assert top.to_dict() == {"class": 1, "a": 0, "b": 1}
    directions = read_parquet(out["directions"])
    u = directions[(directions["attribute"] == "a") & (directions["kind"] == "mean_difference")]
    assert angle(u[["z0", "z1", "z2"]].to_numpy()[0], np.array([1.0, 0, 0])) < 5
    angles = read_parquet(out["angles"]).set_index(["attribute_a", "attribute_b"])["angle"]
    assert angles[("class", "b")] < 1e-3 and 80 < angles[("a", "b")] < 100


def test_the_disentanglement_job_names_its_factors(tmp_path):
    from latent_atlas.attributes.jobs import disentanglement
    from latent_atlas.runtime import Files, Job

    latents, attributes = _stage_inputs(tmp_path)
    out = {name: tmp_path / f"{name}.parquet" for name in ("scores", "factors", "importance")}
    job = Job(input=Files(latents=latents, attributes=attributes), output=Files(**out),
              wildcards=Files(dataset="d", model="m"))
    disentanglement(job, seed=0, numeric_threads=1, factors=None, max_samples=10000, mi_bins=20,
                    dci={"regressor": "lasso", "n_estimators": 5, "max_depth": 6, "alpha": 0.01})
    scores = read_parquet(out["scores"]).set_index("score")["value"]
    assert set(read_parquet(out["scores"])["factors"]) == {"a, b"}  # every attribute but the class
    assert scores["mig"] > 0.8 and scores["dci_disentanglement"] > 0.9 and scores["dci_completeness"] > 0.9
    factors = read_parquet(out["factors"]).set_index("factor")
    assert factors["top_dimension"].to_dict() == {"a": 0, "b": 1}
    assert factors["continuous"].to_dict() == {"a": True, "b": False}


@pytest.mark.parametrize("names, message", [
    (["a", "Smilling"], r"attributes.names: unknown attribute\(s\) \['Smilling'\]; dataset's attributes .*: class, a, b"),
])
def test_an_unknown_attribute_name_is_refused_naming_the_key_and_the_valid_ones(tmp_path, names, message):
    from latent_atlas.attributes.jobs import attribute_probes

    job, out = _probes_job(tmp_path, *_stage_inputs(tmp_path))
    with pytest.raises(ValueError, match=message):
        attribute_probes(job, seed=0, numeric_threads=1, names=names, split="all", max_samples=10000, cv_folds=3,
                         mi_bins=20, top_dimensions=2)
    assert not any(p.exists() for p in out.values())


def test_an_unknown_factor_and_a_constant_one_are_refused(tmp_path):
    from latent_atlas.attributes.jobs import disentanglement
    from latent_atlas.runtime import Files, Job

    latents, attributes = _stage_inputs(tmp_path)
    job = Job(input=Files(latents=latents, attributes=attributes),
              output=Files(scores=tmp_path / "s.parquet", factors=tmp_path / "f.parquet",
                           importance=tmp_path / "i.parquet"), wildcards=Files(dataset="d", model="m"))
    settings = dict(seed=0, numeric_threads=1, max_samples=10000, mi_bins=20,
                    dci={"regressor": "lasso", "n_estimators": 5, "max_depth": 6, "alpha": 0.01})
    with pytest.raises(ValueError, match=r"attributes.factors: unknown attribute\(s\) \['shape'\]"):
        disentanglement(job, factors=["a", "shape"], **settings)
    table = read_parquet(attributes).assign(b=np.int8(1))
    from latent_atlas.io import write_parquet

    write_parquet(table, attributes, read_parquet_metadata(attributes))
    with pytest.raises(ValueError, match=r"attributes.factors: attribute 'b' has a single value"):
        disentanglement(job, factors=["a", "b"], **settings)
    assert not (tmp_path / "s.parquet").exists()


def test_the_traversal_job_walks_in_probe_order_and_shows_the_nearest_real_images(tmp_path):
    """A model without a decoder (a table of latents): each code shows the real sample whose latent
    is nearest; step 0 shows the start sample itself; the arithmetic panel starts from samples at
    the lowest and highest value of its attribute."""
    from latent_atlas.attributes.jobs import attribute_probes, attribute_traversals
    from latent_atlas.data.store import Dataset, save_dataset
    from latent_atlas.runtime import Files, Job

    latents, attributes = _stage_inputs(tmp_path)
    job, out = _probes_job(tmp_path, latents, attributes)
    attribute_probes(job, seed=0, numeric_threads=1, names=None, split="all", max_samples=10000, cv_folds=3,
                     mi_bins=20, top_dimensions=2)
    table = read_parquet(latents)
    n = len(table)
    images = (np.arange(n)[:, None, None, None] % 251 / 255 * np.ones((1, 1, 4, 4))).astype(np.float32)
    save_dataset(Dataset(images, table["label"].to_numpy(), ["no", "yes"], table["split"].to_numpy(),
                         table["sample_id"].to_numpy(), "d"), tmp_path / "store")
    job = Job(input=Files(latents=latents, attributes=attributes, probes=out["probes"],
                          directions=out["directions"], data=tmp_path / "store"),
              output=Files([tmp_path / "traversals.parquet"]), wildcards=Files(dataset="d", model="m"))
    traversal = {"samples": 2, "ids": [], "steps": [-2, 0, 2], "attributes": 2, "axes": 1, "components": 1}
    attribute_traversals(job, seed=0, numeric_threads=1, split="all", max_samples=10000, traversal=traversal,
                         arithmetic=None, decode=False)
    walks = read_parquet(tmp_path / "traversals.parquet")
    attribute_rows = walks[walks["panel"] == "attribute"]
    best = read_parquet(out["probes"]).query("ordered").sort_values("roc_auc", ascending=False, kind="stable")
    assert list(dict.fromkeys(attribute_rows["name"])) == best["attribute"].head(2).tolist()
    own = walks[walks["step"] == 0]
    assert (own["shown_id"] == own["sample_id"]).all()  # the nearest latent to a sample's code is its own
    row_of = {int(i): k for k, i in enumerate(table["sample_id"])}
    for _, r in walks.iterrows():  # every image is the stored image of the sample it names
        expected = np.round(images[row_of[r["shown_id"]]] * 255).astype(np.uint8)
        assert np.frombuffer(r["image"], np.uint8).reshape(1, 4, 4).tolist() == expected.tolist()
    # a binary attribute (class = b here, tied: the first) is preferred to the ordered a for the
    # arithmetic panel: its inputs have the value 0 (without) and 1 (with)
    values = read_parquet(attributes).set_index("sample_id")["class"]
    for panel, value in (("arithmetic_without", 0), ("arithmetic_with", 1)):
        part = walks[walks["panel"] == panel]
        assert set(part["name"]) == {"class"} and set(values.loc[part["sample_id"]]) == {value}
        assert part.groupby("start")["label"].apply(list).iat[0][0] == "input"
