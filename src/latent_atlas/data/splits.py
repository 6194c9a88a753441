"""Train/test splits and per-split subsamples: the source's own split, a stratified fraction,
or whole speakers held out; a stratified subsample of each split.

Every draw takes a numpy Generator, so a split or a subsample is reproducible from its seed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from latent_atlas.data.store import DataError


def assign_split(
    labels: np.ndarray,
    own_split: np.ndarray | None,
    groups: np.ndarray | None,
    method: str | None,
    test_fraction: float,
    test_groups: Sequence[str] | None,
    random_state: np.random.Generator,
    key: str,
    source: str,
) -> np.ndarray:
    """'train' / 'test' for each sample.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,)
    own_split : ndarray of shape (n_samples,) of str, or None
        The source's own split; None when the source has none.
    groups : ndarray of shape (n_samples,) of str, or None
        Speaker of each sample (audio sources).
    method : {'source', 'fraction', 'speaker'} or None
        None = 'source' when the source has its own split, else 'fraction'.
    test_fraction : float
        Fraction of samples ('fraction', stratified by class) or, at least, of samples whose
        speakers are held out ('speaker', unless `test_groups` names them).
    test_groups : sequence of str or None
        Speakers held out ('speaker' only); None = speakers drawn at random.
    random_state : numpy Generator
    key, source : str
        Config key (`datasets.<name>.split`) and source kind, for messages.

    Returns
    -------
    split : ndarray of shape (n_samples,), '<U5'
    """
    if method is None:
        method = "source" if own_split is not None else "fraction"
    if method == "source":
        if own_split is None:
            raise DataError(
                f"{key}.method: source {source!r} has no train/test split of its own; "
                "use method 'fraction'" + (" or 'speaker'" if groups is not None else "")
            )
        return own_split.astype("<U5")
    if method == "fraction":
        return stratified_split(labels, test_fraction, random_state)
    if method == "speaker":
        if groups is None:
            raise DataError(
                f"{key}.method: 'speaker' needs a source with speakers (audio_digits), not {source!r}"
            )
        speakers = np.unique(groups)
        if test_groups is not None:
            unknown = sorted(set(map(str, test_groups)) - set(speakers))
            if unknown:
                raise DataError(
                    f"{key}.test_speakers: unknown speaker(s) {', '.join(unknown)}; "
                    f"speakers: {', '.join(speakers)}"
                )
            held_out = set(map(str, test_groups))
        else:
            held_out = _draw_speakers(groups, speakers, test_fraction, random_state)
        if len(held_out) in (0, len(speakers)):
            raise DataError(
                f"{key}: the speaker split needs at least one training and one test speaker "
                f"(speakers: {', '.join(speakers)})"
            )
        return np.where(np.isin(groups, sorted(held_out)), "test", "train").astype("<U5")
    raise DataError(f"{key}.method: unknown method {method!r}; expected source, fraction or speaker")


def _draw_speakers(
    groups: np.ndarray, speakers: np.ndarray, fraction: float, rng: np.random.Generator
) -> set[str]:
    """Speakers in a random order, taken until they hold at least `fraction` of the samples."""
    counts = {s: int((groups == s).sum()) for s in speakers}
    held, total = set(), 0
    for s in speakers[rng.permutation(len(speakers))]:
        if total >= fraction * len(groups) or len(held) == len(speakers) - 1:
            break
        held.add(str(s))
        total += counts[s]
    return held


def stratified_split(
    labels: np.ndarray, test_fraction: float, random_state: np.random.Generator
) -> np.ndarray:
    """Random train/test split with round(test_fraction * n_c) test samples of each class c.

    Returns a '<U5' array (n_samples,) of 'train' / 'test'.
    """
    split = np.full(len(labels), "train", dtype="<U5")
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_test = int(round(test_fraction * len(members)))
        split[random_state.permutation(members)[:n_test]] = "test"
    return split


def stratified_subsample(labels: np.ndarray, n: int | None, random_state: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most `n` samples, each class represented in proportion to its size.

    Each class's samples are shuffled and given the keys (rank + 0.5) / class size; the `n`
    smallest keys are kept, so every class gets its share up to one sample.
    """
    order = random_state.permutation(len(labels))
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    shuffled = labels[order]
    rank = np.empty(len(labels), np.float64)
    for c in np.unique(labels):
        at = np.flatnonzero(shuffled == c)
        rank[at] = (np.arange(len(at)) + 0.5) / len(at)
    return np.sort(order[np.argsort(rank, kind="stable")[:n]])
