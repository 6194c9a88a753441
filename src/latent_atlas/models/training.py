"""Deterministic, resumable training of the models in `latent_atlas.models.networks`.

The same data, settings and seed give bitwise-identical weights (on the same software and
device type): the initial weights come from torch's generator seeded with `seed`, the batch
order from a separate seeded generator, VAE noise from a third, and torch runs its
deterministic algorithms with a fixed thread count (`runtime.set_determinism`).
With `train.flush_denormals` denormal floats count as zero while training (faster on CPUs
when Adam's moments decay into them; slightly different, still deterministic, weights).

After every epoch a checkpoint (weights, optimiser, generator states, log rows) is written to
`checkpoint_dir` (`models.checkpoint`). A rerun after a killed job resumes from it and ends with
the same weights as an uninterrupted run. After each epoch `train.snapshots` lists, the model's
record (`networks.save_model`) is written there too, before that epoch's checkpoint: a job killed
in between redoes the epoch and takes the snapshot again, and a resumed job keeps the snapshots
it took. Taking one reads the weights only, so training is the same with or without them.
Settings and their defaults: the schema's `$defs/train`.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from latent_atlas.schema import with_defaults
from latent_atlas.devices import default_device
from latent_atlas.models import checkpoint
from latent_atlas.models.networks import count_parameters, save_model
from latent_atlas.runtime import log


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message says where and what to try."""


@dataclass
class TrainResult:
    model: nn.Module
    log: pd.DataFrame  # one row per epoch
    metrics: dict[str, Any]
    snapshots: dict[int, Path] = field(default_factory=dict)  # epoch (1-based) -> its model record


def train_settings(train: Mapping[str, Any] | None) -> dict[str, Any]:
    """`train` with the schema's defaults filled in (`max_train_samples` and `flush_denormals` have
    none: absent means every sample, and no flushing); unknown keys are errors."""
    return with_defaults(train, "#/$defs/train", "train")


def lr_at(epoch: int, settings: Mapping[str, Any]) -> float:
    """Learning rate of `epoch` (0-based): the last `lr_schedule` entry with epoch <= it, else `lr`."""
    lr = float(settings["lr"])
    for step in sorted(settings["lr_schedule"], key=lambda s: s["epoch"]):
        if step["epoch"] <= epoch:
            lr = float(step["lr"])
    return lr


