"""Feature visualisation of classifiers: activation maximisation, adversarial examples, dead neurons.

Reproduces a study of what the hidden neurons of a non-convolutional MNIST classifier
(784-1250-1000-750-500-250-100-32-10, ReLU, softmax) respond to: input images are optimised by
gradient ascent to activate one chosen neuron (a softmax probability for the output layer, a
post-ReLU activation for hidden layers), with optional total-variation (TV) and L1 regularisers,
a penalty on the other neurons of the layer, jitter, and clipping of the pixels to [0, 1].

The study's key detail is how the clip enters the gradient. The image is kept as raw values `x`;
the network sees `clip(x, 0, 1)`. The clip's derivative (1 inside [0, 1], 0 outside) multiplies
the activation gradient, so a pixel pushed past a bound gets no more activation gradient. If it
also multiplied the regulariser gradients, such a pixel would be stuck at the bound for good
(images look unregularised); the study leaves the regulariser gradients unclipped so TV and L1
can pull pixels back. `clip_regulariser_gradients=False` is the study's choice.

Layers are numbered as the study counts them: hidden layers 1..L (1-based, in network order) and
the output layer L+1 (also called "output").

The engine (`maximise_activation`) optimises a batch with one image per target at once, on the
model's device; the analyses below build the figure sets' batches and tables from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

log = logging.getLogger("latent_atlas")

OUTPUT = "output"
STARTS = ("zero", "random")
OBJECTIVES = ("probability", "log_probability")

LayerFn = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# Layers


@dataclass(frozen=True)
class Layer:
    """A resolved layer reference: 1-based `number`, the model's `name` (or "output"), `units`."""

    number: int
    name: str
    units: int

    @property
    def is_output(self) -> bool:
        return self.name == OUTPUT


def hidden_layer_sizes(model: nn.Module) -> list[tuple[str, int]]:
    """[(name, units), ...] of the classifier's hidden layers in network order."""
    names = list(model.hidden_layer_names())
    device = model_device(model)
    x = torch.zeros((1, *model.input_shape), device=device)
    with torch.no_grad():
        acts = model.hidden(x)
    return [(name, int(acts[name].shape[1])) for name in names]


def resolve_layer(ref: int | str, model: nn.Module, key: str = "layer") -> Layer:
    """Resolve a layer reference: 1..L a hidden layer (1-based), L+1 or "output" the output layer.

    Raises ValueError naming `key`, the reference and the layers the model has.
    """
    sizes = hidden_layer_sizes(model)
    n_hidden = len(sizes)
    n_classes = int(model.n_classes) if hasattr(model, "n_classes") else None
    if isinstance(ref, str) and ref.lower() == OUTPUT:
        ref = n_hidden + 1
    if isinstance(ref, bool) or not isinstance(ref, (int, np.integer)) or not 1 <= ref <= n_hidden + 1:
        raise ValueError(
            f"{key}: layer {ref!r} does not exist; the model has hidden layers 1..{n_hidden} "
            f"(1-based, as the study counts them) and the output layer {n_hidden + 1} ('output')"
        )
    ref = int(ref)
    if ref == n_hidden + 1:
        if n_classes is None:
            with torch.no_grad():
                n_classes = int(model(torch.zeros((1, *model.input_shape),
                                                  device=model_device(model))).shape[1])
        return Layer(ref, OUTPUT, n_classes)
    name, units = sizes[ref - 1]
    return Layer(ref, name, units)


def check_units(units: Sequence[int], layer: Layer, key: str = "units") -> list[int]:
    """Validate 0-based unit indices against a layer's size."""
    units = [int(u) for u in units]
    bad = [u for u in units if not 0 <= u < layer.units]
    if bad:
        raise ValueError(
            f"{key}: units {bad} do not exist in layer {layer.number} ({layer.name}, "
            f"{layer.units} units, 0-based indices 0..{layer.units - 1})"
        )
    return units


def first_units(units: int | Sequence[int], layer: Layer, key: str = "units") -> list[int]:
    """An int n: the layer's first n units (all if it has fewer); a list: those units, checked."""
    if isinstance(units, (int, np.integer)):
        return list(range(min(int(units), layer.units)))
    return check_units(units, layer, key)


def model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def pick_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def layer_function(model: nn.Module, layer: Layer, objective: str = "probability") -> LayerFn:
    """x (B, C, H, W) -> (B, units): the layer's activation.

    Hidden layers: post-ReLU activation from `model.hidden(x)`. Output layer: the softmax
    probability (`objective="probability"`, the study's) or its log (`"log_probability"`, whose
    gradient does not vanish from a confidently classified start).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if layer.is_output:
        if objective == "log_probability":
            return lambda x: torch.log_softmax(model(x), dim=1)
        return lambda x: torch.softmax(model(x), dim=1)
    return lambda x: model.hidden(x)[layer.name]


# --------------------------------------------------------------------------------------------
# Regularisers


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV of each image: sum of |differences| of vertical and horizontal neighbours.

    x : tensor of shape (B, C, H, W). Returns (B,).
    """
    dv = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().sum(dim=(1, 2, 3))
    dh = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().sum(dim=(1, 2, 3))
    return dv + dh


