"""Pixel groups (importance.groups), conditional permutations, and the statistical test of a
score (intervals over images and permutations, p-values, Benjamini-Hochberg discoveries)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import false_discovery_control

import torch
from torch import nn

from latent_atlas.importance.engine import model_stack, pixel_importance
from latent_atlas.importance.clusters import within_clusters
from latent_atlas.importance.groups import context_ring, on_grid, patch_groups, pixel_groups, superpixel_groups
from latent_atlas.importance.inference import benjamini_hochberg, declare, standard_error
from latent_atlas.importance.streams import permutation
from latent_atlas.importance.tables import gather_shards, groups_on_pixels, pixel_frame


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
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 6 * 6, 5), nn.Tanh()).eval()
    images = np.random.default_rng(0).random((30, 2, 6, 6), dtype=np.float32)
    pixels = [0, 7, 20, 35]
    want = pixel_importance(net, images, pixels, n_perm=3, seed=4, method="naive")
    got = pixel_importance(net, images, groups=[np.array([p]) for p in pixels], n_perm=3, seed=4, method="naive")
    for field in ("per_permutation", "importance", "ci_low", "ci_high", "se", "slope", "sign"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
    np.testing.assert_array_equal(got.pixels, pixels)
    # size-1 patches are the same layout
    assert [g.tolist() for g in patch_groups(6, 6, 1)] == [g.tolist() for g in pixel_groups(6, 6)]


def _dense_and_conv(c=1, size=12):
    torch.manual_seed(0)
    lin = nn.Linear(c * size * size, 20)
    rest = nn.Sequential(nn.ReLU(), nn.Linear(20, 5), nn.ReLU())

    def dense(t):
        return rest(lin(t.reshape(len(t), -1)))

    conv = nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(4 * (size // 2) ** 2, 8), nn.ReLU(),
                         nn.Linear(8, 3)).eval()
    conv.input_shape = (c, size, size)
    return dense, (lin, rest), conv, model_stack(conv, "x")[0]


LAYOUTS = {"patch 4": lambda x: patch_groups(12, 12, 4),
           "patch 5 stride 3 (overlapping, clipped)": lambda x: patch_groups(12, 12, 5, 3),
           "superpixels (not rectangles)": lambda x: superpixel_groups(x.mean(0), 10, 0.1)}


@pytest.mark.parametrize("conditional", [None, {"ring": 1, "clusters": 4}])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("c", [1, 3])
def test_every_path_equals_the_reference_loop_on_groups(layout, conditional, c):
    """Groups permuted jointly: the rows, rank-k, compiled-kernel and receptive-field paths give the
    reference loop's scores and standard errors, marginal and conditional, on dense and conv models."""
    x = np.random.default_rng(c).random((50, c, 12, 12)).astype(np.float32)
    x[:, :, 0, :] = 0.25  # a constant row: groups inside it score exactly 0
    groups = LAYOUTS[layout](x)
    dense, split, conv, stack = _dense_and_conv(c)
    kw = dict(groups=groups, n_perm=3, seed=5, conditional=conditional, batch_size=77)
    for fn, paths, extra in ((dense, ("rows", "rank1", "kernel"), {"split": split}),
                             (conv, ("rows", "local"), {"stack": stack})):
        ref = pixel_importance(fn, x, method="naive", **kw)
        assert ref.importance.max() > 0 and ref.se.max() > 0
        for path in paths:
            got = pixel_importance(fn, x, method=path, **kw, **extra)
            scale = ref.importance.max()
            np.testing.assert_allclose(got.per_permutation, ref.per_permutation, rtol=0, atol=1e-5 * scale,
                                       err_msg=path)
            np.testing.assert_allclose(got.se, ref.se, rtol=1e-4, atol=1e-7 * scale, err_msg=path)


