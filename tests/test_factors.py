"""The synthetic_factors source: the factor grid, the rasteriser's geometry and exactness, and the
source read through the dataset options."""

from __future__ import annotations

import numpy as np
import pytest

from latent_atlas.data import factors
from latent_atlas.data.build import build_dataset, plan_dataset
from latent_atlas.data.factors import FACTORS, MAX_RADIUS, coverage, factor_grid, render
from latent_atlas.data.sources import decoding_map
from latent_atlas.data.store import DataError

SMALL = {"shapes": ["square", "ellipse", "heart"], "scale": 2, "rotation": 4, "x": 4, "y": 4}


def _id(grid, **index) -> int:
    return int(grid.ids({f: [index[f]] for f in FACTORS})[0])


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(x, y) in pixels from the left and top edges (pixel (r, c) covers [c, c + 1) x [r, r + 1))."""
    weights = image.astype(np.float64)
    rows, cols = np.indices(image.shape) + 0.5
    return float((weights * cols).sum() / weights.sum()), float((weights * rows).sum() / weights.sum())


def test_grid_ids_and_factor_indices_round_trip():
    grid = factor_grid(["square", "ellipse", "heart"], 6, 40, 32, 32, 64)
    assert len(grid) == 737_280 and grid.dims == (3, 6, 40, 32, 32)
    ids = np.random.default_rng(0).integers(0, len(grid), 1000)
    index = grid.indices(ids)
    assert list(index) == list(FACTORS) and all(v.dtype == np.int64 for v in index.values())
    np.testing.assert_array_equal(grid.ids(index), ids)
    # C-order: y varies fastest, shape slowest.
    assert _id(grid, shape=0, scale=0, rotation=0, x=0, y=1) == 1
    assert _id(grid, shape=0, scale=0, rotation=0, x=1, y=0) == 32
    assert _id(grid, shape=1, scale=0, rotation=0, x=0, y=0) == 6 * 40 * 32 * 32
    assert _id(grid, shape=2, scale=5, rotation=39, x=31, y=31) == len(grid) - 1
    with pytest.raises(IndexError):
        grid.indices([len(grid)])


def test_levels_are_the_physical_values():
    levels = factor_grid(["heart", "square"], 6, 40, 32, 3, 64).levels()
    assert levels["shape"] == ["heart", "square"]
    np.testing.assert_allclose(levels["scale"], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    np.testing.assert_allclose(levels["rotation"], np.arange(40) * 9.0)
    np.testing.assert_allclose([levels["x"][0], levels["x"][-1]], [MAX_RADIUS, 1 - MAX_RADIUS])
    np.testing.assert_allclose(levels["y"], [MAX_RADIUS, 0.5, 1 - MAX_RADIUS])
    assert levels["y"][1] == 0.5
    single = factor_grid(["ellipse"], 1, 1, 1, 1, 32).levels()
    assert single["scale"] == [1.0] and single["rotation"] == [0.0] and single["x"] == single["y"] == [0.5]


def test_centre_of_mass_is_at_the_configured_position():
    grid = factor_grid(["square", "ellipse", "heart"], 3, 8, 5, 5, 64)
    levels = grid.levels()
    rng = np.random.default_rng(1)
    ids = rng.choice(len(grid), 60, replace=False)
    images = render(grid, ids)
    for i, index in zip(ids, zip(*grid.indices(ids).values())):
        shape, scale, rotation, x, y = index
        cx, cy = _centre_of_mass(images[list(ids).index(i), 0])
        assert abs(cx - levels["x"][x] * 64) < 0.25 and abs(cy - levels["y"][y] * 64) < 0.25, index


def test_area_grows_with_scale_and_a_square_with_its_square():
    size = 64
    grid = factor_grid(["square", "ellipse", "heart"], 6, 7, 3, 3, size)
    scales = np.array(grid.levels()["scale"])
    for shape in range(3):
        ids = [_id(grid, shape=shape, scale=s, rotation=1, x=1, y=1) for s in range(6)]
        area = render(grid, ids).reshape(6, -1).sum(axis=1) / 255
        assert np.all(np.diff(area) > 0), (grid.shapes[shape], area)
        if grid.shapes[shape] == "square":
            side = np.sqrt(2) * scales * MAX_RADIUS * size  # the diagonal is two circumradii
            # Point sampling misses at most half a sample spacing along the outline.
            np.testing.assert_array_less(np.abs(area - side**2), 4 * side / (2 * factors.SUPERSAMPLE))
            np.testing.assert_allclose(area, side**2, rtol=0.03)


def test_turns_by_the_pixel_grid_symmetries_are_exact():
    """At the centre, a turn by 90 degrees (counter-clockwise) is np.rot90 of the image; a square
    turned by 90 and an ellipse turned by 180 give their own image again (rotation is identifiable
    only modulo the shape's symmetry)."""
    grid = factor_grid(["square", "ellipse", "heart"], 2, 4, 1, 1, 64)
    for shape in range(3):
        for scale in range(2):
            turns = render(grid, [_id(grid, shape=shape, scale=scale, rotation=r, x=0, y=0) for r in range(4)])
            for r in range(4):
                np.testing.assert_array_equal(turns[r, 0], np.rot90(turns[0, 0], r))
    heart = render(grid, [_id(grid, shape=2, scale=1, rotation=r, x=0, y=0) for r in (0, 2)])[:, 0]
    assert not np.array_equal(heart[0], heart[1])
    assert heart[0][:32].sum() > heart[0][32:].sum()  # the lobes up, the tip down
    square = render(grid, [_id(grid, shape=0, scale=1, rotation=r, x=0, y=0) for r in (0, 1)])
    ellipse = render(grid, [_id(grid, shape=1, scale=1, rotation=r, x=0, y=0) for r in (0, 1, 2)])
    np.testing.assert_array_equal(square[0], square[1])
    np.testing.assert_array_equal(ellipse[0], ellipse[2])
    assert not np.array_equal(ellipse[0], ellipse[1])


def test_rendering_does_not_depend_on_the_batch_or_the_workers():
    grid = factor_grid(["square", "ellipse", "heart"], 6, 40, 32, 32, 64)
    ids = np.random.default_rng(2).choice(len(grid), 90, replace=False)
    batch = render(grid, ids)
    alone = np.concatenate([render(grid, [i]) for i in ids])
    np.testing.assert_array_equal(batch, alone)
    np.testing.assert_array_equal(render(grid, ids[::-1])[::-1], batch)
    source = plan_dataset("f", {"source": "synthetic_factors"}, seed=0).source
    with decoding_map(2) as map_fn:
        np.testing.assert_array_equal(source.load(ids, map_fn), batch)


def test_the_window_around_a_shape_loses_no_pixel():
    """`render` draws a window around each shape; the whole image drawn at once is the same."""
    size = 32
    grid = factor_grid(["square", "ellipse", "heart"], 2, 8, 2, 2, size)
    ids = np.arange(len(grid))
    index = grid.indices(ids)
    levels = {f: np.asarray(v) for f, v in grid.levels().items() if f != "shape"}
    rad = np.deg2rad(levels["rotation"])[index["rotation"]]
    full = coverage(index["shape"], grid.shapes, levels["scale"][index["scale"]] * MAX_RADIUS * size,
                    np.cos(rad), np.sin(rad), levels["x"][index["x"]] * size, levels["y"][index["y"]] * size, size)
    np.testing.assert_array_equal(render(grid, ids)[:, 0], full)
    # And the image holds the whole shape: on a canvas 4 pixels wider on each side, the margin is empty.
    canvas = coverage(index["shape"], grid.shapes, levels["scale"][index["scale"]] * MAX_RADIUS * size,
                      np.cos(rad), np.sin(rad), levels["x"][index["x"]] * size + 4,
                      levels["y"][index["y"]] * size + 4, size + 8)
    canvas[:, 4:-4, 4:-4] = 0
    assert canvas.max() == 0


def test_build_dataset_on_a_small_grid():
    spec = {"source": "synthetic_factors", "size": 32, "factors": SMALL}
    ds = build_dataset("f", spec, seed=0)
    grid = factor_grid(**SMALL, size=32)
    assert len(ds.labels) == 3 * 2 * 4 * 4 * 4 and ds.class_names == ["square", "ellipse", "heart"]
    assert ds.images.shape == (384, 1, 32, 32) and set(ds.split) == {"train", "test"}
    index = grid.indices(ds.sample_id)
    np.testing.assert_array_equal(ds.labels, index["shape"])
    np.testing.assert_array_equal(np.sort(ds.sample_id), np.arange(384))
    np.testing.assert_array_equal(ds.images, render(grid, ds.sample_id) / np.float32(255))
    plan = plan_dataset("f", {**spec, "classes": ["heart"], "color": "rgb"}, seed=0)
    attributes = plan.source_attributes()
    assert list(attributes) == list(FACTORS) and set(attributes["shape"]) == {2}
    np.testing.assert_array_equal(attributes["x"], grid.indices(plan.index)["x"])
    assert plan.source.attribute_levels == grid.levels()
    assert next(plan.image_chunks()).shape[1:] == (3, 32, 32)


def test_default_grid_is_dsprites():
    plan = plan_dataset("f", {"source": "synthetic_factors"}, seed=0)
    assert len(plan) == 737_280 and plan.class_names == list(factors.SHAPES)
    assert plan.source.attribute_levels["rotation"][1] == 9.0
    assert next(plan.image_chunks(rows=4)).shape == (4, 1, 64, 64)


@pytest.mark.parametrize("options, message", [
    ({"factors": {"shapes": ["square", "circle"]}}, r"datasets\.f\.factors\.shapes: unknown shape\(s\) 'circle'"),
    ({"factors": {"shapes": ["heart", "heart"]}}, r"datasets\.f\.factors\.shapes: each shape once"),
    ({"factors": {"shapes": []}}, r"datasets\.f\.factors\.shapes: expected a non-empty list"),
    ({"factors": {"rotation": 0}}, r"datasets\.f\.factors\.rotation: .* integer >= 1, got 0"),
    ({"factors": {"x": 2.5}}, r"datasets\.f\.factors\.x: .* got 2\.5"),
    ({"factors": {"sizes": 3}}, r"datasets\.f\.factors: unknown keys \['sizes'\]"),
    ({"size": 16}, r"datasets\.f\.size: 16 pixels is too small .* size >= 20"),
])
def test_bad_options_name_the_key(options, message):
    with pytest.raises(DataError, match=message):
        plan_dataset("f", {"source": "synthetic_factors", **options}, seed=0)


def test_one_scale_draws_smaller_images():
    plan = plan_dataset("f", {"source": "synthetic_factors", "size": 10, "factors": {"scale": 1}}, seed=0)
    assert next(plan.image_chunks(rows=2)).shape == (2, 1, 10, 10)


def test_a_rotation_span_draws_the_same_angles_as_the_full_turn():
    """rotation_span 90 with 2 rotations draws 0 and 45 degrees: the same images as rotations 0
    and 1 of a full turn in 8; its levels say so, and a span outside (0, 360] names its key."""
    part = factor_grid(["square", "heart"], 2, 2, 2, 2, 32, rotation_span=90)
    full = factor_grid(["square", "heart"], 2, 8, 2, 2, 32)
    assert part.levels()["rotation"] == [0.0, 45.0] and full.levels()["rotation"][:2] == [0.0, 45.0]
    ids = np.arange(len(part))
    index = part.indices(ids)
    np.testing.assert_array_equal(render(part, ids), render(full, full.ids(index)))
    assert not np.array_equal(render(part, ids[index["rotation"] == 0]),
                              render(part, ids[index["rotation"] == 1]))
    for bad in (0, 400, True):
        with pytest.raises(ValueError, match="factors.rotation_span"):
            factor_grid(["square"], 2, 2, 2, 2, 32, rotation_span=bad)
    spec = {"source": "synthetic_factors", "size": 32, "factors": {**SMALL, "rotation_span": 60}}
    assert plan_dataset("f", spec, seed=0).source.attribute_levels["rotation"] == [0, 15, 30, 45]