def total_variation_grad(x: torch.Tensor) -> torch.Tensor:
    """Gradient of `total_variation` with respect to x (sign(0) = 0), shape (B, C, H, W)."""
    g = torch.zeros_like(x)
    dv = torch.sign(x[:, :, 1:, :] - x[:, :, :-1, :])
    dh = torch.sign(x[:, :, :, 1:] - x[:, :, :, :-1])
    g[:, :, 1:, :] += dv
    g[:, :, :-1, :] -= dv
    g[:, :, :, 1:] += dh
    g[:, :, :, :-1] -= dh
    return g


def l1_norm(x: torch.Tensor) -> torch.Tensor:
    """Sum of |pixel| of each image, x (B, C, H, W) -> (B,)."""
    return x.abs().sum(dim=(1, 2, 3))


def l1_grad(x: torch.Tensor) -> torch.Tensor:
    """Gradient of `l1_norm`: sign(x), shape (B, C, H, W)."""
    return torch.sign(x)


# --------------------------------------------------------------------------------------------
# The engine


def start_images(kind: str, n: int, shape: Sequence[int], random_state: int = 0) -> np.ndarray:
    """Starting images, float32 (n, C, H, W): "zero" = 0.01 everywhere (near zero, so ReLU
    gradients do not vanish), "random" = normal(0.5, 0.1) per pixel (the study's)."""
    shape = (int(n), *map(int, shape))
    if kind == "zero":
        return np.full(shape, 0.01, dtype=np.float32)
    if kind == "random":
        rng = np.random.default_rng(random_state)
        return rng.normal(0.5, 0.1, size=shape).astype(np.float32)
    raise ValueError(f"start must be one of {STARTS} (or real images), got {kind!r}")


def _per_image(value, n: int, device, name: str) -> torch.Tensor:
    v = torch.as_tensor(np.asarray(value, dtype=np.float32), device=device)
    if v.ndim == 0:
        v = v.expand(n)
    if v.shape != (n,):
        raise ValueError(f"{name}: expected a scalar or one value per image ({n}), got shape {tuple(v.shape)}")
    return v.reshape(n, 1, 1, 1)


