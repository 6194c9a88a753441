"""openTSNE vs scikit-learn's TSNE on the same latents, and openTSNE alone at 165k points.

Prints a markdown table (stdout) of wall times and their ratio. Both libraries run with the same
thread count, perplexity, early exaggeration, iteration counts and PCA initialisation on the
same rows, in one process one after the other (the machine is shared: compare the ratio, not
absolute times across runs).

    python benchmarks/tsne.py                 # 10k and 60k (both libraries), 165k (openTSNE)
    python benchmarks/tsne.py --quick         # 1k and 3k (both), 10k (openTSNE): a smoke check
    python benchmarks/tsne.py --latents results/fashion_mnist/conv_ae/latents.parquet

Latents: the given latents.parquet (rows drawn with a seed; sizes above its row count use all
rows), else the default run's conv AE latents if they exist, else synthetic clustered latents
(32-D, 10 Gaussian clusters). The 165k openTSNE run always uses synthetic latents.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from latent_atlas.projections import subsample_indices, tsne_fit  # noqa: E402

DEFAULT_LATENTS = ROOT / "results" / "fashion_mnist" / "conv_ae" / "latents.parquet"
SETTINGS = {"perplexity": 30.0, "early_exaggeration": 12.0, "early_exaggeration_iter": 250, "n_iter": 500}


def synthetic_latents(n: int, d: int = 32, n_clusters: int = 10, random_state: int = 0) -> np.ndarray:
    """Clustered latents of shape (n, d): Gaussian blobs of different widths around random centres."""
    rng = np.random.default_rng(random_state)
    centres = rng.normal(scale=3.0, size=(n_clusters, d))
    widths = rng.uniform(0.5, 1.5, size=n_clusters)
    labels = rng.integers(0, n_clusters, size=n)
    return (centres[labels] + widths[labels, None] * rng.standard_normal((n, d))).astype(np.float32)


def load_latents(path: Path | None) -> tuple[np.ndarray, str]:
    path = path or (DEFAULT_LATENTS if DEFAULT_LATENTS.exists() else None)
    if path is None:
        return synthetic_latents(60_000), "synthetic (60,000 x 32)"
    import pandas as pd

    df = pd.read_parquet(path)
    cols = sorted((c for c in df.columns if c[0] == "z" and c[1:].isdigit()), key=lambda c: int(c[1:]))
    return df[cols].to_numpy(np.float32), f"{path} ({len(df):,} x {len(cols)})"


def time_opentsne(X: np.ndarray, threads: int) -> float:
    t = time.perf_counter()
    tsne_fit(X, random_state=0, n_jobs=threads, **SETTINGS)
    return time.perf_counter() - t


def time_sklearn(X: np.ndarray, threads: int) -> float:
    from sklearn.manifold import TSNE

    t = time.perf_counter()
    TSNE(n_components=2, perplexity=SETTINGS["perplexity"], early_exaggeration=SETTINGS["early_exaggeration"],
         max_iter=SETTINGS["early_exaggeration_iter"] + SETTINGS["n_iter"], learning_rate="auto", init="pca",
         random_state=0, n_jobs=threads).fit_transform(X)
    return time.perf_counter() - t


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    parser.add_argument("--latents", type=Path, help="latents.parquet to draw the rows from")
    parser.add_argument("--threads", type=int, default=2, help="threads of both libraries (default 2)")
    args = parser.parse_args(argv)
    both, alone = ([1_000, 3_000], 10_000) if args.quick else ([10_000, 60_000], 165_000)

    Z, source = load_latents(args.latents)
    rows = []
    for n in both:
        X = Z[subsample_indices(len(Z), n, random_state=0)]
        t_open = time_opentsne(X, args.threads)
        t_sk = time_sklearn(X, args.threads)
        rows.append((f"{len(X):,}", f"{t_open:.1f}", f"{t_sk:.1f}", f"{t_sk / t_open:.1f}x"))
        print(f"n={len(X)}: openTSNE {t_open:.1f} s, scikit-learn {t_sk:.1f} s", file=sys.stderr)
    t_big = time_opentsne(synthetic_latents(alone), args.threads)
    rows.append((f"{alone:,} (synthetic)", f"{t_big:.1f}", "not run", ""))

    print(f"Latents: {source}; {args.threads} threads each; perplexity {SETTINGS['perplexity']:g}, "
          f"early exaggeration {SETTINGS['early_exaggeration']:g} for {SETTINGS['early_exaggeration_iter']} "
          f"iterations, then {SETTINGS['n_iter']} iterations (scikit-learn: max_iter "
          f"{SETTINGS['early_exaggeration_iter'] + SETTINGS['n_iter']}), PCA initialisation.\n")
    print("| points | openTSNE (s) | scikit-learn TSNE (s) | scikit-learn / openTSNE |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
