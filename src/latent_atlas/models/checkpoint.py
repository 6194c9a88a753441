"""The resume state of training: `<checkpoint_dir>/last.pt` and the snapshots taken so far
(`epoch_<e>.pt`), the only files that training writes itself.

After every epoch `train_model` saves the weights, the optimiser, both generator states and the
log rows so far; a rerun after a killed job resumes from them. The file records a fingerprint of
the model, settings, seed, training data and thread count, so a checkpoint left by another config
is ignored. Snapshots (`train.snapshots`) are written beside it as they are taken, so a resumed
job keeps those it took; the train job copies them into its `snapshots` output at the end.

torch is imported by the functions that use it: the job that copies a snapshot out of the train
job's output (`jobs.snapshot_model`) needs only its file name.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from latent_atlas.data.store import float_chunks
from latent_atlas.io import atomic_path, config_hash
from latent_atlas.runtime import log

if TYPE_CHECKING:
    import torch
    from torch import nn

CHECKPOINT_NAME = "last.pt"
SNAPSHOT_NAME = "epoch_{epoch}.pt"


def path_in(checkpoint_dir: str | os.PathLike) -> Path:
    return Path(checkpoint_dir) / CHECKPOINT_NAME


def snapshot_path(folder: str | os.PathLike, epoch: int) -> Path:
    """The file of the snapshot after epoch `epoch` (1-based) in `folder`: the checkpoint folder
    while training, the train job's `snapshots` output after it."""
    return Path(folder) / SNAPSHOT_NAME.format(epoch=int(epoch))


def remove_snapshots(checkpoint_dir: str | os.PathLike) -> None:
    """Delete the snapshots in the checkpoint folder (a fresh start drops those of a killed run of
    another config)."""
    for path in Path(checkpoint_dir).glob(SNAPSHOT_NAME.format(epoch="*")):
        path.unlink()


def fingerprint(model: nn.Module, settings: Mapping[str, Any], seed: int, images,
                labels: torch.Tensor, train_idx: np.ndarray) -> str:
    """What a checkpoint must match to be resumed: model, settings, seed, training data and torch's
    thread count (the float sums of an epoch depend on it, so epochs run with another count would
    not end in the weights an uninterrupted run gives).

    images : (N, C, H, W), an ndarray or the store's `StoredImages`; hashed as float32 a chunk of
    rows at a time (the same digest as the whole array's bytes, without holding it).
    """
    import torch

    h = hashlib.sha256()
    for chunk in float_chunks(images):
        h.update(np.ascontiguousarray(chunk).tobytes())
    for arr in (labels.numpy(), train_idx):
        h.update(np.ascontiguousarray(arr).tobytes())
    from latent_atlas.models.networks import stored_params

    return config_hash({"arch": model.arch, "params": stored_params(model), "input_shape": model.input_shape,
                        "n_classes": model.n_classes, "settings": settings, "seed": seed,
                        "data": h.hexdigest(), "threads": torch.get_num_threads()})


def read(path: Path, expected: str) -> dict | None:
    """The checkpoint at `path` if it exists and has the fingerprint `expected`, else None."""
    if not path.exists():
        return None
    import torch

    try:
        # on CPU: generator states must be CPU tensors; load_state_dict moves the rest
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated file cannot happen (atomic writes), a foreign one can
        log.warning("ignoring unreadable checkpoint %s (%s)", path, err)
        return None
    if ckpt.get("fingerprint") != expected:
        log.warning("ignoring checkpoint %s: it belongs to a different config or data "
                    "(fingerprint %s, expected %s)", path, ckpt.get("fingerprint"), expected)
        return None
    return ckpt


def write(path: Path, state: Mapping[str, Any]) -> None:
    """Save `state` (fingerprint, epoch, model, optimizer, order_rng, noise_rng, log) atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)


def remove(checkpoint_dir: str | os.PathLike) -> None:
    """Delete the checkpoint and the snapshots once the model's files are written, and their
    folder when left empty."""
    path = path_in(checkpoint_dir)
    if path.exists():
        path.unlink()
    remove_snapshots(checkpoint_dir)
    if path.parent.is_dir() and not any(path.parent.iterdir()):
        path.parent.rmdir()