def test_group_shards_are_invariant():
    """A block of groups computed alone gives the same bits as within all groups (permutations and
    context clusters are keyed by the group, not by its block)."""
    x = np.random.default_rng(3).random((40, 1, 12, 12)).astype(np.float32)
    dense, split, _, _ = _dense_and_conv()
    groups = patch_groups(12, 12, 3)
    for cond in (None, {"ring": 1, "clusters": 3}):
        whole = pixel_importance(dense, x, groups=groups, n_perm=2, seed=1, split=split, conditional=cond)
        parts = [pixel_importance(dense, x, groups=groups[a:b], n_perm=2, seed=1, split=split, conditional=cond)
                 for a, b in ((0, 5), (5, 11), (11, 16))]
        for field in ("per_permutation", "se", "slope"):
            np.testing.assert_array_equal(np.concatenate([getattr(p, field) for p in parts]), getattr(whole, field))


def test_two_identical_pixels_marginal_grouped_and_conditional():
    """Pixels a and b always equal (perfectly correlated); the model reads a only: z = 3 x_a; every
    other pixel is constant, so a's context is b alone.
    - marginal: a scores 9 mean_n (x_a[pi(n)] - x_a[n])^2 under a's permutation pi; b exactly 0;
    - the group {a, b}, permuted jointly with a's permutation (a is its first pixel), scores exactly
      a's marginal score;
    - conditional (images clustered by their context, b, into 16 k-means clusters): a is moved only
      among images whose b, hence whose a, is close, so its score falls to the within-cluster
      spread: 9 * 2 * (cluster width)^2 / 12 ~ 0.006, against 9 * 2 / 12 = 1.5 marginally for
      uniform values; test: below 1% of the marginal score. b still scores exactly 0."""
    rng = np.random.default_rng(1)
    n = 400
    images = np.zeros((n, 1, 4, 4), dtype=np.float32)
    a, b = 5, 10  # (1, 1) and (2, 2): b is in a's ring of width 1
    flat = images.reshape(n, 16)
    flat[:, a] = rng.random(n, dtype=np.float32)
    flat[:, b] = flat[:, a]

    def model(x):
        return 3 * x.reshape(len(x), -1)[:, a:a + 1]

    marginal = pixel_importance(model, images, [a, b], n_perm=2, seed=7, method="naive", device="cpu")
    grouped = pixel_importance(model, images, groups=[np.array([a, b])], n_perm=2, seed=7, method="naive",
                               device="cpu")
    cond = pixel_importance(model, images, [a, b], n_perm=2, seed=7, method="naive", device="cpu",
                            conditional={"ring": 1, "clusters": 16})
    xa = flat[:, a].astype(np.float64)
    for k in range(2):
        pi = permutation(7, a, k, n)
        assert marginal.per_permutation[0, k, 0] == pytest.approx(9 * np.mean((xa[pi] - xa) ** 2), rel=1e-6)
    assert np.all(marginal.per_permutation[1] == 0) and np.all(cond.per_permutation[1] == 0)
    np.testing.assert_array_equal(grouped.per_permutation[0], marginal.per_permutation[0])
    assert marginal.importance[0, 0] == pytest.approx(1.5, rel=0.15)
    assert 0 < cond.importance[0, 0] < 0.01 * marginal.importance[0, 0]
    with pytest.raises(ValueError, match="share their first pixel"):
        pixel_importance(model, images, groups=[np.array([a, b]), np.array([a])], n_perm=1)


def test_within_cluster_permutations_stay_in_their_cluster_and_are_uniform():
    from scipy.stats import chisquare

    labels = np.array([1, 0, 2, 1, 0, 2, 2, 1, 0, 2, 1, 2])  # cluster 0: images 1, 4, 8
    counts: dict[tuple, int] = {}
    for k in range(3000):
        out = within_clusters(permutation(0, 1, k, 12), labels)
        assert sorted(out) == list(range(12)) and np.array_equal(labels[out], labels)
        key = tuple(out[labels == 0])
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 6 and chisquare(list(counts.values())).pvalue > 1e-3  # all 3! orders, uniformly
    one = np.zeros(12, dtype=np.int64)
    assert np.array_equal(within_clusters(permutation(0, 1, 0, 12), one), permutation(0, 1, 0, 12))
    assert context_ring(np.array([5]), 4, 4, 1).tolist() == [0, 1, 2, 4, 6, 8, 9, 10]


