"""Receptive-field-local permutation importance for convolutional encoders (`method="local"`).

A pixel's change reaches only its receptive field: through a convolution or pooling with kernel
k, stride s and padding p, a changed input region [a, b] (per axis, inclusive) changes exactly the
outputs o with o * s - p <= b and o * s - p + k - 1 >= a. So for each (pixel, permutation) and
each image whose pixel value changed, the path recomputes only that window, layer by layer,
from a window of the layer's cached input (the unpermuted images' activations) with the new
values spliced in. At the first dense layer the change of the flattened window updates the
cached pre-activation, pre' = pre + W[:, window] @ (new - old) (a rank-k update, k the window's
size), and the rest of the network (the dense tail) runs on the updated rows only. The numbers
are the naive loop's to float32 rounding; windows of one pixel share their shapes at every
layer, so all changed images of a pixel (all its permutations) go through each layer as one
batch, in chunks of `batch_size`.

A convolution is linear, so where its changed input region is no larger than its kernel (and
the matrix below fits `MAP_BYTES`) it is not recomputed on the window: the new output region is
the cached output plus the change of the input region times the convolution's matrix from that
region to the output region (taken from the weight once per layer and window geometry and kept
on the stack for later calls; interior pixels share it). Pooling and larger changed regions run
on the window as above. The cached values a pixel reads are
sliced once per pixel and image chunk and gathered per batch with index_select; where a pixel's
value changes in at least `FULL_FRACTION` of the (image, permutation) rows (central pixels), every
row runs instead, reading the cached values in place, broadcast over permutations, with no gather
(an unchanged row gets its own value: an exact zero change that adds exactly zero).

A model is described by a `LocalStack` built from the list of layers its output function runs
(`local_stack`): Conv2d (any stride, padding and groups; dilation 1, zero padding), MaxPool2d and
AvgPool2d (dilation 1, ceil mode allowed), elementwise layers (activations, BatchNorm2d and
Dropout in eval mode, Identity, `ChannelAffine`), then Flatten, a Linear, and any dense tail.
Given the output function, the stack is checked to reproduce it on a seeded probe batch; a list that does not is
refused (the caller falls back to `rows`).

Memory: the cache holds, per image, the input and output of every convolution and pooling, the
flattened map before the first Linear and its pre-activation, in float32. Images are processed in chunks
whose cache fits `CACHE_BYTES` (the permuted values come from the pixel's column over all N
images, so chunks are independent); the windows of a batch add batch_size x (largest window).
The stack keeps its delta matrices (each at most `MAP_BYTES`, one per layer and window geometry:
a few dozen for a whole image) for as long as it lives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latent_atlas.models.chain import ChannelAffine

CACHE_BYTES = 1 << 30  # the activation cache of one chunk of images (bytes), without a memory budget
# A job's memory grows by about this many times the chunk's cache (the cache itself, the copies of
# its windows sliced per pixel, the transients of computing it): measured with
# `python benchmarks/importance.py --memory` (docs/benchmarks.md).
CACHE_FACTOR = 2.0
MAP_BYTES = 1 << 25  # the largest delta matrix of a convolution (bytes); larger ones run on windows
FULL_FRACTION = 0.85  # a pixel whose value changes in this share of rows runs on all rows, ungathered

ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
               nn.Mish, nn.Softplus, nn.Hardtanh, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.PReLU,
               nn.Identity, ChannelAffine)
EVAL_ONLY = (nn.BatchNorm2d, nn.Dropout, nn.Dropout2d)


@dataclass
class _Window:
    """A convolution or pooling step: how an input region maps to the outputs it changes."""
    module: nn.Module
    kind: str  # "conv", "max" or "avg"
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass
class LocalStack:
    """A model function as spatial steps (`_Window` or elementwise modules), then Flatten, the
    first Linear and the dense tail (a module mapping its pre-activation to the output)."""
    steps: list
    linear: nn.Linear
    tail: nn.Module
    # The delta matrices of its convolutions, by layer, window geometry and weight version: built
    # once per stack, shared by the calls of a job (`_step_plan`).
    maps: dict = field(default_factory=dict, repr=False, compare=False)

    def cache(self, x: torch.Tensor):
        """The inputs of the window steps (None for elementwise steps), the map before Flatten
        (B, C, H, W) and the first Linear's pre-activation (B, h) of the image batch x."""
        inputs = []
        for step in self.steps:
            inputs.append(x if isinstance(step, _Window) else None)
            x = _apply(step, x)
        return inputs, x, self.linear(x.flatten(1))

    def activations(self, x: torch.Tensor):
        """As `cache`, with the outputs of the window steps too: (inputs, outputs, map, pre)."""
        inputs, outputs = [], []
        for step in self.steps:
            window = isinstance(step, _Window)
            inputs.append(x if window else None)
            x = _apply(step, x)
            outputs.append(x if window else None)
        return inputs, outputs, x, self.linear(x.flatten(1))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.cache(x)[2])


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _apply(step, x):
    if not isinstance(step, _Window):
        return step(x)
    if step.kind == "max" and _tiles(step) and not step.module.ceil_mode:
        (kh, kw), (h, w) = step.kernel, x.shape[2:]
        return _tile_max(x[:, :, :h // kh * kh, :w // kw * kw], step.kernel)
    return step.module(x)


def _tiles(step: _Window) -> bool:
    """A pooling whose windows tile the map (kernel = stride, no padding)."""
    return step.kernel == step.stride and step.padding == (0, 0)


def _tile_max(x: torch.Tensor, kernel) -> torch.Tensor:
    """max_pool2d with kernel = stride and no padding on a map whose size the kernel divides: the
    same values (a max is exact), without max_pool2d's index bookkeeping."""
    kh, kw = kernel
    y = x[:, :, :, 0::kw]
    for j in range(1, kw):
        y = torch.maximum(y, x[:, :, :, j::kw])
    out = y[:, :, 0::kh]
    for i in range(1, kh):
        out = torch.maximum(out, y[:, :, i::kh])
    return out


def _flat(layers) -> list[nn.Module]:
    out = []
    for layer in layers:
        out += _flat(layer) if isinstance(layer, nn.Sequential) else [layer]
    return out


def _window_step(layer: nn.Module):
    """The `_Window` of a convolution or pooling layer, or a ValueError saying what is unsupported."""
    name = type(layer).__name__
    if isinstance(layer, nn.Conv2d):
        if _pair(layer.dilation) != (1, 1) or layer.padding_mode != "zeros":
            raise ValueError(f"unsupported layer {name} (dilation {layer.dilation}, padding_mode "
                             f"{layer.padding_mode!r}; needs dilation 1 and zero padding)")
        kernel = _pair(layer.kernel_size)
        padding = layer.padding
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
                raise ValueError(f"unsupported layer {name} (padding 'same' with an even kernel)")
            padding = (kernel[0] // 2, kernel[1] // 2)
        return _Window(layer, "conv", kernel, _pair(layer.stride), _pair(padding))
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        if isinstance(layer, nn.MaxPool2d) and (_pair(layer.dilation) != (1, 1) or layer.return_indices):
            raise ValueError(f"unsupported layer {name} (dilation or return_indices)")
        kind = "max" if isinstance(layer, nn.MaxPool2d) else "avg"
        kernel = _pair(layer.kernel_size)
        stride = _pair(layer.stride if layer.stride is not None else layer.kernel_size)
        return _Window(layer, kind, kernel, stride, _pair(layer.padding))
    return None


def local_stack(layers: Sequence[nn.Module], model_fn=None, input_shape=None, device=None) -> LocalStack:
    """The `LocalStack` of `layers` (run in order, nested nn.Sequential flattened).

    With `model_fn` and `input_shape` (C, H, W), the stack must reproduce model_fn on a seeded
    probe batch of 4 images in [0, 1] to 1e-6 relative (of the largest output). Raises ValueError
    naming the first unsupported layer, or saying the list does not reproduce the model.
    """
    layers = _flat(layers)
    steps: list = []
    i = 0
    while i < len(layers) and not isinstance(layers[i], nn.Flatten):
        layer = layers[i]
        window = _window_step(layer)
        if window is not None:
            steps.append(window)
        elif isinstance(layer, ELEMENTWISE):
            steps.append(layer)
        elif isinstance(layer, EVAL_ONLY):
            if layer.training or (isinstance(layer, nn.BatchNorm2d) and layer.running_mean is None):
                raise ValueError(f"unsupported layer {type(layer).__name__} in training mode (call model.eval())")
            steps.append(layer)
        else:
            raise ValueError(f"unsupported layer {type(layer).__name__} before the first Linear")
        i += 1
    if i == len(layers):
        raise ValueError("no Flatten followed by a Linear (the stack needs a dense layer on the flattened map)")
    flatten = layers[i]
    if flatten.start_dim != 1 or flatten.end_dim != -1:
        raise ValueError(f"unsupported layer Flatten(start_dim={flatten.start_dim}, end_dim={flatten.end_dim})")
    if i + 1 == len(layers) or not isinstance(layers[i + 1], nn.Linear):
        after = type(layers[i + 1]).__name__ if i + 1 < len(layers) else "nothing"
        raise ValueError(f"unsupported layer {after} after Flatten (needs a Linear)")
    stack = LocalStack(steps, layers[i + 1], nn.Sequential(*layers[i + 2:]))
    if model_fn is not None and input_shape is not None:
        gen = torch.Generator().manual_seed(0)
        probe = torch.rand((4, *input_shape), generator=gen).to(device or "cpu")
        with torch.no_grad():
            want, got = model_fn(probe).float(), stack(probe).float()
        if want.shape != got.shape or not (got - want).abs().max() <= 1e-6 * max(1.0, float(want.abs().max())):
            raise ValueError("the layer list does not reproduce the model's output on a probe batch")
    return stack


# --------------------------------------------------------------------------------------------
def _affected(a: int, b: int, k: int, s: int, p: int, size: int) -> tuple[int, int]:
    """Outputs [lo, hi] (inclusive; empty when lo > hi) that read any input in [a, b]."""
    return max(0, -((k - 1 - a - p) // s)), min(size - 1, (b + p) // s)


def _region_plan(stack: LocalStack, shapes, region):
    """Per window step, for the region a change of the input region ((r0, r1), (c0, c1)) (inclusive)
    reaches: the output region and the input region it reads ((lo, hi) per axis, inclusive,
    possibly beyond the map). None when the change reaches no output."""
    plan = []
    for step, (h_in, w_in), (h_out, w_out) in shapes:
        if not isinstance(step, _Window):
            plan.append(None)
            continue
        out, need = [], []
        for (a, b), k, s, p, size in zip(region, step.kernel, step.stride, step.padding, (h_out, w_out)):
            lo, hi = _affected(a, b, k, s, p, size)
            if lo > hi:
                return None
            out.append((lo, hi))
            need.append((lo * s - p, hi * s - p + k - 1))
        plan.append((region, tuple(out), tuple(need)))
        region = tuple(out)
    return plan, region


def _divisor(step: _Window, h: int, w: int, size_out, device) -> torch.Tensor:
    """The divisor of each output of an AvgPool2d on an (h, w) map: (1, 1, H_out, W_out)."""
    ones = torch.ones((1, 1, h, w), device=device)
    mean = step.module(ones)
    if step.module.divisor_override:
        return torch.full_like(mean, float(step.module.divisor_override))
    # The count of in-map elements of each output's window over the layer's mean of ones.
    (ph, pw), (sh, sw), (kh, kw) = step.padding, step.stride, step.kernel
    bottom = max(0, (size_out[0] - 1) * sh - ph + kh - h)
    right = max(0, (size_out[1] - 1) * sw - pw + kw - w)
    counts = _window_op(step, F.pad(ones, (pw, right, ph, bottom)), None)
    return torch.round(counts[:, :, :size_out[0], :size_out[1]] / mean)


def _window_op(step: _Window, ctx: torch.Tensor, divisor) -> torch.Tensor:
    """The step on an explicitly padded window: every output position is a full kernel window."""
    m = step.module
    if step.kind == "conv":
        return F.conv2d(ctx, m.weight, m.bias, step.stride, 0, 1, m.groups)
    if step.kind == "max":
        if step.kernel == step.stride:  # the window is an exact multiple of the kernel
            return _tile_max(ctx, step.kernel)
        return F.max_pool2d(ctx, step.kernel, step.stride)
    sums = F.avg_pool2d(ctx, step.kernel, step.stride, divisor_override=1)
    return sums if divisor is None else sums / divisor


def _cache_bytes(inputs, outputs, final, pre) -> int:
    """Bytes of the activation cache `stack.activations` returned (float32)."""
    return 4 * (sum(t.numel() for t in inputs + outputs if t is not None) + final.numel() + pre.numel())


def cache_per_image(stack: LocalStack, image_shape, device=None) -> int:
    """Bytes of the activation cache of one image (every window step's input and output, the
    flattened map and the first Linear's pre-activation, float32)."""
    with torch.no_grad():
        return _cache_bytes(*stack.activations(torch.zeros((1, *image_shape), device=device or "cpu")))


def cache_plan(stack: LocalStack, image_shape, n_images: int, memory_bytes: float, device=None) -> tuple[int, int]:
    """(images per chunk, predicted working bytes) of the local path within `memory_bytes`: the
    chunk whose cache times `CACHE_FACTOR` fits (at least one image)."""
    per_image = cache_per_image(stack, image_shape, device)
    chunk = max(1, min(int(n_images), int(memory_bytes / CACHE_FACTOR) // per_image))
    return chunk, int(CACHE_FACTOR * chunk * per_image)


@torch.no_grad()
def local_importance(stack: LocalStack, x, groups, perms, n_perm, batch_size, device,
                     return_base=False, cache_bytes: int = CACHE_BYTES):
    """Per (group, permutation) mean squared change of every output, (G, n_perm, d) float64, every
    image's terms (G, N, d) float32 (`inference`), and with `return_base` the unpermuted outputs
    (N, d) float32 on the CPU as well.

    x : ndarray (N, C, H, W); groups : flat pixel indices of each group (a pixel alone, a patch, a
    superpixel), whose bounding box is the changed input region; perms : `engine.GroupPermutations`.
    cache_bytes : the activation cache of one chunk of images (`cache_plan`).
    """
    n, c, h, w = x.shape
    x_t = torch.as_tensor(x)
    # Each step's input and output sizes, and the cache size of one image.
    shapes, probe = [], x_t[:1].to(device)
    for step in stack.steps:
        out = _apply(step, probe)
        shapes.append((step, tuple(probe.shape[2:]), tuple(out.shape[2:])))
        probe = out
    inputs, outputs, final, pre = stack.activations(x_t[:1].to(device))
    per_image = _cache_bytes(inputs, outputs, final, pre)
    chunk = max(1, min(n, int(cache_bytes) // per_image))
    divisors = [_divisor(s, *size_in, size_out, device) if isinstance(s, _Window) and s.kind == "avg"
                else None for s, size_in, size_out in shapes]
    fc, fh, fw = final.shape[1:]
    weight = stack.linear.weight.detach().float()
    d = stack.tail(pre).shape[1]
    acc = torch.zeros(len(groups) * n_perm, d, dtype=torch.float64, device=device)
    terms = torch.zeros(len(groups) * n, d, device=device)
    # Each group's bounding box (the changed region), the group's pixels in it, and its values.
    boxes, masks, plans = [], [], []
    for g in groups:
        rr, cc = np.divmod(np.asarray(g, dtype=np.int64), w)
        box = ((int(rr.min()), int(rr.max())), (int(cc.min()), int(cc.max())))
        mask = np.zeros((box[0][1] - box[0][0] + 1, box[1][1] - box[1][0] + 1), dtype=bool)
        mask[rr - box[0][0], cc - box[1][0]] = True
        boxes.append(box)
        masks.append(None if mask.all() else torch.as_tensor(mask, device=device))
        plans.append(_region_plan(stack, shapes, box))
    maps = stack.maps
    flat = x.reshape(n, c, h * w)
    # Changed rows and where their group values come from, of every (group, permutation), once.
    changed = []
    for gi, g in enumerate(groups):
        col = flat[:, :, g]
        per_group = []
        for k in range(n_perm):
            perm = perms(gi, k)
            rows = np.flatnonzero(np.any(col[perm] != col, axis=(1, 2)))
            per_group.append((rows, perm[rows].copy()))
        changed.append(per_group)

    def box_values(gi, src, own):
        """The new values of the group's box, (B, C, bh, bw): the group's pixels from the `src`
        images, the rest of the box from the rows' `own` images."""
        (ya, yb), (xa, xb) = boxes[gi]
        new = x_t[src, :, ya:yb + 1, xa:xb + 1].to(device)
        if masks[gi] is not None:
            new = torch.where(masks[gi], new, x_t[own, :, ya:yb + 1, xa:xb + 1].to(device))
        return new

    bases = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        inputs, outputs, final, pre = stack.activations(x_t[start:stop].to(device))
        base = stack.tail(pre).float()
        bases.append(base.cpu().numpy())
        for gi in range(len(groups)):
            if plans[gi] is None:
                continue
            plan, region = plans[gi]
            rows, sources, counts = [], [], []
            for r_all, src_all in changed[gi]:
                inside = (r_all >= start) & (r_all < stop)
                rows.append(r_all[inside] - start)
                sources.append(src_all[inside])
                counts.append(int(inside.sum()))
            rows, sources = np.concatenate(rows), np.concatenate(sources)
            if not len(rows):
                continue
            keys = np.repeat(np.arange(n_perm), counts)
            # Per window step, the chunk's cached values the path reads, sliced once per group.
            steps = [_step_plan(stack, j, lp, inputs[j], outputs[j], divisors[j], maps)
                     if lp is not None else None for j, lp in enumerate(plan)]
            (ya, yb), (xa, xb) = region
            chans = torch.arange(fc, device=device)[:, None, None]
            idx = ((chans * fh + torch.arange(ya, yb + 1, device=device)[:, None]) * fw
                   + torch.arange(xa, xb + 1, device=device)).reshape(-1)
            w_cols = weight[:, idx].T.contiguous()
            old_final = final[:, :, ya:yb + 1, xa:xb + 1].reshape(stop - start, -1).contiguous()
            m = stop - start
            if len(rows) >= FULL_FRACTION * n_perm * m:
                # Nearly every row changes: run every row of every permutation, reading the
                # cached values in place (broadcast over permutations) instead of gathering
                # them. An unchanged row gets its own value: an exact zero change throughout.
                src = np.tile(np.arange(start, stop), n_perm)
                src[keys * m + rows] = sources
                src = src.reshape(n_perm, m)
                size = min(m, batch_size)  # rows of the chunk per call, times `per` permutations
                per = max(1, batch_size // size)
                for r0 in range(0, m, size):
                    r1 = min(m, r0 + size)
                    for k0 in range(0, n_perm, per):
                        k1 = min(n_perm, k0 + per)
                        own = np.tile(np.arange(start + r0, start + r1), k1 - k0)
                        src_k = src[k0:k1, r0:r1].reshape(-1)
                        win = _propagate(stack, steps, slice(r0, r1), box_values(gi, src_k, own))
                        delta = win.reshape(k1 - k0, r1 - r0, -1)
                        delta = delta.sub_(old_final[r0:r1]) if delta.is_contiguous() else delta - old_final[r0:r1]
                        z = torch.mm(delta.view(-1, delta.shape[2]), w_cols).view(k1 - k0, r1 - r0, -1)
                        z = stack.tail(z.add_(pre[r0:r1]).view(-1, pre.shape[1])).float()
                        sq = (z.view(k1 - k0, r1 - r0, -1) - base[r0:r1]).double().square_()
                        acc[gi * n_perm + k0:gi * n_perm + k1] += sq.sum(1)
                        flat_sq = sq.view(-1, sq.shape[2]).float()
                        terms.index_add_(0, torch.as_tensor(gi * n + own, device=device), flat_sq)
                        terms.index_add_(0, torch.as_tensor(gi * n + src_k, device=device), flat_sq)
                continue
            for s in range(0, len(rows), batch_size):
                rows_np = rows[s:s + batch_size]
                src_np = sources[s:s + batch_size]
                rows_t = torch.as_tensor(rows_np, device=device)
                win = _propagate(stack, steps, rows_t, box_values(gi, src_np, rows_np + start))
                delta = win.reshape(len(rows_t), -1) - old_final.index_select(0, rows_t)
                z = stack.tail(torch.addmm(pre.index_select(0, rows_t), delta, w_cols))
                sq = (z.float() - base.index_select(0, rows_t)).double().square()
                terms.index_add_(0, torch.as_tensor(gi * n + start + rows_np, device=device), sq.float())
                terms.index_add_(0, torch.as_tensor(gi * n + src_np, device=device), sq.float())
                # Per-permutation sums: the batch's rows are sorted by permutation.
                seg = keys[s:s + batch_size]
                cuts = [0, *(np.flatnonzero(np.diff(seg)) + 1), len(seg)]
                for a, b in zip(cuts[:-1], cuts[1:]):
                    acc[gi * n_perm + int(seg[a])] += sq[a:b].sum(0)
    values = (acc / n).view(len(groups), n_perm, -1).cpu().numpy()
    terms = terms.view(len(groups), n, -1).cpu().numpy()
    return (values, terms, np.concatenate(bases)) if return_base else (values, terms)


def _delta_map(step: _Window, cin: int, rel, out_hw) -> torch.Tensor:
    """The linear map of a convolution (no bias) from a change on the input region `rel` (its
    (lo, hi) per axis relative to the read window) to the output region out_hw:
    (Cin * region size, Cout * out size), rows in (channel, y, x) order, columns in (channel,
    oy, ox) order. Entry ((ci, y, x), (co, oy, ox)) is the kernel tap that output (oy, ox) puts on
    input (y, x), taken from the weight (zero where the kernel does not reach, or ci and co lie in
    different groups): what convolving one-hot inputs gives, without running a convolution."""
    (r0, r1), (c0, c1) = rel
    (kh, kw), (sh, sw) = step.kernel, step.stride
    oh, ow = out_hw
    m = step.module
    wgt = m.weight.detach().float()  # (Cout, Cin / groups, kh, kw)
    dev = wgt.device
    cout, cin_g = wgt.shape[:2]
    groups = m.groups
    # Kernel row of output oy on window row y: y - oy * sh (valid in [0, kh)); the same per column.
    ky = torch.arange(r0, r1 + 1, device=dev)[:, None] - torch.arange(oh, device=dev)[None] * sh
    kx = torch.arange(c0, c1 + 1, device=dev)[:, None] - torch.arange(ow, device=dev)[None] * sw
    taps = wgt[:, :, ky.clamp(0, kh - 1)][..., kx.clamp(0, kw - 1)]  # (Cout, Cin_g, rh, oh, rw, ow)
    valid = ((ky >= 0) & (ky < kh))[:, :, None, None] & ((kx >= 0) & (kx < kw))[None, None]
    taps = torch.where(valid, taps, torch.zeros((), device=dev))
    taps = taps.permute(1, 2, 4, 0, 3, 5)  # (Cin_g, rh, rw, Cout, oh, ow)
    rh, rw = r1 - r0 + 1, c1 - c0 + 1
    if groups == 1:
        return taps.reshape(cin * rh * rw, cout * oh * ow).contiguous()
    full = torch.zeros(groups, cin_g, rh, rw, groups, cout // groups, oh, ow, device=dev)
    for g in range(groups):
        full[g, :, :, :, g] = taps[:, :, :, g * (cout // groups):(g + 1) * (cout // groups)]
    return full.reshape(cin * rh * rw, cout * oh * ow)


def _step_plan(stack, j, layer_plan, inp, out, divisor, maps):
    """How one window step runs for a pixel on a chunk: ("delta", old input region, old output
    region, map) for a convolution whose changed region is smaller than its kernel (the new
    output is the cached one plus the change times the map: a conv is linear), else ("window",
    the cached read window clipped to the map, where the change goes, padding, divisor)."""
    step = stack.steps[j]
    ((ra, rb), (ca, cb)), ((oya, oyb), (oxa, oxb)), ((ya, yb), (xa, xb)) = layer_plan
    # The changed region can reach rows or columns this step never reads (the last ones of a map
    # that a floor-mode pooling or a strided convolution leaves out): they change no output, and
    # the incoming window is cropped to the part the step reads.
    clipped = max(ra, ya), min(rb, yb), max(ca, xa), min(cb, xb)
    crop = None if clipped == (ra, rb, ca, cb) else \
        (clipped[0] - ra, clipped[1] - ra + 1, clipped[2] - ca, clipped[3] - ca + 1)
    ra, rb, ca, cb = clipped
    n_changed = (rb - ra + 1) * (cb - ca + 1)
    out_hw = (oyb - oya + 1, oxb - oxa + 1)
    map_bytes = 4 * inp.shape[1] * n_changed * out.shape[1] * out_hw[0] * out_hw[1]
    if step.kind == "conv" and n_changed <= step.kernel[0] * step.kernel[1] and map_bytes <= MAP_BYTES:
        weight = step.module.weight
        key = (j, ra - ya, rb - ya, ca - xa, cb - xa, out_hw, weight.data_ptr(), weight._version)
        if key not in maps:
            maps[key] = _delta_map(step, inp.shape[1], ((ra - ya, rb - ya), (ca - xa, cb - xa)), out_hw)
        old_in = inp[:, :, ra:rb + 1, ca:cb + 1].reshape(len(inp), -1).contiguous()
        old_out = out[:, :, oya:oyb + 1, oxa:oxb + 1].contiguous()
        return ("delta", old_in, old_out, maps[key], crop)
    h, w = inp.shape[2:]
    y0, y1, x0, x1 = max(ya, 0), min(yb, h - 1), max(xa, 0), min(xb, w - 1)
    ctx = inp[:, :, y0:y1 + 1, x0:x1 + 1].contiguous()
    pad = (x0 - xa, xb - x1, y0 - ya, yb - y1)
    div = divisor[:, :, oya:oyb + 1, oxa:oxb + 1] if divisor is not None else None
    return ("window", ctx, (ra - y0, rb - y0 + 1, ca - x0, cb - x0 + 1), pad, div, crop)


def _propagate(stack, steps, rows, win):
    """The new values of the changed window at the map before Flatten, (B, C, h, w). `rows`: the
    chunk rows of the B windows (a tensor), or a slice of the chunk's rows that the B windows run
    through B / len(slice) times (the cached values are read in place, broadcast)."""
    for step, sp in zip(stack.steps, steps):
        if sp is None:
            # win is always a fresh tensor of this call (never cached values): ReLU in place.
            win = torch.relu_(win) if type(step) is nn.ReLU else step(win)
            continue
        if sp[-1] is not None:
            cy0, cy1, cx0, cx1 = sp[-1]
            win = win[:, :, cy0:cy1, cx0:cx1]
        if sp[0] == "delta":
            _, old_in, old_out, mat, _ = sp
            if isinstance(rows, slice):
                old_in, old_out = old_in[rows], old_out[rows]
                m = len(old_in)
                change = win.reshape(-1, m, old_in.shape[1])
                change = (change.sub_(old_in) if change.is_contiguous() else change - old_in).view(-1, old_in.shape[1])
                win = torch.mm(change, mat).view(-1, m, mat.shape[1]).add_(old_out.reshape(m, -1))
                win = win.view(-1, *old_out.shape[1:])
                continue
            change = win.reshape(len(rows), -1) - old_in.index_select(0, rows)
            base = old_out.index_select(0, rows)
            win = torch.addmm(base.reshape(len(rows), -1), change, mat).view(base.shape)
        else:
            _, ctx, (y0, y1, x0, x1), pad, div, _ = sp
            if isinstance(rows, slice):
                ctx = ctx[rows].repeat(len(win) // len(ctx[rows]), 1, 1, 1)
            else:
                ctx = ctx.index_select(0, rows)
            ctx[:, :, y0:y1, x0:x1] = win
            if any(pad):
                ctx = F.pad(ctx, pad, value=-math.inf if step.kind == "max" else 0.0)
            win = _window_op(step, ctx, div)
    return win