def _jitter(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Roll each image by its own (dy, dx) in {-1, 0, 1} (differentiable: a gather)."""
    b, c, h, w = x.shape
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    src_r = (rows[None, :] - shifts[:, :1]) % h  # (B, H)
    src_c = (cols[None, :] - shifts[:, 1:]) % w  # (B, W)
    index = (src_r[:, :, None] * w + src_c[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return x.reshape(b, c, h * w).gather(2, index).reshape(b, c, h, w)


def maximise_activation(
    layer_fn: LayerFn,
    targets: Sequence[int],
    start: np.ndarray,
    *,
    steps: int,
    lr: float,
    tv: float | Sequence[float] = 0.0,
    l1: float | Sequence[float] = 0.0,
    penalty: float | Sequence[float] = 0.0,
    jitter: bool = False,
    clip: bool = True,
    clip_regulariser_gradients: bool = False,
    max_linf: float | None = None,
    device: torch.device | str | None = None,
    random_state: int = 0,
    progress: bool = True,
    desc: str = "featureviz",
) -> np.ndarray:
    """Gradient ascent on a batch of input images, one image per target neuron.

    Each step maximises, per image b,
    ``act[b, t_b] - penalty * mean(act[b, others]) - tv * TV(x_b) - l1 * L1(x_b)``
    with plain gradient steps ``x += lr * gradient`` (the study's optimiser).

    Parameters
    ----------
    layer_fn : callable, x (B, C, H, W) -> (B, units)
        Activation of the target layer (see `layer_function`); must treat images independently.
    targets : sequence of int, length B
        Target unit of each image (0-based).
    start : ndarray of shape (B, C, H, W)
        Starting raw pixel values (`start_images` or real images in [0, 1]).
    steps, lr : int, float
        Number of gradient steps and learning rate.
    tv, l1, penalty : float or sequence of B floats
        Weights of anisotropic total variation, L1 and the mean activation of the layer's other
        units; per image, so a weight sweep runs as one batch.
    jitter : bool
        Roll each image by a random 1-pixel translation (dy, dx in {-1, 0, 1}) before each step.
    clip : bool
        Feed clip(x, 0, 1) to the network and return clipped images. False: no clipping at all.
    clip_regulariser_gradients : bool
        Whether the clip's derivative also multiplies the TV and L1 gradients. False (the study's
        choice): pixels past a bound stay movable by the regularisers; True: they stay pinned.
    max_linf : float or None
        If set, project x onto the L-infinity ball of this radius around `start` after each step.
    device : torch device or None
        Where the images live: the device of the model behind `layer_fn` (default CPU).
    random_state : int
        Seed of the jitter shifts.

    Returns
    -------
    images : ndarray of shape (B, C, H, W), float32
        The optimised images (clipped to [0, 1] when `clip`).
    """
    start = np.asarray(start, dtype=np.float32)
    if start.ndim != 4:
        raise ValueError(f"start: expected images of shape (B, C, H, W), got {start.shape}")
    n = start.shape[0]
    targets_t = torch.as_tensor(np.array(targets, dtype=np.int64))
    if targets_t.shape != (n,):
        raise ValueError(f"targets: expected {n} target units (one per image), got shape {tuple(targets_t.shape)}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    targets_t = targets_t.to(device)
    tv_w = _per_image(tv, n, device, "tv")
    l1_w = _per_image(l1, n, device, "l1")
    pen_w = _per_image(penalty, n, device, "penalty").reshape(n)
    x0 = torch.as_tensor(start, device=device)
    x = x0.clone()
    gen = torch.Generator().manual_seed(int(random_state))
    use_reg = bool((tv_w != 0).any() or (l1_w != 0).any())
    use_penalty = bool((pen_w != 0).any())

    from tqdm.auto import tqdm

    for _ in tqdm(range(int(steps)), desc=desc, disable=not progress, leave=False, mininterval=1.0):
        xc = x.clamp(0.0, 1.0) if clip else x
        xin = xc.detach().requires_grad_(True)
        seen = xin
        if jitter:
            shifts = torch.randint(-1, 2, (n, 2), generator=gen).to(device)
            seen = _jitter(xin, shifts)
        acts = layer_fn(seen)
        objective = acts.gather(1, targets_t[:, None])[:, 0]
        if use_penalty:
            others = (acts.sum(dim=1) - objective) / max(acts.shape[1] - 1, 1)
            objective = objective - pen_w * others
        (grad,) = torch.autograd.grad(objective.sum(), xin)
        if clip:
            inside = ((x >= 0.0) & (x <= 1.0)).to(x.dtype)  # the clip's derivative
            grad = grad * inside
        if use_reg:
            reg = tv_w * total_variation_grad(xc) + l1_w * l1_grad(xc)
            if clip and clip_regulariser_gradients:
                reg = reg * inside
            grad = grad - reg
        x = x + lr * grad
        if max_linf is not None:
            x = x0 + (x - x0).clamp(-max_linf, max_linf)
    out = x.clamp(0.0, 1.0) if clip else x
    return out.detach().cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------------------------
# Describing results


def describe_images(
    model: nn.Module,
    images: np.ndarray,
    layer: Layer,
    targets: Sequence[int],
    class_names: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    top: int = 3,
) -> pd.DataFrame:
    """What the network makes of each optimised image.

    Returns one row per image: `layer` (1-based), `layer_name`, `unit`, `activation` (the target's:
    softmax probability for the output layer, post-ReLU value for hidden layers), `next_unit`,
    `next_activation` (the highest other unit of the layer), `ratio` = activation / next (inf when
    the next is 0 and the target is positive, 0 when both are 0), `layer_mean` (mean activation
    of the other units), `pred`, and the network's top-`top` classes `top{k}`, `top{k}_name`,
    `top{k}_prob` (k = 1..top), plus `l1` and `tv` of the image.
    """
    device = torch.device(device) if device is not None else model_device(model)
    targets = np.asarray(targets, dtype=np.int64)
    x = torch.as_tensor(np.asarray(images, dtype=np.float32), device=device)
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)
        acts = probs if layer.is_output else model.hidden(x)[layer.name]
        probs = probs.cpu().numpy().astype(np.float64)
        acts = acts.cpu().numpy().astype(np.float64)
        tv = total_variation(x).cpu().numpy()
        l1 = l1_norm(x).cpu().numpy()
    n = len(targets)
    rows = np.arange(n)
    target_act = acts[rows, targets]
    others = acts.copy()
    others[rows, targets] = -np.inf
    next_unit = others.argmax(axis=1) if acts.shape[1] > 1 else np.zeros(n, dtype=np.int64)
    next_act = others[rows, next_unit] if acts.shape[1] > 1 else np.zeros(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(next_act > 0, target_act / np.where(next_act > 0, next_act, 1.0),
                         np.where(target_act > 0, np.inf, 0.0))
    layer_mean = (acts.sum(axis=1) - target_act) / max(acts.shape[1] - 1, 1)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    if class_names is None:
        class_names = [str(c) for c in range(probs.shape[1])]
    df = pd.DataFrame({
        "layer": np.full(n, layer.number, dtype=np.int64),
        "layer_name": [layer.name] * n,
        "unit": targets,
        "activation": target_act,
        "next_unit": next_unit.astype(np.int64),
        "next_activation": next_act,
        "ratio": ratio,
        "layer_mean": layer_mean,
        "pred": order[:, 0].astype(np.int64),
    })
    for k in range(order.shape[1]):
        df[f"top{k + 1}"] = order[:, k].astype(np.int64)
        df[f"top{k + 1}_name"] = [str(class_names[c]) for c in order[:, k]]
        df[f"top{k + 1}_prob"] = probs[rows, order[:, k]]
    df["l1"] = l1.astype(np.float64)
    df["tv"] = tv.astype(np.float64)
    return df


def class_probabilities(model: nn.Module, images: np.ndarray, batch_size: int = 1024,
                        device: torch.device | str | None = None) -> np.ndarray:
    """Softmax probabilities (N, K) of `images` (N, C, H, W), computed in batches."""
    device = torch.device(device) if device is not None else model_device(model)
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = torch.as_tensor(np.asarray(images[i:i + batch_size], dtype=np.float32), device=device)
            out.append(torch.softmax(model(x), dim=1).cpu().numpy())
    k = out[0].shape[1] if out else 0
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.float32)


def layer_activations(model: nn.Module, images: np.ndarray, layer: Layer, batch_size: int = 1024,
                      device: torch.device | str | None = None) -> np.ndarray:
    """Activations (N, units) of `layer` for `images` (N, C, H, W), in batches: softmax
    probabilities for the output layer, post-ReLU values for hidden layers."""
    if layer.is_output:
        return class_probabilities(model, images, batch_size, device)
    device = torch.device(device) if device is not None else model_device(model)
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = torch.as_tensor(np.asarray(images[i:i + batch_size], dtype=np.float32), device=device)
            out.append(model.hidden(x)[layer.name].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, layer.units), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Figure sets: each returns (table, images) for one job


@dataclass(frozen=True)
class Optimiser:
    """Settings shared by every optimisation of a run (config `featureviz:` top level)."""

    lr: float = 0.1
    clip_regulariser_gradients: bool = False
    output_objective: str = "probability"
    seed: int = 0
    progress: bool = True

    def run(self, model, layer: Layer, targets, start, *, steps, objective=None, desc="featureviz",
            **kwargs) -> np.ndarray:
        fn = layer_function(model, layer, objective or self.output_objective)
        kwargs.setdefault("lr", self.lr)
        kwargs.setdefault("clip_regulariser_gradients", self.clip_regulariser_gradients)
        return maximise_activation(fn, targets, start, steps=steps, device=model_device(model),
                                   random_state=self.seed, progress=self.progress, desc=desc,
                                   **kwargs)


def _starts(kind: str, n: int, model: nn.Module, seed: int) -> np.ndarray:
    return start_images(kind, n, model.input_shape, random_state=seed)


def unregularised_outputs(model, class_names, opt: Optimiser, *, steps_output: int = 50,
                          steps_hidden: int = 25, hidden_layer=None, hidden_units=10,
                          start: str = "zero") -> tuple[pd.DataFrame, np.ndarray]:
    """Figure set 1: each output neuron (and optional hidden units) optimised without
    regularisation, once without clipping and once with clipping.

    `hidden_units`: an int n (the first n units of `hidden_layer`) or a list of unit indices.

    Returns the table (describe_images columns + `clip`, `steps`, `start`, `index`) and images
    (N, C, H, W) with row `index` of the table.
    """
    out = resolve_layer(OUTPUT, model)
    jobs = [(out, list(range(out.units)), steps_output)]
    if hidden_layer is not None:
        hl = resolve_layer(hidden_layer, model, "featureviz.unregularised.hidden_layer")
        units = first_units(hidden_units, hl, "featureviz.unregularised.hidden_units")
        jobs.append((hl, units, steps_hidden))
    tables, images = [], []
    for layer, units, steps in jobs:
        for clip in (False, True):
            x0 = _starts(start, len(units), model, opt.seed)
            img = opt.run(model, layer, units, x0, steps=steps, clip=clip,
                          desc=f"layer {layer.number} clip={clip}")
            df = describe_images(model, img, layer, units, class_names)
            df["clip"] = clip
            df["steps"] = steps
            df["start"] = start
            tables.append(df)
            images.append(img)
    return _stack(tables, images)


def auto_starts(model, layer: Layer, units: Sequence[int], seed: int = 0,
                images: np.ndarray | None = None, image_ids: Sequence[int] | None = None
                ) -> tuple[np.ndarray, list[str]]:
    """A start per unit from which gradient ascent can move it: a unit at 0 (ReLU off) gets no
    gradient and would stay blank.

    The near-zero image where the unit is active there; else a seeded random image where it is
    active there; else, when real `images` (M, C, H, W) are given, the one that activates the unit
    most (if any does). A unit that none of these activates keeps the random start (and stays at
    0). Returns the starts (len(units), C, H, W) and each start's kind ("zero", "random" or
    "image:<id>", the image's entry of `image_ids`, default its row of `images`).
    """
    zero = _starts("zero", len(units), model, seed)
    rand = _starts("random", len(units), model, seed)
    on_zero = describe_images(model, zero, layer, units)["activation"].to_numpy() > 0
    on_rand = describe_images(model, rand, layer, units)["activation"].to_numpy() > 0
    x0 = np.where(on_zero[:, None, None, None], zero, rand).astype(np.float32)
    kinds = ["zero" if z else "random" for z in on_zero]
    off = np.flatnonzero(~on_zero & ~on_rand)
    if images is not None and len(off) and len(images):
        acts = layer_activations(model, np.asarray(images, dtype=np.float32), layer)[:, np.asarray(units)[off]]
        best = acts.argmax(axis=0)
        for i, row, value in zip(off, best, acts[best, np.arange(len(off))]):
            if value > 0:
                x0[i] = images[row]
                kinds[i] = f"image:{int(image_ids[row] if image_ids is not None else row)}"
    return x0, kinds


def _stack(tables, images) -> tuple[pd.DataFrame, np.ndarray]:
    df = pd.concat(tables, ignore_index=True)
    df.insert(0, "index", np.arange(len(df), dtype=np.int64))
    return df, np.concatenate(images).astype(np.float32)


def adversarial_examples(model, images: np.ndarray, labels: np.ndarray, sample_ids: np.ndarray,
                         class_names, opt: Optimiser, *, per_pair: int = 1, steps: int = 100,
                         lr: float | None = None, objective: str = "log_probability",
                         max_linf: float | None = None, success_threshold: float = 0.5,
                         ) -> tuple[pd.DataFrame, np.ndarray]:
    """Figure set 2: real images of class a pushed towards output b != a (no regularisation,
    clipped to [0, 1]).

    Sources are the first `per_pair` images of each class (in the given order) that the network
    classifies correctly; each goes to every other class. Returns the table (one row per
    (source, target): `sample_id`, `source_class`, `target_class`, `source_prob` (the original's
    probability of a), `target_prob_before`, `target_prob` (after), `pred_before`, `pred`,
    `success` (pred == b and target_prob >= `success_threshold`), `l2`, `linf`, top-3 columns)
    and images (N, 2, C, H, W): original and result.
    """
    probs = class_probabilities(model, images)
    pred = probs.argmax(axis=1)
    k = probs.shape[1]
    chosen = []
    for a in range(k):
        idx = np.flatnonzero((labels == a) & (pred == a))[:per_pair]
        if len(idx) < per_pair:
            log.warning("adversarial: only %d correctly classified images of class %d", len(idx), a)
        chosen += list(idx)
    src, tgt = [], []
    for i in chosen:
        for b in range(k):
            if b != labels[i]:
                src.append(i)
                tgt.append(b)
    src = np.asarray(src, dtype=np.int64)
    tgt = np.asarray(tgt, dtype=np.int64)
    out_layer = resolve_layer(OUTPUT, model)
    x0 = images[src].astype(np.float32)
    result = opt.run(model, out_layer, tgt, x0, steps=steps, objective=objective, clip=True,
                     max_linf=max_linf, lr=lr if lr is not None else opt.lr, desc="adversarial")
    df = describe_images(model, result, out_layer, tgt, class_names)
    diff = (result - x0).reshape(len(src), -1).astype(np.float64)
    df.insert(0, "sample_id", np.asarray(sample_ids)[src].astype(np.int64))
    df.insert(1, "source_class", labels[src].astype(np.int64))
    df.insert(2, "target_class", tgt)
    df["source_prob"] = probs[src, labels[src]].astype(np.float64)
    df["target_prob_before"] = probs[src, tgt].astype(np.float64)
    df["pred_before"] = pred[src].astype(np.int64)
    df["target_prob"] = df["activation"]
    df["success"] = (df["pred"].to_numpy() == tgt) & (df["target_prob"].to_numpy() >= success_threshold)
    after = class_probabilities(model, result)
    for c in range(k):
        df[f"before_p{c}"] = probs[src, c].astype(np.float64)
    for c in range(k):
        df[f"after_p{c}"] = after[:, c].astype(np.float64)
    df["l2"] = np.linalg.norm(diff, axis=1)
    df["linf"] = np.abs(diff).max(axis=1)
    df["steps"] = steps
    df["objective"] = objective
    df.insert(0, "index", np.arange(len(df), dtype=np.int64))
    return df, np.stack([x0, result], axis=1).astype(np.float32)


def adversarial_success(table: pd.DataFrame, class_names) -> pd.DataFrame:
    """Success rate per (source class, target class), with counts and median L2 / L-infinity."""
    g = table.groupby(["source_class", "target_class"])
    out = g.agg(n=("success", "size"), successes=("success", "sum"),
                median_l2=("l2", "median"), median_linf=("linf", "median"),
                mean_target_prob=("target_prob", "mean")).reset_index()
    out["success_rate"] = out["successes"] / out["n"]
    out["source_name"] = [str(class_names[c]) for c in out["source_class"]]
    out["target_name"] = [str(class_names[c]) for c in out["target_class"]]
    return out


def confident_class_means(probs: np.ndarray, images: np.ndarray, threshold: float = 0.9
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Mean image of the samples the network assigns to each class with probability > threshold.

    probs : (N, K); images : (N, C, H, W). Returns means (K, C, H, W) (zeros for a class with no
    such sample) and counts (K,).
    """
    k = probs.shape[1]
    means = np.zeros((k, *images.shape[1:]), dtype=np.float64)
    counts = np.zeros(k, dtype=np.int64)
    for c in range(k):
        m = probs[:, c] > threshold
        counts[c] = int(m.sum())
        if counts[c]:
            means[c] = images[m].mean(axis=0, dtype=np.float64)
    return means.astype(np.float32), counts


def tv_sweep(model, class_names, opt: Optimiser, *, classes=None, tv=(0.004, 0.256),
             l1_fraction: float = 0.0,
             steps: int = 100, start: str = "zero", jitter: bool = False
             ) -> tuple[pd.DataFrame, np.ndarray]:
    """Figure set 3: output neurons `classes` (None: all) optimised with each TV weight in `tv`
    (L1 = `l1_fraction` x TV), one batch. Returns the table (+ `tv_weight`, `l1_weight`) and images."""
    out = resolve_layer(OUTPUT, model)
    classes = check_units(range(out.units) if classes is None else classes, out,
                          "featureviz.tv_sweep.classes")
    units = np.repeat(classes, len(tv))
    tvw = np.tile(np.asarray(tv, dtype=np.float64), len(classes))
    l1w = tvw * l1_fraction
    x0 = _starts(start, len(units), model, opt.seed)
    img = opt.run(model, out, units, x0, steps=steps, tv=tvw, l1=l1w, jitter=jitter, clip=True,
                  desc="tv sweep")
    df = describe_images(model, img, out, units, class_names)
    df["tv_weight"] = tvw
    df["l1_weight"] = l1w
    df["steps"] = steps
    df["start"] = start
    return _stack([df], [img])


def tv_l1_grid(model, class_names, opt: Optimiser, *, layer, unit: int, tv_weights, l1_fractions,
               steps: int = 30, start: str = "zero", jitter: bool = False,
               keys: tuple[str, str] = ("layer", "unit")) -> tuple[pd.DataFrame, np.ndarray]:
    """Figure set 4: one neuron optimised for every (TV weight, L1 = fraction x TV) pair, one batch.
    Returns the table (+ `tv_weight`, `l1_fraction`, `l1_weight`) and images."""
    lay = resolve_layer(layer, model, keys[0])
    (unit,) = check_units([unit], lay, keys[1])
    tvw, frac = np.meshgrid(np.asarray(tv_weights, float), np.asarray(l1_fractions, float), indexing="ij")
    tvw, frac = tvw.ravel(), frac.ravel()
    units = np.full(len(tvw), unit)
    x0 = _starts(start, len(units), model, opt.seed)
    img = opt.run(model, lay, units, x0, steps=steps, tv=tvw, l1=tvw * frac, jitter=jitter,
                  clip=True, desc=f"grid layer {lay.number}")
    df = describe_images(model, img, lay, units, class_names)
    df["tv_weight"] = tvw
    df["l1_fraction"] = frac
    df["l1_weight"] = tvw * frac
    df["steps"] = steps
    return _stack([df], [img])


def tv_l1_grids(model, class_names, opt: Optimiser, *, output_class: int = 0, hidden_layer=None,
                hidden_unit: int = 0, tv=(0.032, 0.064, 0.128, 0.256),
                l1_fractions=(0.0, 0.25, 0.5, 0.75, 1.0), steps_output: int = 100,
                steps_hidden: int = 30, start: str = "zero", jitter: bool = False
                ) -> tuple[pd.DataFrame, np.ndarray]:
    """Figure set 4 as one job: the TV x L1 grid of output neuron `output_class` and, when
    `hidden_layer` is set, of `hidden_unit` in that layer; column `panel` is "output"/"hidden"."""
    parts = [("output", OUTPUT, output_class, steps_output, "output_class")]
    if hidden_layer is not None:
        parts.append(("hidden", hidden_layer, hidden_unit, steps_hidden, "hidden_unit"))
    tables, images = [], []
    for panel, layer, unit, steps, unit_key in parts:
        keys = ("featureviz.tv_l1_grid.hidden_layer", f"featureviz.tv_l1_grid.{unit_key}")
        df, img = tv_l1_grid(model, class_names, opt, layer=layer, unit=unit, tv_weights=tv,
                             l1_fractions=l1_fractions, steps=steps, start=start, jitter=jitter,
                             keys=keys)
        df = df.drop(columns="index")
        df.insert(0, "panel", panel)
        tables.append(df)
        images.append(img)
    return _stack(tables, images)


def gallery(model, class_names, opt: Optimiser, *, layer, units, tv: float, l1: float,
            steps: int = 30, start: str = "zero", jitter: bool = False, penalty: float = 0.0,
            images: np.ndarray | None = None, image_ids: Sequence[int] | None = None
            ) -> tuple[pd.DataFrame, np.ndarray]:
    """Figure set 5: units of one hidden layer, each optimised with the same regularisation.
    `units`: an int n (the first n units) or a list of 0-based indices. `start="auto"`: see
    `auto_starts` (`images`: real images to fall back on for units neither the near-zero nor a
    random image activates); the table's `start` column says which start each unit got."""
    lay = resolve_layer(layer, model, "featureviz.gallery.layers")
    units = first_units(units, lay, "featureviz.gallery.units")
    if start == "auto":
        x0, kinds = auto_starts(model, lay, units, opt.seed, images, image_ids)
    else:
        x0, kinds = _starts(start, len(units), model, opt.seed), [start] * len(units)
    img = opt.run(model, lay, units, x0, steps=steps, tv=tv, l1=l1, penalty=penalty, jitter=jitter,
                  clip=True, desc=f"gallery layer {lay.number}")
    df = describe_images(model, img, lay, units, class_names)
    df["tv_weight"] = tv
    df["l1_weight"] = l1
    df["steps"] = steps
    df["start"] = kinds
    return _stack([df], [img])


# --------------------------------------------------------------------------------------------
# Dead neurons and co-activation


def activation_census(model: nn.Module, images: np.ndarray, batch_size: int = 1024,
                      keep: int = 0, random_state: int = 0
                      ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Run the model over `images` (N, C, H, W) in batches and record every hidden unit's
    maximum activation and the fraction of images on which it is active (> 0).

    Returns a table (one row per hidden unit: `layer` 1-based, `layer_name`, `unit`,
    `max_activation`, `active_fraction`, `mean_activation`, `dead` = never active) and, when
    `keep` > 0, the activations of `keep` seeded random images per layer name (keep, units) for
    the co-activation analysis.
    """
    device = model_device(model)
    names = list(model.hidden_layer_names())
    n = len(images)
    rng = np.random.default_rng(random_state)
    kept = np.sort(rng.choice(n, size=min(keep, n), replace=False)) if keep else np.zeros(0, int)
    mx, active, total, sample = {}, {}, {}, {nm: [] for nm in names}
    with torch.no_grad():
        for i in range(0, n, batch_size):
            x = torch.as_tensor(np.asarray(images[i:i + batch_size], dtype=np.float32), device=device)
            acts = model.hidden(x)
            sel = kept[(kept >= i) & (kept < i + len(x))] - i
            for nm in names:
                a = acts[nm].double()
                m = a.max(dim=0).values
                mx[nm] = m if nm not in mx else torch.maximum(mx[nm], m)
                active[nm] = active.get(nm, 0) + (a > 0).sum(dim=0)
                total[nm] = total.get(nm, 0) + a.sum(dim=0)
                if len(sel):
                    sample[nm].append(acts[nm][torch.as_tensor(sel, device=device)].cpu().numpy())
    rows = []
    for number, nm in enumerate(names, start=1):
        m = mx[nm].cpu().numpy()
        units = len(m)
        rows.append(pd.DataFrame({
            "layer": np.full(units, number, dtype=np.int64),
            "layer_name": [nm] * units,
            "unit": np.arange(units, dtype=np.int64),
            "max_activation": m.astype(np.float64),
            "active_fraction": (active[nm].cpu().numpy() / n).astype(np.float64),
            "mean_activation": (total[nm].cpu().numpy() / n).astype(np.float64),
            "dead": m <= 0,
        }))
    samples = {nm: (np.concatenate(sample[nm]) if sample[nm] else np.zeros((0, 0), np.float32))
               for nm in names}
    return pd.concat(rows, ignore_index=True), samples


def revive_dead(model, census: pd.DataFrame, opt: Optimiser, *, steps: int = 50,
                random_starts: int = 2, max_units: int | None = None
                ) -> pd.DataFrame:
    """Try to activate the dead units of `census` by optimisation (the study's test: a unit that
    stays at 0 for 50 steps is dead), from the near-zero start and `random_starts` random starts.

    Adds `optimised_activation` (the best activation reached, NaN where not tried) and
    `revivable` (optimised_activation > 0; False where not tried) to a copy of the census.
    """
    census = census.copy()
    census["optimised_activation"] = np.nan
    census["revivable"] = False
    dead = census[census["dead"]]
    if max_units is not None and len(dead) > max_units:
        log.info("census: optimising %d of %d dead units (max_optimised)", max_units, len(dead))
        dead = dead.iloc[:max_units]
    for number, group in dead.groupby("layer", sort=True):
        layer = resolve_layer(int(number), model)
        units = group["unit"].to_numpy()
        best = np.zeros(len(units))
        for s in range(1 + random_starts):
            kind = "zero" if s == 0 else "random"
            x0 = start_images(kind, len(units), model.input_shape, random_state=opt.seed + s)
            img = opt.run(model, layer, units, x0, steps=steps, clip=True,
                          desc=f"dead units layer {layer.number} start {s}")
            df = describe_images(model, img, layer, units)
            best = np.maximum(best, df["activation"].to_numpy())
        census.loc[group.index, "optimised_activation"] = best
        census.loc[group.index, "revivable"] = best > 0
    return census


def census_summary(census: pd.DataFrame) -> pd.DataFrame:
    """Per layer: units, dead, dead share, revivable dead, dead tried by optimisation."""
    g = census.groupby(["layer", "layer_name"], sort=True)
    out = g.agg(units=("unit", "size"), dead=("dead", "sum"),
                tried=("optimised_activation", lambda s: int(s.notna().sum())),
                revivable=("revivable", "sum")).reset_index()
    out["dead_fraction"] = out["dead"] / out["units"]
    return out


def coactivation_clusters(samples: Mapping[str, np.ndarray], census: pd.DataFrame,
                          threshold: float = 0.9, min_size: int = 2) -> pd.DataFrame:
    """Groups of living hidden units that activate together.

    For each layer, the Pearson correlation of the units' activations over the sampled images;
    average-linkage clustering with distance 1 - correlation, cut at 1 - `threshold`; clusters of
    at least `min_size` units are kept. Returns one row per clustered unit: `layer`, `layer_name`,
    `unit`, `cluster` (0.. per layer, largest first), `cluster_size`, `mean_correlation` (the
    cluster's mean pairwise correlation), `active_fraction`.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    rows = []
    for (number, name), group in census.groupby(["layer", "layer_name"], sort=True):
        acts = samples.get(name)
        alive = group[(group["active_fraction"] > 0)]
        if acts is None or len(acts) < 3 or len(alive) < 2:
            continue
        units = alive["unit"].to_numpy()
        a = acts[:, units].astype(np.float64)
        keep = a.std(axis=0) > 0  # a unit active on no sampled image has no correlation
        units, a = units[keep], a[:, keep]
        if len(units) < 2:
            continue
        corr = np.nan_to_num(np.corrcoef(a, rowvar=False), nan=0.0)
        dist = np.clip(1.0 - corr, 0.0, 2.0)
        np.fill_diagonal(dist, 0.0)
        dist = (dist + dist.T) / 2
        labels = fcluster(linkage(squareform(dist, checks=False), method="average"),
                          t=1.0 - threshold, criterion="distance")
        ids, sizes = np.unique(labels, return_counts=True)
        big = [(s, i) for i, s in zip(ids, sizes) if s >= min_size]
        big.sort(key=lambda t: (-t[0], int(np.flatnonzero(labels == t[1])[0])))
        frac = dict(zip(alive["unit"], alive["active_fraction"]))
        for c, (size, lab) in enumerate(big):
            members = np.flatnonzero(labels == lab)
            sub = corr[np.ix_(members, members)]
            mean_corr = float((sub.sum() - size) / (size * (size - 1)))
            for m in members:
                rows.append({"layer": int(number), "layer_name": name, "unit": int(units[m]),
                             "cluster": c, "cluster_size": int(size),
                             "mean_correlation": mean_corr,
                             "active_fraction": float(frac[units[m]])})
    cols = ["layer", "layer_name", "unit", "cluster", "cluster_size", "mean_correlation",
            "active_fraction"]
    return pd.DataFrame(rows, columns=cols)


def coactivation_matrix(samples: Mapping[str, np.ndarray], clusters: pd.DataFrame, layer: int,
                        max_units: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlation matrix of a layer's clustered units (largest clusters first, at most
    `max_units`), for the figure. Returns (corr (m, m), units (m,), cluster ids (m,))."""
    sub = clusters[clusters["layer"] == layer].sort_values(["cluster", "unit"]).head(max_units)
    if sub.empty:
        return np.zeros((0, 0)), np.zeros(0, int), np.zeros(0, int)
    acts = samples[sub["layer_name"].iloc[0]][:, sub["unit"].to_numpy()].astype(np.float64)
    return np.corrcoef(acts, rowvar=False), sub["unit"].to_numpy(), sub["cluster"].to_numpy()


def census_analysis(model, images: np.ndarray, opt: Optimiser, *, batch_size: int = 1024,
                    steps: int = 50, random_starts: int = 2, max_optimised: int | None = 512,
                    coactivation_samples: int = 5000, coactivation_threshold: float = 0.9,
                    coactivation_units_shown: int = 60) -> dict[str, pd.DataFrame]:
    """Figure set 6 as one job, on the training images (N, C, H, W).

    Returns tables: `dead_neurons` (per unit: census + revival), `dead_summary` (per layer),
    `coactivation_clusters` (per clustered unit) and `coactivation_matrix` (long format: layer,
    row_unit, col_unit, correlation of the shown units, largest clusters first).
    """
    census, samples = activation_census(model, images, batch_size=batch_size,
                                        keep=coactivation_samples, random_state=opt.seed)
    census = revive_dead(model, census, opt, steps=steps, random_starts=random_starts,
                         max_units=max_optimised)
    clusters = coactivation_clusters(samples, census, threshold=coactivation_threshold)
    parts = []
    for layer in sorted(clusters["layer"].unique()):
        corr, units, _ = coactivation_matrix(samples, clusters, int(layer), coactivation_units_shown)
        r, c = np.meshgrid(units, units, indexing="ij")
        parts.append(pd.DataFrame({"layer": int(layer), "row_unit": r.ravel().astype(np.int64),
                                   "col_unit": c.ravel().astype(np.int64),
                                   "correlation": corr.ravel().astype(np.float64)}))
    matrix = (pd.concat(parts, ignore_index=True) if parts else
              pd.DataFrame({"layer": pd.Series(dtype=np.int64), "row_unit": pd.Series(dtype=np.int64),
                            "col_unit": pd.Series(dtype=np.int64),
                            "correlation": pd.Series(dtype=np.float64)}))
    return {"dead_neurons": census, "dead_summary": census_summary(census),
            "coactivation_clusters": clusters, "coactivation_matrix": matrix}


# --------------------------------------------------------------------------------------------
# Workflow glue: loading, settings, files


def prepare_model(model: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """Move a classifier to `device` (default: CUDA when present), eval mode, weights frozen."""
    model = model.to(device or pick_device()).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def optimiser_from_config(section: Mapping, seed: int = 0) -> Optimiser:
    """The shared optimisation settings from config `featureviz:`."""
    return Optimiser(lr=float(section.get("lr", 0.1)),
                     clip_regulariser_gradients=bool(section.get("clip_regulariser_gradients", False)),
                     output_objective=str(section.get("output_objective", "probability")),
                     seed=int(seed))


def save_result(table: pd.DataFrame, images: np.ndarray, table_path, images_path,
                metadata: Mapping | None = None, **arrays: np.ndarray) -> None:
    """Write a figure set's table (Parquet, with metadata) and its images (npz: `images`, extras)."""
    from .io import write_npz, write_parquet

    write_parquet(table, table_path, metadata=dict(metadata or {}))
    write_npz(images_path, images=np.asarray(images, dtype=np.float32), **arrays)


def class_names_of(model: nn.Module) -> list[str]:
    """The class names stored with the model (model.pt), else "0".."K-1"."""
    names = list(getattr(model, "class_names", []) or [])
    return names or [str(c) for c in range(int(model.n_classes))]


def result_metadata(model: nn.Module, smk, class_names: Sequence[str] | None = None) -> dict:
    """Key-value metadata of every featureviz table: where it came from and with which settings."""
    from .io import library_versions

    return {"dataset": smk.wildcards.dataset, "model": smk.wildcards.model,
            "arch": getattr(model, "arch", type(model).__name__),
            "class_names": list(class_names or class_names_of(model)),
            "optimiser": dict(smk.params.optimiser), "settings": dict(smk.params.settings),
            "versions": library_versions()}