def _linear_model(weights):
    lin = nn.Linear(weights.shape[1], weights.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(weights))
    return lambda t: lin(t.reshape(len(t), -1)), (lin, nn.Identity())


def test_standard_error_matches_a_bootstrap_over_images():
    """The closed-form standard error (inference) against a resampling bootstrap of the same scores
    over images: 2,000 replicates, each image drawn m times weights the pairs it is in by m."""
    rng = np.random.default_rng(0)
    n, n_perm = 300, 8
    x = rng.normal(size=(n, 1, 2, 2)).astype(np.float32) * np.array([1, 2, 0.5, 1], np.float32).reshape(1, 1, 2, 2)
    fn, split = _linear_model(rng.normal(size=(3, 4)))
    res = pixel_importance(fn, x, n_perm=n_perm, seed=2, split=split, method="kernel")
    flat = x.reshape(n, 4).astype(np.float64)
    w = split[0].weight.detach().double().numpy()
    boot = np.zeros((2000, 4, 3))
    for p in range(4):
        perms = [permutation(2, p, k, n) for k in range(n_perm)]
        terms = np.stack([(flat[pi, p] - flat[:, p]) ** 2 for pi in perms])  # (K, N), times W^2 per output
        for r in range(2000):
            m = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
            weight = np.stack([m * m[pi] for pi in perms])
            boot[r, p] = (weight * terms).sum() / weight.sum() * w[:, p] ** 2
    ratio = res.se / boot.std(axis=0)
    assert np.all((ratio > 0.85) & (ratio < 1.25)), ratio


def test_intervals_cover_the_closed_form_and_fdr_is_controlled():
    """A linear encoder z = W x on independent Gaussian pixels: the importance of pixel i for output
    j is 2 W_ji^2 Var(x_i) exactly. Over 200 seeded repeats (new images and permutations each), the
    95% intervals over images and permutations cover it for >= 93% of (pixel, output) entries (the
    t interval over permutations alone covers far fewer); with min_effect = 0.1, pixels whose true
    importance is below delta (0.1 x the map's largest) are false discoveries when declared, and
    their share among the declared, averaged over repeats, is <= 0.05 + 2 Monte Carlo errors; the
    pixels the model ignores score exactly 0 and are never declared."""
    rng = np.random.default_rng(0)
    n, side, d = 300, 4, 3
    sd = rng.uniform(0.5, 1.5, side * side)
    weights = rng.normal(size=(d, side * side))
    weights[:, :3] = 0.0  # ignored pixels
    weights[:, 3:7] *= 0.15  # true importance far below delta
    fn, split = _linear_model(weights)
    truth = 2 * weights.T ** 2 * sd[:, None] ** 2  # (P, d)
    delta_true = 0.1 * truth.max(axis=0)
    covered, t_covered, fdp = [], [], []
    for r in range(200):
        x = (np.random.default_rng(100 + r).normal(size=(n, side * side)) * sd).astype(np.float32)
        res = pixel_importance(fn, x.reshape(n, 1, side, side), n_perm=4, seed=r, split=split, method="kernel")
        used = truth > 0
        covered.append(((res.interval_low <= truth) & (truth <= res.interval_high))[used])
        t_covered.append(((res.ci_low <= truth) & (truth <= res.ci_high))[used])
        _, p, declared = declare(res.importance, res.se, min_effect=0.1, fdr=0.05)
        assert np.all(res.importance[:3] == 0) and np.all(res.se[:3] == 0) and not declared[:3].any()
        false = declared & (truth <= delta_true)
        fdp.append(false.sum() / max(declared.sum(), 1))
    coverage, t_coverage = np.mean(covered), np.mean(t_covered)
    assert coverage >= 0.93, coverage
    assert t_coverage < coverage - 0.1, (t_coverage, coverage)
    margin = 2 * np.std(fdp) / np.sqrt(len(fdp))
    assert np.mean(fdp) <= 0.05 + margin, (np.mean(fdp), margin)


