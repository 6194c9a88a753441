"""The class options of a dataset: name the source's labels, fold labels into others, keep and
renumber classes."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from latent_atlas.data.store import DataError


def class_names_option(source_names: Sequence[str], names: Sequence[Any] | None, key: str) -> list[str]:
    """The names of the source labels 0..K-1: `names` (option `class_names`) if given, else the source's."""
    if names is None:
        return list(source_names)
    if len(names) != len(source_names):
        raise DataError(
            f"{key}: the source has {len(source_names)} labels "
            f"(0..{len(source_names) - 1}), but {len(names)} names were given"
        )
    return [str(n) for n in names]


def fold_labels(labels: np.ndarray, mapping: Mapping[Any, int], n_classes: int, key: str) -> np.ndarray:
    """Relabel samples of source label `a` as `mapping[a]` (e.g. EMNIST lowercase a -> uppercase A).

    Keys may be ints or strings of ints (YAML / JSON object keys). Returns a new (n,) int64 array.
    """
    out = labels.copy()
    for src_label, dst_label in mapping.items():
        try:
            a, b = int(src_label), int(dst_label)
        except (TypeError, ValueError):
            raise DataError(
                f"{key}: keys and values must be integer labels, got {src_label!r}: {dst_label!r}"
            ) from None
        for lab in (a, b):
            if not 0 <= lab < n_classes:
                raise DataError(f"{key}: label {lab} is not a source label (0..{n_classes - 1})")
        out[labels == a] = b
    return out


def select_classes(
    labels: np.ndarray, class_names: Sequence[str], classes: Sequence[Any] | None, key: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Keep the listed classes and renumber them 0..k-1 in the given order.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,), int
        Source labels (after folding).
    class_names : sequence of str
        Names of the source labels 0..K-1.
    classes : sequence of str or int, or None
        Class names or source labels to keep. None keeps every class that has samples.
    key : str
        Config key for messages (`datasets.<name>.classes`).

    Returns
    -------
    keep : ndarray of shape (n_samples,), bool
    new_labels : ndarray of shape (n_kept,), int64
    new_names : list of str
    """
    if classes is None:
        wanted = [int(c) for c in np.unique(labels)]
    else:
        wanted = []
        for c in classes:
            if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
                if not 0 <= c < len(class_names):
                    raise DataError(
                        f"{key}: label {c} is out of range; the source's labels are "
                        f"0..{len(class_names) - 1} ({', '.join(class_names)})"
                    )
                wanted.append(int(c))
            elif str(c) in class_names:
                wanted.append(list(class_names).index(str(c)))
            else:
                raise DataError(f"{key}: unknown class {c!r}; valid names: {', '.join(class_names)}")
        if len(set(wanted)) != len(wanted):
            raise DataError(f"{key}: a class is listed twice: {list(classes)}")
        empty = [class_names[w] for w in wanted if not np.any(labels == w)]
        if empty:
            raise DataError(
                f"{key}: no samples of class {', '.join(map(repr, empty))} "
                "(folded into another class by fold_labels?)"
            )
    lookup = np.full(len(class_names), -1, np.int64)
    lookup[wanted] = np.arange(len(wanted))
    new = lookup[labels]
    keep = new >= 0
    return keep, new[keep], [class_names[w] for w in wanted]