def split_train_validation(train_indices: np.ndarray, fraction: float, seed: int,
                           max_train_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Carve a seeded validation set out of the training samples.

    Parameters
    ----------
    train_indices : int ndarray of shape (n,), row indices of the dataset's train split.
    fraction : share of them held out for validation (0 = none).
    seed : seed of the split.
    max_train_samples : keep at most this many (seeded) training samples.

    Returns
    -------
    train, validation : sorted int64 index arrays.
    """
    train_indices = np.asarray(train_indices, dtype=np.int64)
    perm = np.random.default_rng([seed, 1]).permutation(train_indices)
    n_val = int(round(fraction * len(perm)))
    if fraction > 0 and len(perm) > 1:
        n_val = max(n_val, 1)
    val, train = perm[:n_val], perm[n_val:]
    if max_train_samples is not None:
        train = train[: int(max_train_samples)]
    if len(train) == 0:
        raise ValueError(f"no training samples left after holding out validation_fraction={fraction}")
    return np.sort(train), np.sort(val)


def make_optimizer(model: nn.Module, settings: Mapping[str, Any]) -> torch.optim.Optimizer:
    name = settings["optimizer"]
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=settings["lr"], momentum=settings["momentum"],
                               weight_decay=settings["weight_decay"])
    raise ValueError(f"train.optimizer: unknown optimizer {name!r}; use 'adam' or 'sgd'")


def batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, beta: float,
               noise: torch.Generator | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training objective of one batch and the per-batch sums that evaluation reports.

    Classifiers: mean cross-entropy. Autoencoders with output sigmoid: binary cross-entropy of the
    reconstruction (logits, BCEWithLogits), mean per pixel; with output linear: the Gaussian
    negative log-likelihood of unit variance without its constant, 0.5 * squared error, mean per
    pixel. VAEs: (summed reconstruction term + beta * KL) per sample, divided by the pixel count so
    it is on the AE's scale; `noise` draws the reparameterisation noise, None decodes the posterior
    mean (evaluation).

    Returns the loss and sums over the batch: 'loss', and 'correct' (classifiers) or
    `pixel_terms(model)` and 'kl' (autoencoders; bce and mse summed over pixels, kl over latent
    dimensions).
    """
    b = x.shape[0]
    if model.kind == "classifier":
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"loss": loss.detach() * b, "correct": (logits.argmax(1) == y).sum()}
    d = x[0].numel()
    if getattr(model, "variational", False):
        mean, logvar = model.encode_distribution(x)
        z = mean
        if noise is not None:
            eps = torch.randn(mean.shape, generator=noise, device=mean.device, dtype=mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * eps
        kl = -0.5 * torch.sum(1 + logvar - mean.pow(2) - logvar.exp())
    else:
        z = model.encode(x)
        kl = torch.zeros((), device=x.device)
    logits = model.decode_logits(z)
    if model.output == "linear":
        squared = (logits - x).pow(2).sum()
        loss = (0.5 * squared + beta * kl) / (b * d)
        return loss, {"loss": loss.detach() * b, "mse": squared.detach(), "kl": kl.detach()}
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    loss = (bce + beta * kl) / (b * d)
    with torch.no_grad():
        mse = (torch.sigmoid(logits) - x).pow(2).sum()
    return loss, {"loss": loss.detach() * b, "bce": bce.detach(), "mse": mse, "kl": kl.detach()}


def pixel_terms(model: nn.Module) -> tuple[str, ...]:
    """The per-pixel terms an autoencoder's evaluation reports: 'bce' and 'mse' for output
    sigmoid, 'mse' alone for linear (a cross-entropy of unbounded values means nothing)."""
    return ("bce", "mse") if model.output == "sigmoid" else ("mse",)


def batch_tensor(images, rows: np.ndarray) -> torch.Tensor:
    """Rows `rows` of `images` (an ndarray or the store's `StoredImages`, (N, C, H, W)) as a
    float32 CPU tensor: only these rows are read, and converted here, per batch."""
    return torch.from_numpy(np.ascontiguousarray(images[rows], dtype=np.float32))


@torch.no_grad()
def evaluate(model: nn.Module, images, labels: torch.Tensor, indices: np.ndarray,
             beta: float = 1.0, batch_size: int = 1024, device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean loss (and accuracy, or the per-pixel `pixel_terms` and per-sample KL) on `indices` of
    `images` (N, C, H, W), read a batch at a time.

    VAEs are evaluated on the posterior mean (no sampling), so the numbers are deterministic.
    Returns NaN values for an empty index set.
    """
    model.eval()
    sums: dict[str, float] = {}
    for start in range(0, len(indices), batch_size):
        idx = indices[start:start + batch_size]
        x, y = batch_tensor(images, idx).to(device), labels[torch.from_numpy(idx)].to(device)
        _, parts = batch_loss(model, x, y, beta, None)
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    n = len(indices)
    if n == 0:
        keys = ["loss", "accuracy"] if model.kind == "classifier" else ["loss", *pixel_terms(model), "kl"]
        return {k: math.nan for k in keys}
    if model.kind == "classifier":
        return {"loss": sums["loss"] / n, "accuracy": sums["correct"] / n}
    d = int(np.prod(images.shape[1:]))
    return {"loss": sums["loss"] / n, **{k: sums[k] / (n * d) for k in pixel_terms(model)},
            "kl": sums["kl"] / n}


def _diverged(name: str, value: float, epoch: int, epochs: int, step: int, lr: float,
              settings: Mapping[str, Any]) -> TrainingDiverged:
    tips = [f"a lower learning rate (train.lr or lr_schedule; now {lr:g}, e.g. {lr / 10:g})"]
    if settings["optimizer"] == "sgd" and settings["momentum"] > 0:
        tips.append(f"less momentum (train.momentum = {settings['momentum']:g})")
    tips.append(f"a larger batch (train.batch_size = {settings['batch_size']})")
    tips.append("checking the input data for NaN or infinite values")
    return TrainingDiverged(
        f"{name}: the training loss became {value} at epoch {epoch + 1}/{epochs} (step {step + 1}); "
        f"training stopped. Try " + ", ".join(tips) + "."
    )


@contextlib.contextmanager
def flushed_denormals(flush: bool):
    """Within the block, treat denormal floats as zero on the CPU when `flush` (`train.flush_denormals`).

    Adam's first moment of a weight whose gradient vanishes decays by beta1 per step into the
    denormal range, where x86 CPUs take many times longer per operation; flushing keeps every step
    at full speed. torch has no getter for the mode: it is switched off again on leaving, which is
    torch's default. With `flush` False nothing is changed.
    """
    if not flush:
        yield
        return
    if not torch.set_flush_denormal(True):
        log.warning("train.flush_denormals: this CPU cannot flush denormals; training without it")
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def train_model(model: nn.Module, images, labels: np.ndarray, split: np.ndarray,
                settings: Mapping[str, Any] | None = None, *, seed: int = 0,
                checkpoint_dir: str | os.PathLike | None = None, name: str = "model",
                device: str | torch.device | None = None, progress: bool = True,
                on_epoch_end: Callable[[int], None] | None = None,
                record: Mapping[str, Any] | None = None) -> TrainResult:
    """Train `model` in place on the dataset's train split; evaluate on validation and test.

    Parameters
    ----------
    model : a freshly built model (its initial weights are part of the run; seed torch first).
    images : float32 (N, C, H, W), in [0, 1] for autoencoders with output sigmoid (output linear:
        any values, e.g. standardised): an ndarray, or the store's `StoredImages`, from which
        each batch is read when it is used (the whole array is never held; the batches and so the
        weights are the same either way).
    labels : int ndarray of shape (N,) in 0..K-1.
    split : str ndarray of shape (N,), 'train' or 'test'.
    settings : `models.<name>.train` (defaults filled by `train_settings`).
    seed : seed of the validation split, the batch order and the VAE noise.
    checkpoint_dir : where `last.pt` is written after each epoch and resumed from, and the snapshots
        (`settings["snapshots"]`) are kept (None: no checkpoints, and no snapshots).
    name : the model's name in messages and the progress bar.
    on_epoch_end : called with the 0-based epoch after its checkpoint is written (tests use it
        to simulate a killed job).
    record : the keys `networks.save_model` writes into each snapshot's record besides the
        weights (class_names, dataset, name): the final model.pt's, so the last epoch's snapshot
        is model.pt byte for byte.

    Returns
    -------
    TrainResult with the trained model (eval mode), the per-epoch log (epoch, lr, train_loss,
    val_loss, [train_accuracy, val_accuracy], seconds), the metrics dict and the snapshots' files.
    """
    settings = train_settings(settings)
    if settings.get("snapshots") and checkpoint_dir is None:
        raise ValueError(f"{name}: train.snapshots are kept in the checkpoint folder; give a checkpoint_dir")
    with flushed_denormals(bool(settings.get("flush_denormals"))):
        return _train(model, images, labels, split, settings, seed, checkpoint_dir, name, device, progress,
                      on_epoch_end, dict(record or {}))


def _train(model, images, labels, split, settings, seed, checkpoint_dir, name, device, progress,
           on_epoch_end, record) -> TrainResult:
    device = default_device() if device is None else torch.device(device)
    labels_t = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    split = np.asarray(split).astype(str)
    pool = np.flatnonzero(split == "train")
    test_idx = np.flatnonzero(split == "test")
    train_idx, val_idx = split_train_validation(pool, settings["validation_fraction"], seed,
                                                settings.get("max_train_samples"))
    epochs, bs, beta = int(settings["epochs"]), int(settings["batch_size"]), float(settings["beta"])
    classifier = model.kind == "classifier"

    model.to(device)
    optimizer = make_optimizer(model, settings)
    order = torch.Generator().manual_seed(seed)
    noise = torch.Generator(device=device).manual_seed(seed + 1)
    rows: list[dict[str, float]] = []
    start = 0
    ckpt_path = checkpoint.path_in(checkpoint_dir) if checkpoint_dir is not None else None
    fingerprint = checkpoint.fingerprint(model, settings, seed, images, labels_t, train_idx)
    ckpt = checkpoint.read(ckpt_path, fingerprint) if ckpt_path else None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        order.set_state(ckpt["order_rng"])
        noise.set_state(ckpt["noise_rng"])
        rows = [dict(r) for r in ckpt["log"]]
        start = int(ckpt["epoch"])
        log.info("%s: resuming from %s after epoch %d/%d", name, ckpt_path, start, epochs)
    elif checkpoint_dir is not None:  # a fresh start: snapshots there are a killed run's of another config
        checkpoint.remove_snapshots(checkpoint_dir)
    snapshots = {e: checkpoint.snapshot_path(checkpoint_dir, e) for e in settings.get("snapshots", [])}

    n_batches = math.ceil(len(train_idx) / bs)
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        lr = lr_at(epoch, settings)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=order).numpy()]
        loss_sum, correct = 0.0, 0.0
        bar = tqdm(total=n_batches, desc=f"{name} epoch {epoch + 1}/{epochs}", file=sys.stderr,
                   disable=not progress, mininterval=1.0, leave=False, unit="step")
        for step in range(n_batches):
            idx = perm[step * bs:(step + 1) * bs]
            x, y = batch_tensor(images, idx).to(device), labels_t[torch.from_numpy(idx)].to(device)
            loss, parts = batch_loss(model, x, y, beta, noise)
            value = float(loss.detach())
            if not math.isfinite(value):
                bar.close()
                raise _diverged(name, value, epoch, epochs, step, lr, settings)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(parts["loss"])
            if classifier:
                correct += float(parts["correct"])
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{value:.4f}")
        bar.close()
        val = evaluate(model, images, labels_t, val_idx, beta, settings["eval_batch_size"], device)
        if len(val_idx) and not math.isfinite(val["loss"]):
            raise _diverged(name, val["loss"], epoch, epochs, n_batches - 1, lr, settings)
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / len(train_idx), "val_loss": val["loss"]}
        if classifier:
            row.update(train_accuracy=correct / len(train_idx), val_accuracy=val["accuracy"])
        row["seconds"] = round(time.perf_counter() - t0, 3)
        rows.append(row)
        log.info("%s epoch %d/%d: %s", name, epoch + 1, epochs,
                 ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
        if epoch + 1 in snapshots:
            save_model(model, snapshots[epoch + 1], **record)
            log.info("%s: snapshot after epoch %d in %s", name, epoch + 1, snapshots[epoch + 1])
        if ckpt_path is not None:
            checkpoint.write(ckpt_path, {"fingerprint": fingerprint, "epoch": epoch + 1,
                                         "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                         "order_rng": order.get_state(), "noise_rng": noise.get_state(),
                                         "log": rows})
        if on_epoch_end is not None:
            on_epoch_end(epoch)

    test = evaluate(model, images, labels_t, test_idx, beta, settings["eval_batch_size"], device)
    metrics: dict[str, Any] = {
        "model": name, "arch": model.arch, "kind": model.kind, "latent_dim": model.latent_dim,
        "n_params": count_parameters(model), "epochs": epochs, "device": device.type,
        "n_train": len(train_idx), "n_validation": len(val_idx), "n_test": len(test_idx),
        "final_train_loss": rows[-1]["train_loss"] if rows else math.nan,
        "final_val_loss": rows[-1]["val_loss"] if rows else math.nan,
        "test_loss": test["loss"],
    }
    if classifier:
        metrics["test_accuracy"] = test["accuracy"]
    else:
        metrics.update({f"test_{k}": test[k] for k in ("mse", "bce") if k in test})
        if getattr(model, "variational", False):
            metrics["test_kl"] = test["kl"]
    model.eval()
    return TrainResult(model=model, log=pd.DataFrame(rows), metrics=metrics, snapshots=snapshots)