def test_gather_declares_over_the_whole_table_and_draws_groups_on_pixels():
    """Shards of groups gather into a group table with p-values and discoveries, drawn on the
    pixel grid: a partition exactly, overlapping patches as the mean of their groups."""
    x = np.random.default_rng(0).random((40, 1, 6, 6)).astype(np.float32)
    dense, split, _, _ = _dense_and_conv(size=6)
    for groups in (patch_groups(6, 6, 3), patch_groups(6, 6, 4, 2)):
        shards = [pixel_frame(pixel_importance(dense, x, groups=groups[a:b], n_perm=2, split=split), "latent",
                              group_ids=np.arange(a, b)) for a, b in ((0, 2), (2, len(groups)))]
        table, delta = gather_shards(shards, "latent", min_effect=0.05, fdr=0.05)
        assert table["group"].tolist() == np.repeat(np.arange(len(groups)), 5).tolist()
        imp = table["importance"].to_numpy().reshape(-1, 5)
        np.testing.assert_allclose(delta, 0.05 * imp.max(axis=0))
        assert table["significant"].dtype == bool and table["p_value"].between(0, 1).all()
        pixels = groups_on_pixels(table, groups, 6)
        assert len(pixels) == 36 * 5 and pixels["pixel"].tolist() == np.repeat(np.arange(36), 5).tolist()
        grid = on_grid(imp, groups, 6, 6)
        np.testing.assert_allclose(pixels["importance"].to_numpy().reshape(6, 6, 5), grid)
        sig = table["significant"].to_numpy().reshape(-1, 5)
        want = np.array([[sig[[g for g in range(len(groups)) if p in groups[g]], j].any() for j in range(5)]
                         for p in range(36)])
        np.testing.assert_array_equal(pixels["significant"].to_numpy().reshape(36, 5), want)


def test_context_clusters_match_scikit_learns_kmeans():
    """The compiled k-means (importance.clusters) against scikit-learn's KMeans: on separated blobs
    the same partition; on one of Fashion-like structured data a within-cluster sum of squares no
    worse than 1.1x KMeans's (10 restarts); groups with a constant context are one cluster."""
    from sklearn.cluster import KMeans

    from latent_atlas.importance.clusters import context_clusters

    rng = np.random.default_rng(0)
    n, side = 2000, 5
    centre = rng.integers(0, 4, n)
    images = np.zeros((n, 1, side, side), dtype=np.float32)
    flat = images.reshape(n, side * side)
    ring = context_ring(np.array([12]), side, side, 1)  # the 8 neighbours of the centre pixel
    flat[:, ring] = centre[:, None] * 3.0 + rng.normal(scale=0.1, size=(n, len(ring)))
    (labels,) = context_clusters(images.reshape(n, 1, -1), [np.array([12])], side, side, ring=1, n_clusters=4,
                                 seed=0)
    assert len(np.unique(labels)) == 4
    for c in range(4):  # one cluster per blob
        assert len(np.unique(labels[centre == c])) == 1
    # structured data: sums of squares against scikit-learn's on the same features
    flat[:] = rng.random((n, side * side)) ** 3
    flat[:, ring] += np.linspace(0, 1, n)[:, None]
    (labels,) = context_clusters(images.reshape(n, 1, -1), [np.array([12])], side, side, ring=1, n_clusters=8,
                                 seed=1)
    feats = flat[:, ring].astype(np.float64)

    def sse(lab):
        return sum(((feats[lab == c] - feats[lab == c].mean(axis=0)) ** 2).sum() for c in np.unique(lab))

    reference = KMeans(8, n_init=10, random_state=0).fit(feats)
    assert sse(labels) <= 1.1 * reference.inertia_, (sse(labels), reference.inertia_)
    # a constant context (the border group's ring is all zeros) is one cluster
    images[:] = 0
    flat[:, 12] = rng.random(n)
    (labels,) = context_clusters(images.reshape(n, 1, -1), [np.array([0])], side, side, ring=1, n_clusters=8, seed=0)
    assert np.all(labels == 0)
