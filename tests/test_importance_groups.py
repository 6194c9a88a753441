"""Pixel groups (importance.groups) and Benjamini-Hochberg discoveries."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import false_discovery_control

from latent_atlas.importance.groups import benjamini_hochberg, on_grid, patch_groups, pixel_groups


def test_patches_partition_the_image_with_clipped_edges():
    groups = patch_groups(28, 28, 4)
    assert len(groups) == 49 and all(len(g) == 16 for g in groups)
    assert np.array_equal(np.sort(np.concatenate(groups)), np.arange(784))  # a partition
    assert groups[1].tolist() == [4, 5, 6, 7, 32, 33, 34, 35, 60, 61, 62, 63, 88, 89, 90, 91]
    clipped = patch_groups(28, 28, 5)  # 5 full squares and a 3-wide remainder per axis
    assert len(clipped) == 36 and sorted({len(g) for g in clipped}) == [9, 15, 25]
    assert np.array_equal(np.sort(np.concatenate(clipped)), np.arange(784))
    assert [g.tolist() for g in pixel_groups(2, 3)] == [[0], [1], [2], [3], [4], [5]]


def test_overlapping_patches_cover_every_pixel_and_draw_as_means():
    groups = patch_groups(6, 6, 4, stride=2)  # starts 0 and 2 per axis
    assert len(groups) == 4 and all(len(g) == 16 for g in groups)
    covered = np.bincount(np.concatenate(groups), minlength=36).reshape(6, 6)
    assert covered[0, 0] == 1 and covered[2, 2] == 4 and covered[5, 5] == 1 and covered.min() >= 1
    grid = on_grid(np.array([1.0, 2.0, 3.0, 4.0]), groups, 6, 6)
    assert grid[0, 0] == 1.0 and grid[5, 5] == 4.0 and grid[2, 2] == pytest.approx(2.5)
    per_dim = on_grid(np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 1.0]]), groups, 6, 6)
    assert per_dim.shape == (6, 6, 2) and per_dim[5, 5, 1] == 1.0
    with pytest.raises(ValueError, match="leaves pixels in no group"):
        patch_groups(6, 6, 2, stride=3)


def test_benjamini_hochberg_matches_scipy():
    """Cross-checked with SciPy's published implementation (false_discovery_control, method 'bh')."""
    rng = np.random.default_rng(0)
    for trial in range(20):
        m = int(rng.integers(1, 400))
        signal = rng.random(m) < 0.3
        p = np.where(signal, rng.beta(0.3, 8, m), rng.random(m))
        for q in (0.01, 0.05, 0.2):
            want = false_discovery_control(p, method="bh") <= q
            np.testing.assert_array_equal(benjamini_hochberg(p, q), want, err_msg=f"trial {trial}, q {q}")
    p = np.array([[0.001, np.nan], [0.04, 0.5]])  # NaN: not a test
    assert benjamini_hochberg(p, 0.05).tolist() == [[True, False], [False, False]]
    assert benjamini_hochberg(p, 0.1).tolist() == [[True, False], [True, False]]
    with pytest.raises(ValueError, match="false discovery rate"):
        benjamini_hochberg(p, 0)


def test_groups_of_one_pixel_are_todays_pixels_bit_for_bit():
    import torch

    from latent_atlas.importance.engine import pixel_importance
    from latent_atlas.importance.groups import naive_group_importance

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 5), torch.nn.Tanh()).eval()
    images = np.random.default_rng(0).random((30, 2, 6, 6), dtype=np.float32)
    pixels = [0, 7, 20, 35]
    want = pixel_importance(net, images, pixels, n_perm=3, seed=4, method="naive").per_permutation
    got = naive_group_importance(net, images, [np.array([p]) for p in pixels], n_perm=3, seed=4)
    np.testing.assert_array_equal(got, want)


def test_two_identical_pixels_marginal_and_grouped():
    """Pixels a and b always equal (perfectly correlated); the model reads a only: z = 3 x_a.
    Expected: a's marginal score is 9 mean_n (x_a[pi(n)] - x_a[n])^2 under a's permutation pi,
    b's is exactly 0 (the model ignores it), and the group {a, b} -- permuted jointly, with a's
    permutation, a being its first pixel -- scores exactly a's marginal score."""
    from latent_atlas.importance.engine import pixel_importance
    from latent_atlas.importance.groups import naive_group_importance
    from latent_atlas.importance.streams import permutation

    rng = np.random.default_rng(1)
    images = rng.random((50, 1, 4, 4), dtype=np.float32)
    a, b = 5, 10
    images.reshape(50, 16)[:, b] = images.reshape(50, 16)[:, a]

    def model(x):
        return 3 * x.reshape(len(x), -1)[:, a:a + 1]

    marginal = pixel_importance(model, images, [a, b], n_perm=2, seed=7, method="naive", device="cpu")
    grouped = naive_group_importance(model, images, [np.array([a, b])], n_perm=2, seed=7, device="cpu")
    xa = images.reshape(50, 16)[:, a].astype(np.float64)
    for k in range(2):
        pi = permutation(7, a, k, 50)
        expected = 9 * np.mean((xa[pi] - xa) ** 2)
        assert marginal.per_permutation[0, k, 0] == pytest.approx(expected, rel=1e-6)
    assert np.all(marginal.per_permutation[1] == 0)
    np.testing.assert_array_equal(grouped[0], marginal.per_permutation[0])
    with pytest.raises(ValueError, match="share their first pixel"):
        naive_group_importance(model, images, [np.array([a, b]), np.array([a])], n_perm=1)
