"""Activation maximisation: gradient ascent on input images, with clipping, TV and L1.

Reproduces the optimiser of a study of what the hidden neurons of a non-convolutional MNIST
classifier (784-1250-1000-750-500-250-100-32-10, ReLU, softmax) respond to: input images are
optimised by plain gradient ascent to activate one chosen neuron (a softmax probability for the
output layer, a post-ReLU activation for hidden layers; `layers.layer_function`), with optional
total-variation (TV) and L1 regularisers, a penalty on the other neurons of the layer, jitter, and
clipping of the pixels to [0, 1].

TV (anisotropic: |vertical| + |horizontal| neighbour differences, the study's definition) is not
differentiable where neighbours are equal. The study steps along its sign subgradient with the same
fixed learning rate as the activation; such a step never converges: each pixel ends up jumping by
about 4 * lr * weight every step, in a 2-cycle against its neighbours, and at weights >= 0.128 (lr
0.1) that oscillation is a checkerboard over every image. `tv_step="subgradient"` is that literal
update, the default (config `featureviz.tv_step` absent) so the study's figures are reproduced.
With `tv_step="proximal"` the TV term is taken by its proximal operator instead (forward-backward
splitting, the standard method for a smooth objective plus TV): the same objective, weights and
learning rate, but the iterates settle, so higher TV gives smoother images (and at the output
neurons' upper weights, whose optimum is a near-uniform image, flat ones).

The study's key detail is how the clip enters the gradient. The image is kept as raw values `x`;
the network sees `clip(x, 0, 1)`. The clip's derivative (1 inside [0, 1], 0 outside) multiplies
the activation gradient, so a pixel pushed past a bound gets no more activation gradient. If it
also multiplied the regulariser gradients, such a pixel would be stuck at the bound for good
(images look unregularised); the study leaves the regulariser gradients unclipped so TV and L1
can pull pixels back. `clip_regulariser_gradients=False` is the study's choice.

The engine (`maximise_activation`) optimises a batch with one image per target at once, on the
model's device; `Optimiser` holds the settings every optimisation of a run shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from latent_atlas.schema import with_defaults
from latent_atlas.devices import default_device, model_device
from latent_atlas.featureviz.layers import Layer, LayerFn, layer_function

STARTS = ("zero", "random")
TV_STEPS = ("proximal", "subgradient")
TV_PROX_ITERATIONS = 20  # dual steps per optimisation step, warm-started (see total_variation_prox)


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


def _tv_adjoint(pv: torch.Tensor, ph: torch.Tensor) -> torch.Tensor:
    """D^T of the neighbour differences used by `total_variation`: pv (B, C, H-1, W) holds one
    value per vertical pair, ph (B, C, H, W-1) one per horizontal pair. Returns (B, C, H, W)."""
    b, c, h, w = pv.shape[0], pv.shape[1], pv.shape[2] + 1, pv.shape[3]
    g = pv.new_zeros((b, c, h, w))
    g[:, :, 1:, :] += pv
    g[:, :, :-1, :] -= pv
    g[:, :, :, 1:] += ph
    g[:, :, :, :-1] -= ph
    return g


def total_variation_prox(v: torch.Tensor, lam: torch.Tensor, iterations: int,
                         dual: tuple[torch.Tensor, torch.Tensor] | None = None
                         ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Proximal operator of `total_variation`: argmin_z 1/2 |z - v|^2 + lam * TV(z), per image.

    Solved on the dual (Beck & Teboulle's fast gradient projection for anisotropic TV): z =
    v - D^T p with one dual value per neighbour pair, each kept in [-lam, lam]; `iterations`
    accelerated projected-gradient steps of size 1/8 (|D D^T| <= 8 on a 2-D grid). A fixed
    count keeps it deterministic; `dual` warm-starts it (the previous call's), so a few steps
    per call suffice inside an optimisation whose image changes little from step to step.

    v : (B, C, H, W); lam : (B, 1, 1, 1) (0: z = v exactly). Returns z and the dual (pv, ph).
    """
    b, c, h, w = v.shape
    if dual is None:
        dual = (v.new_zeros((b, c, h - 1, w)), v.new_zeros((b, c, h, w - 1)))
    pv, ph = dual
    rv, rh = pv, ph
    t = 1.0
    for _ in range(int(iterations)):
        z = v - _tv_adjoint(rv, rh)
        nv = torch.minimum(torch.maximum(rv + (z[:, :, 1:, :] - z[:, :, :-1, :]) / 8.0, -lam), lam)
        nh = torch.minimum(torch.maximum(rh + (z[:, :, :, 1:] - z[:, :, :, :-1]) / 8.0, -lam), lam)
        t_next = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
        momentum = (t - 1.0) / t_next
        rv, rh = nv + momentum * (nv - pv), nh + momentum * (nh - ph)
        pv, ph, t = nv, nh, t_next
    return v - _tv_adjoint(pv, ph), (pv, ph)


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
    clip_regulariser_gradients: bool,
    tv_step: str,
    max_linf: float | None = None,
    device: torch.device | str | None = None,
    random_state: int = 0,
    progress: bool = True,
    desc: str = "featureviz",
) -> np.ndarray:
    """Gradient ascent on a batch of input images, one image per target neuron.

    Each step maximises, per image b,
    ``act[b, t_b] - penalty * mean(act[b, others]) - tv * TV(x_b) - l1 * L1(x_b)``
    with plain gradient steps ``x += lr * gradient`` (the study's optimiser) on every term but TV,
    which `tv_step` handles: "proximal" (forward-backward splitting: after the gradient step, the
    image the network sees moves to the proximal point of lr * tv * TV, `total_variation_prox`)
    or "subgradient" (the study's literal update, ``- lr * tv * sign`` differences). TV is not
    differentiable; a fixed-size subgradient step never settles but ends in a 2-cycle of about
    4 * lr * tv per pixel, which at high weights leaves a checkerboard in every image. The
    proximal step minimises the same objective and converges at any weight.

    Parameters
    ----------
    layer_fn : callable, x (B, C, H, W) -> (B, units)
        Activation of the target layer (see `layers.layer_function`); must treat images independently.
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
    tv_step : {"proximal", "subgradient"}
        How the TV term moves the image (above). Both take it on the clipped image the network
        sees and move the raw values by as much, as the study's gradient did.
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
    if tv_step not in TV_STEPS:
        raise ValueError(f"tv_step must be one of {TV_STEPS}, got {tv_step!r}")
    proximal = tv_step == "proximal" and bool((tv_w != 0).any())
    tv_lam = float(lr) * tv_w
    dual = None
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
            reg = l1_w * l1_grad(xc)
            if not proximal:
                reg = reg + tv_w * total_variation_grad(xc)
            if clip and clip_regulariser_gradients:
                reg = reg * inside
            grad = grad - reg
        x = x + lr * grad
        if proximal:
            seen_next = x.clamp(0.0, 1.0) if clip else x
            smoothed, dual = total_variation_prox(seen_next, tv_lam, TV_PROX_ITERATIONS, dual)
            move = smoothed - seen_next
            if clip and clip_regulariser_gradients:
                move = move * inside
            x = x + move
        if max_linf is not None:
            x = x0 + (x - x0).clamp(-max_linf, max_linf)
    out = x.clamp(0.0, 1.0) if clip else x
    return out.detach().cpu().numpy().astype(np.float32)


@dataclass(frozen=True)
class Optimiser:
    """Settings shared by every optimisation of a run (config `featureviz:` top level), and the
    seed of its starts and jitter. `run` optimises one batch of a model's layer with them."""

    lr: float
    clip_regulariser_gradients: bool
    tv_step: str
    output_objective: str
    seed: int
    progress: bool = True

    @classmethod
    def from_config(cls, section: Mapping, seed: int, progress: bool = True) -> "Optimiser":
        """The settings of config `featureviz:` (schema defaults filled in) with the run's seed."""
        section = with_defaults(section, "#/properties/featureviz", "featureviz")
        return cls(lr=float(section["lr"]),
                   clip_regulariser_gradients=bool(section["clip_regulariser_gradients"]),
                   tv_step=str(section.get("tv_step", "subgradient")), output_objective=str(section["output_objective"]),
                   seed=int(seed), progress=progress)

    def starts(self, kind: str, n: int, model: nn.Module) -> np.ndarray:
        """`n` seeded starting images of `kind` for `model`'s input, (n, C, H, W) float32."""
        return start_images(kind, n, model.input_shape, random_state=self.seed)

    def run(self, model: nn.Module, layer: Layer, targets, start, *, steps, objective=None,
            desc="featureviz", **kwargs) -> np.ndarray:
        """`maximise_activation` of `layer`'s units `targets` from `start` on the model's device;
        `objective` replaces the output objective, `kwargs` (lr, tv, l1, ...) the engine's."""
        fn = layer_function(model, layer, objective or self.output_objective)
        kwargs.setdefault("lr", self.lr)
        kwargs.setdefault("clip_regulariser_gradients", self.clip_regulariser_gradients)
        kwargs.setdefault("tv_step", self.tv_step)
        return maximise_activation(fn, targets, start, steps=steps, device=model_device(model),
                                   random_state=self.seed, progress=self.progress, desc=desc,
                                   **kwargs)


def prepare_model(model: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """Move a classifier to `device` (default: CUDA when present), eval mode, weights frozen: the
    optimisation differentiates with respect to the input only."""
    model = model.to(device or default_device()).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
