"""Compare two results trees byte for byte: every Parquet, NPZ, figure, HTML, JSON and model file.

    python scripts/compare_results.py RESULTS_A RESULTS_B

Logs and benchmark files (times, hosts) are left out, and so is the `seconds` column of each
train_log.tsv (wall time per epoch; every other column is compared). Prints each file that differs or exists on
one side only, and exits 1 if any does: a refactor must keep every output byte.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

SKIPPED = ("logs", "benchmarks")


def content(path: Path) -> bytes:
    """The bytes compared: the file's, without the wall-time column of a training log."""
    data = path.read_bytes()
    if path.name != "train_log.tsv":
        return data
    rows = [line.split("\t") for line in data.decode().splitlines()]
    drop = rows[0].index("seconds") if rows and "seconds" in rows[0] else None
    return "\n".join("\t".join(c for i, c in enumerate(row) if i != drop) for row in rows).encode()


def digests(root: Path) -> dict[str, str]:
    """sha256 of every result file under `root`, keyed by its path relative to `root`."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and rel.parts[0] not in SKIPPED and ".snakemake" not in rel.parts:
            out[rel.as_posix()] = hashlib.sha256(content(path)).hexdigest()
    return out


def compare(a: Path, b: Path) -> list[str]:
    """One line per file that differs between the trees or exists in only one of them."""
    da, db = digests(a), digests(b)
    lines = [f"only in {a}: {p}" for p in sorted(set(da) - set(db))]
    lines += [f"only in {b}: {p}" for p in sorted(set(db) - set(da))]
    lines += [f"differs: {p}" for p in sorted(set(da) & set(db)) if da[p] != db[p]]
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    a, b = map(Path, argv)
    for root in (a, b):
        if not root.is_dir():
            print(f"not a folder: {root}", file=sys.stderr)
            return 2
    lines = compare(a, b)
    print("\n".join(lines) if lines else f"identical: {len(digests(a))} files")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
