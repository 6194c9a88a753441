"""The resume state of training: `<checkpoint_dir>/last.pt`, the only file that training writes itself.

After every epoch `train_model` saves the weights, the optimiser, both generator states and the
log rows so far; a rerun after a killed job resumes from them. The file records a fingerprint of
the model, settings, seed, training data and thread count, so a checkpoint left by another config
is ignored.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from latent_atlas.data.store import float_chunks
from latent_atlas.io import atomic_path, config_hash
from latent_atlas.runtime import log

CHECKPOINT_NAME = "last.pt"


def path_in(checkpoint_dir: str | os.PathLike) -> Path:
    return Path(checkpoint_dir) / CHECKPOINT_NAME


def fingerprint(model: nn.Module, settings: Mapping[str, Any], seed: int, images,
                labels: torch.Tensor, train_idx: np.ndarray) -> str:
    """What a checkpoint must match to be resumed: model, settings, seed, training data and torch's
    thread count (the float sums of an epoch depend on it, so epochs run with another count would
    not end in the weights an uninterrupted run gives).

    images : (N, C, H, W), an ndarray or the store's `StoredImages`; hashed as float32 a chunk of
    rows at a time (the same digest as the whole array's bytes, without holding it).
    """
    h = hashlib.sha256()
    for chunk in float_chunks(images):
        h.update(np.ascontiguousarray(chunk).tobytes())
    for arr in (labels.numpy(), train_idx):
        h.update(np.ascontiguousarray(arr).tobytes())
    return config_hash({"arch": model.arch, "params": model.params, "input_shape": model.input_shape,
                        "n_classes": model.n_classes, "settings": settings, "seed": seed,
                        "data": h.hexdigest(), "threads": torch.get_num_threads()})


def read(path: Path, expected: str) -> dict | None:
    """The checkpoint at `path` if it exists and has the fingerprint `expected`, else None."""
    if not path.exists():
        return None
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
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)


def remove(checkpoint_dir: str | os.PathLike) -> None:
    """Delete the checkpoint once the model's files are written, and its folder when left empty."""
    path = path_in(checkpoint_dir)
    if path.exists():
        path.unlink()
    if path.parent.is_dir() and not any(path.parent.iterdir()):
        path.parent.rmdir()
