"""Layer chains read from networks trained elsewhere, with eval-mode affine steps folded away.

A network that is a chain of layers (each feeding the next) can take the fast paths of permutation
importance and explain's first-layer reading. Real CNNs put two kinds of per-channel affine maps
in that chain that the fast paths would otherwise have to step through:

- BatchNorm in eval mode, y = (x - mean) / sqrt(var + eps) * gamma + beta;
- an input normalisation, y = (x - mean) / std per channel, in the graph (`(x - 0.5) / 0.25`) or
  in the model's source settings (`input_range`, `mean`, `std`).

`fold_chain` folds both into the neighbouring Conv2d or Linear where that is exact:

- a BatchNorm right after a Conv2d or Linear scales the layer's output channels:
  W' = W * g[o], b' = (b - mean) * g + beta, with g = gamma / sqrt(var + eps);
- an affine map right before a Linear (after a Flatten, per channel repeated over the positions)
  or before a Conv2d without padding scales the layer's input channels:
  W'[o, c] = W[o, c] * s[c], b'[o] = b[o] + sum_{c, i, j} W[o, c, i, j] * t[c].
  A Conv2d with zero padding keeps the affine map as its own step: the padding zeros come after
  the normalisation, and folding would turn them into -mean / std.

What is not folded stays as a `ChannelAffine` step, which the local path treats like any other
elementwise layer; dropout and identity layers are dropped. Folded layers are new modules: the
program's own weights are never changed. The result differs from the unfolded chain by float
rounding only (the fast paths check their stack against the network on a probe batch).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

DROPPED = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


class ChannelAffine(nn.Module):
    """y = x * scale + shift along dim 1: per channel of (B, C, H, W), per feature of (B, F).

    `scale` and `shift` are 1-D, of length C (or F), or 1 for the same number everywhere.
    """

    def __init__(self, scale, shift):
        super().__init__()
        scale = torch.as_tensor(scale, dtype=torch.float32).detach().reshape(-1).clone()
        shift = torch.as_tensor(shift, dtype=torch.float32).detach().reshape(-1).clone()
        if len(scale) != len(shift) and 1 not in (len(scale), len(shift)):
            raise ValueError(f"ChannelAffine: scale ({len(scale)}) and shift ({len(shift)}) lengths differ")
        n = max(len(scale), len(shift))
        scale, shift = scale.expand(n).clone(), shift.expand(n).clone()
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def _view(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return t.view(1, -1, *([1] * (x.dim() - 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._view(self.scale, x) + self._view(self.shift, x)

    def expanded(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """scale and shift as length-n vectors (a single value repeated)."""
        return self.scale.expand(n), self.shift.expand(n)

    def extra_repr(self) -> str:
        return f"channels={len(self.scale)}"


def batch_norm_affine(bn: nn.Module) -> ChannelAffine:
    """An eval-mode BatchNorm as the affine map it computes. ValueError without running stats."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{type(bn).__name__} without running statistics cannot be folded")
    g = 1.0 / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    if bn.weight is not None:
        g = g * bn.weight.detach().double()
    b = -bn.running_mean.detach().double() * g
    if bn.bias is not None:
        b = b + bn.bias.detach().double()
    return ChannelAffine(g.float(), b.float())


def _scale_outputs(layer: nn.Module, affine: ChannelAffine) -> nn.Module:
    """layer followed by `affine` on its output channels, as one new layer of the same type."""
    out = layer.weight.shape[0]
    g, t = (v.double() for v in affine.expanded(out))
    w = layer.weight.detach().double() * g.view(-1, *([1] * (layer.weight.dim() - 1)))
    b = (layer.bias.detach().double() if layer.bias is not None else torch.zeros(out, dtype=torch.float64)) * g + t
    return _like(layer, w, b)


def _scale_inputs(layer: nn.Module, affine: ChannelAffine, positions: int = 1) -> nn.Module:
    """`affine` on the input channels, then layer, as one new layer (Linear inputs are the
    flattened (C, positions) map; a Conv2d must have no padding)."""
    w = layer.weight.detach().double()
    if isinstance(layer, nn.Linear):
        channels = w.shape[1] // positions
        s, t = (v.double().repeat_interleave(positions) for v in affine.expanded(channels))
        new_w = w * s.view(1, -1)
        shift = w @ t
    else:
        groups = layer.groups
        per_group = w.shape[1]
        s_all, t_all = (v.double() for v in affine.expanded(per_group * groups))
        # the input channel each (output, weight channel) reads: group(o) * per_group + c
        group_of = torch.arange(w.shape[0]) // (w.shape[0] // groups)
        index = group_of.view(-1, 1) * per_group + torch.arange(per_group).view(1, -1)
        new_w = w * s_all[index].view(*index.shape, 1, 1)
        shift = (w * t_all[index].view(*index.shape, 1, 1)).sum(dim=(1, 2, 3))
    bias = layer.bias.detach().double() if layer.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    return _like(layer, new_w, bias + shift)


