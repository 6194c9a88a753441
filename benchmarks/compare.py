"""Every compare measure for one pair of 70,000-sample latents, and the neighbour search against
the exact one, in one process.

Synthetic latents of a realistic shape: A (256-D) has 10 classes, each a Gaussian centre with a
16-D factor structure mapped into the 256 dimensions, plus isotropic noise; B (128-D) is tanh of
a random orthonormal projection of A, plus noise: another model of the same samples, related to
A nonlinearly, not by a rotation. Measured side by side:

- pynndescent's numba compilation (its first call in a process), on its own;
- `compare.measures.pair_measures(A, B, ...)`: each measure's seconds (the module's functions
  wrapped with a timer) and the total;
- the recall of the k-NN search it used, against the exact search, on 2,000 query points of
  each space;
- exact vs NN-descent on a 10,000-point subset of A (seconds, ratio, recall), and the exact
  search of all points extrapolated from the 2,000 queries (its time grows as n^2).

    python benchmarks/compare.py            # 70,000 points
    python benchmarks/compare.py --quick    # 5,000 points: a smoke check
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from latent_atlas.atlas import neighbours  # noqa: E402
from latent_atlas.compare import measures  # noqa: E402

# Names of the repeated calls pair_measures makes, in its order.
CALLS = {"nearest_neighbours": ["k-NN search A", "k-NN search B"],
         "linear_cka": ["linear CKA (debiased)", "linear CKA (biased)"],
         "rbf_cka": ["RBF CKA"], "procrustes_disparity": ["Procrustes"], "svcca": ["SVCCA"],
         "linear_probe_r2": ["ridge probe A->B", "ridge probe B->A"],
         "class_probe_accuracy": ["class probe A", "class probe B"]}


def synthetic_pair(n: int, random_state: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (n, 256) and B (n, 128) float32 latents of the same samples, and their labels (n,)."""
    rng = np.random.default_rng(random_state)
    labels = rng.integers(0, 10, n)
    factors = rng.normal(size=(n, 16)) @ rng.normal(size=(16, 256)) * 0.5
    a = rng.normal(scale=0.35, size=(10, 256))[labels] + factors + rng.normal(size=(n, 256))
    projection = np.linalg.qr(rng.normal(size=(256, 128)))[0]
    b = np.tanh(a @ projection / 4.0) + rng.normal(scale=0.1, size=(n, 128))
    return a.astype(np.float32), b.astype(np.float32), labels


def timed_calls(results: dict) -> None:
    """Wrap the measures' module functions so that each call's seconds land in `results`."""
    originals = {name: getattr(measures, name) for name in CALLS}
    calls = {name: iter(labels) for name, labels in CALLS.items()}

    def wrap(name):
        @functools.wraps(originals[name])
        def timed(*args, **kwargs):
            t = time.perf_counter()
            out = originals[name](*args, **kwargs)
            results[next(calls[name])] = (time.perf_counter() - t, out)
            return out
        return timed

    for name in CALLS:
        setattr(measures, name, wrap(name))


def exact_neighbours_of(X: np.ndarray, queries: np.ndarray, k: int) -> tuple[list[set], float]:
    """Each query's k nearest other points by exact search (sets), and the seconds it took."""
    from sklearn.neighbors import NearestNeighbors

    t = time.perf_counter()
    idx = NearestNeighbors(n_neighbors=k + 1).fit(np.asarray(X, np.float64)).kneighbors(
        np.asarray(X[queries], np.float64), return_distance=False)
    seconds = time.perf_counter() - t
    return [set(row[row != q][:k]) for q, row in zip(queries, idx)], seconds


def recall(found: np.ndarray, exact: list[set], queries: np.ndarray) -> float:
    k = found.shape[1]
    return float(np.mean([len(set(found[q]) & truth) / k for q, truth in zip(queries, exact)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=70_000)
    parser.add_argument("--quick", action="store_true", help="5,000 points: a smoke check")
    parser.add_argument("--threads", type=int, default=2, help="BLAS / OpenMP threads (default 2)")
    parser.add_argument("--k", type=int, default=10, help="neighbours of the k-NN overlap")
    parser.add_argument("--rbf-max-samples", type=int, default=5_000)
    parser.add_argument("--svcca-k", type=int, default=32)
    parser.add_argument("--cv-folds", type=int, default=5)
    args = parser.parse_args()
    n = 5_000 if args.quick else args.n
    subset = min(10_000, n)
    rng = np.random.default_rng(1)
    a, b, labels = synthetic_pair(n)
    rows = {"points": f"{n:,}", "A, B": f"{a.shape[1]}-D, {b.shape[1]}-D float32",
            "settings": f"ks=({args.k},), rbf_max_samples={args.rbf_max_samples}, svcca_k={args.svcca_k}, "
                        f"cv_folds={args.cv_folds}, {args.threads} threads"}
    with threadpool_limits(args.threads):
        t = time.perf_counter()
        neighbours.nearest_neighbours(a[:2000], args.k, search="nndescent", random_state=0)
        compile_seconds = time.perf_counter() - t
        rows["pynndescent numba compile + 2,000-point search, first call (s)"] = compile_seconds

        results: dict = {}
        timed_calls(results)
        t = time.perf_counter()
        values, _ = measures.pair_measures(a, b, labels, ks=(args.k,), rbf_max_samples=args.rbf_max_samples,
                                           svcca_k=args.svcca_k, cv_folds=args.cv_folds, random_state=0)
        total = time.perf_counter() - t
        for label, (seconds, _) in results.items():
            rows[f"{label} (s)"] = seconds
        rows["rest: overlaps, Jaccard, frame (s)"] = total - sum(s for s, _ in results.values())
        rows["**pair_measures total (s)**"] = total
        rows["total with the numba compile (s)"] = total + compile_seconds
        for name, value in values.items():
            rows[f"value: {name}"] = value

        queries = rng.choice(n, size=min(2000, n), replace=False)
        for space, X in (("A", a), ("B", b)):
            exact, seconds = exact_neighbours_of(X, queries, args.k)
            rows[f"k-NN search {space}: recall@{args.k} vs exact, {len(queries):,} queries"] = recall(
                results[f"k-NN search {space}"][1][0], exact, queries)
            if space == "A":
                rows[f"exact search A, {len(queries):,} queries (s)"] = seconds
                rows[f"exact search A, all {n:,} points, extrapolated (s)"] = seconds * n / len(queries)

        sub = a[rng.choice(n, size=subset, replace=False)]
        t = time.perf_counter()
        exact_idx = neighbours.nearest_neighbours(sub, args.k, search="exact")[0]
        exact_seconds = time.perf_counter() - t
        t = time.perf_counter()
        fast_idx = neighbours.nearest_neighbours(sub, args.k, search="nndescent", random_state=0)[0]
        fast_seconds = time.perf_counter() - t
        rows[f"{subset:,}-point subset of A: exact (s)"] = exact_seconds
        rows[f"{subset:,}-point subset of A: NN-descent (s)"] = fast_seconds
        rows[f"{subset:,}-point subset of A: exact / NN-descent"] = exact_seconds / fast_seconds
        rows[f"{subset:,}-point subset of A: NN-descent recall@{args.k}, all points"] = float(
            neighbours.overlap(fast_idx, exact_idx).mean() / args.k)
    print("| measure | value |\n|---|---:|")
    for key, value in rows.items():
        print(f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |")


if __name__ == "__main__":
    main()