def _like(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    """A copy of Linear/Conv2d `layer` (same geometry) with these weights, in float32, with a bias."""
    if isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features, layer.out_features, bias=True, device="meta")
    else:
        new = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                        padding=layer.padding, dilation=layer.dilation, groups=layer.groups, bias=True,
                        padding_mode=layer.padding_mode, device="meta")
    device = layer.weight.device
    new.weight = nn.Parameter(weight.float().to(device), requires_grad=False)
    new.bias = nn.Parameter(bias.float().to(device), requires_grad=False)
    return new


def _no_padding(conv: nn.Conv2d) -> bool:
    return isinstance(conv.padding, tuple) and not any(conv.padding)


def fold_chain(layers: Sequence[nn.Module], input_shape: Sequence[int] | None = None) -> list[nn.Module]:
    """The chain with eval-mode BatchNorm and affine maps folded where exact (module docstring).

    `input_shape` (C, H, W) lets an affine map before Flatten -> Linear be folded when the map
    size at the Flatten is known from the chain (it is measured by running the chain's
    convolutions on a zero batch); without it such an affine map stays a step of its own.
    ValueError for a BatchNorm in training mode.
    """
    out: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, DROPPED):
            continue
        if isinstance(layer, BATCH_NORMS):
            if layer.training:
                raise ValueError(f"{type(layer).__name__} in training mode cannot be folded (call model.eval())")
            layer = batch_norm_affine(layer)
        if isinstance(layer, ChannelAffine):
            if out and isinstance(out[-1], (nn.Linear, nn.Conv2d)) and \
                    (len(layer.scale) == 1 or len(layer.scale) == out[-1].weight.shape[0]):
                out[-1] = _scale_outputs(out[-1], layer)
                continue
            if out and isinstance(out[-1], ChannelAffine) and {len(out[-1].scale), len(layer.scale)} - {1} \
                    in ({len(layer.scale)}, {len(out[-1].scale)}, set()):
                first = out.pop()
                n = max(len(first.scale), len(layer.scale))
                s1, t1 = first.expanded(n)
                s2, t2 = layer.expanded(n)
                layer = ChannelAffine(s1 * s2, t1 * s2 + t2)
            out.append(layer)
            continue
        if isinstance(layer, nn.Conv2d) and out and isinstance(out[-1], ChannelAffine) and _no_padding(layer):
            out.append(_scale_inputs(layer, out.pop()))
            continue
        if isinstance(layer, nn.Linear) and out and isinstance(out[-1], ChannelAffine) and \
                len(out[-1].scale) in (1, layer.in_features):
            affine = out.pop()
            out.append(_scale_inputs(layer, affine, positions=1 if len(affine.scale) > 1 else layer.in_features))
            continue
        if isinstance(layer, nn.Linear) and len(out) >= 2 and isinstance(out[-1], nn.Flatten) \
                and isinstance(out[-2], ChannelAffine):
            if len(out[-2].scale) == 1:
                positions = layer.in_features
            else:
                positions = _positions_at(out[:-2], input_shape, out[-2]) if input_shape is not None else 0
            if positions:
                flatten, affine = out.pop(), out.pop()
                out += [flatten, _scale_inputs(layer, affine, positions)]
                continue
        out.append(layer)
    return out


def _positions_at(before: Sequence[nn.Module], input_shape: Sequence[int], affine: ChannelAffine) -> int:
    """H * W of the map a per-channel affine step sees (0 when its channels do not match it)."""
    with torch.no_grad():
        device = next((p.device for m in before for p in m.parameters()), torch.device("cpu"))
        x = torch.zeros((1, *input_shape), device=device)
        for m in before:
            x = m(x)
    if x.dim() != 4:
        return 0
    return int(x.shape[2] * x.shape[3]) if len(affine.scale) == x.shape[1] else 0
