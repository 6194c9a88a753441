"""The model registry: dense, convolutional and 1-D convolutional (variational) autoencoders and
two classifiers.

`build_model(arch, input_shape, n_classes, params)` returns an `nn.Module` with the attributes
`arch`, `kind` ('autoencoder' or 'classifier'), `latent_dim`, `input_shape` (C, H, W),
`n_classes` and `params` (the resolved sizes, defaults filled in by `models.archs`).

Autoencoders (`dense_ae`, `dense_vae`, `conv_ae`, `conv_vae`, `conv1d_ae`, `conv1d_vae`):
  encode(x) -> z (B, d)  (VAE: the posterior mean)
  decode(z) -> x_hat (B, C, H, W): with `output` "sigmoid" (params.output, the default) in [0, 1],
  and decode_logits(z) gives the pre-sigmoid values that training feeds to BCEWithLogits (stable
  where sigmoid + BCE would saturate); with "linear" unbounded (standardised tables and series),
  decode_logits(z) itself, which training fits with a Gaussian loss (squared error).
  VAEs also have encode_distribution(x) -> (mean, log_variance).
Classifiers (`cnn_classifier`, `mlp_classifier`):
  forward(x) -> logits (B, K); features(x) -> the penultimate ReLU layer (B, latent_dim)
  (cnn: `feature_dim`, 128 by default; mlp: its last hidden layer);
  hidden(x) -> {name: (B, units)} every hidden layer after its ReLU, in network order. Conv
  layers are reported per channel, globally averaged over space (after ReLU, before pooling).
Dense models (dense AE/VAE, MLP): first_linear_split(output) -> (linear, rest), the first
  nn.Linear on the flattened input and the rest of the network from its pre-activation to
  `output`; the rank-1 fast path of permutation importance relies on it. Conv models: None.
Conv models: layer_sequence(output) -> the list of modules that, run in order, computes `output`
  exactly as encode / features / forward do; the local path of permutation importance relies on
  it. Dense models and the 1-D conv autoencoders (that path handles Conv2d only): None.
"""

from __future__ import annotations

import io
import os
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from latent_atlas.io import write_bytes
from latent_atlas.models.archs import VAE_ARCHS, arch_kind, latent_size, resolve_params
from latent_atlas.runtime import configure_torch


def _check_input_shape(arch: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"arch {arch!r}: input_shape must be (C, H, W), got {tuple(input_shape)}")
    if shape[0] not in (1, 3):
        raise ValueError(f"arch {arch!r}: input needs 1 or 3 channels, got shape {shape}")
    return shape


class _Model(nn.Module):
    """Attributes every model carries (what `save_model` stores to rebuild it)."""

    def __init__(self, arch: str, input_shape, n_classes: int, params: Mapping[str, Any]):
        super().__init__()
        self.arch = arch
        self.kind = arch_kind(arch)
        self.input_shape = _check_input_shape(arch, input_shape)
        self.n_classes = int(n_classes)
        self.params = dict(params)
        self.latent_dim = latent_size(arch, params)
        self.n_inputs = self.input_shape[0] * self.input_shape[1] * self.input_shape[2]

    def first_linear_split(self, output: str):
        return None

    def layer_sequence(self, output: str):
        return None


def _dense_stack(sizes: Sequence[int]) -> nn.Sequential:
    """Linear + ReLU for each consecutive pair of `sizes` (empty for fewer than two sizes)."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers)


class _Autoencoder(_Model):
    """`variational` for the VAE archs; `output` ("sigmoid" or "linear") is what `decode` applies
    to `decode_logits` and which loss training takes (`training.batch_loss`)."""

    def __init__(self, arch, input_shape, n_classes, params):
        super().__init__(arch, input_shape, n_classes, params)
        self.variational = arch in VAE_ARCHS
        self.output = self.params["output"]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.decode_logits(z)
        return torch.sigmoid(logits) if self.output == "sigmoid" else logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction (B, C, H, W), in [0, 1] for output sigmoid (VAE: from the posterior mean)."""
        return self.decode(self.encode(x))


class DenseAutoencoder(_Autoencoder):
    """Flatten -> [Linear, ReLU] x hidden -> Linear(latent) [-> ReLU] and a mirrored decoder.

    With `hidden: []` this is the permutation-importance paper's 784 -> d -> 784 network.
    `dense_vae` adds a second head for the log-variance of a Gaussian posterior.
    """

    def __init__(self, arch, input_shape, n_classes, params):
        super().__init__(arch, input_shape, n_classes, params)
        hidden = list(self.params["hidden"])
        d = self.latent_dim
        self.body = _dense_stack([self.n_inputs, *hidden])
        width = hidden[-1] if hidden else self.n_inputs
        self.to_latent = nn.Linear(width, d)
        self.to_logvar = nn.Linear(width, d) if self.variational else None
        relu_latent = self.params.get("latent_activation", "linear") == "relu"
        self.latent_activation = nn.ReLU() if relu_latent else nn.Identity()
        self.decoder = nn.Sequential(
            _dense_stack([d, *hidden[::-1]]),
            nn.Linear(hidden[0] if hidden else d, self.n_inputs),
            nn.Unflatten(1, self.input_shape),
        )

    def _hidden(self, x):
        return self.body(x.flatten(1))

    def encode(self, x):
        return self.latent_activation(self.to_latent(self._hidden(x)))

    def encode_distribution(self, x):
        h = self._hidden(x)
        return self.to_latent(h), self.to_logvar(h)

    def decode_logits(self, z):
        return self.decoder(z)

    def first_linear_split(self, output: str):
        if output != "latent":
            raise ValueError(f"arch {self.arch!r}: first_linear_split output must be 'latent', got {output!r}")
        if len(self.body) == 0:
            return self.to_latent, self.latent_activation
        rest = nn.Sequential(nn.ReLU(), *list(self.body)[2:], self.to_latent, self.latent_activation)
        return self.body[0], rest


def _conv_sizes(size: int, n: int) -> list[int]:
    """Spatial sizes after each of `n` stride-2 'same' convolutions: ceil(size / 2) each time."""
    sizes = [size]
    for _ in range(n):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


class _BottleneckAutoencoder(_Autoencoder):
    """An `encoder` ending in a Flatten, the Linear `to_latent` (VAEs: and `to_logvar`) on it, and
    a `decoder` from the latent to the logits (B, C, H, W)."""

    def encode(self, x):
        return self.to_latent(self.encoder(x))

    def encode_distribution(self, x):
        h = self.encoder(x)
        return self.to_latent(h), self.to_logvar(h)

    def decode_logits(self, z):
        return self.decoder(z)


class ConvAutoencoder(_BottleneckAutoencoder):
    """Four stride-2 Conv2d + ReLU, a dense bottleneck, and a mirrored ConvTranspose2d decoder.

    Each convolution halves the size, rounding up (28 -> 14 -> 7 -> 4 -> 2); each transposed
    convolution's output_padding restores the exact size on the way back, so any input size
    works, divisible by 16 or not.
    """

    def __init__(self, arch, input_shape, n_classes, params):
        super().__init__(arch, input_shape, n_classes, params)
        c, h, w = self.input_shape
        k = int(self.params["kernel_size"])
        chans = [c, *self.params["channels"]]
        hs, ws = _conv_sizes(h, 4), _conv_sizes(w, 4)
        enc: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            enc += [nn.Conv2d(c_in, c_out, k, stride=2, padding=k // 2), nn.ReLU()]
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        flat = chans[-1] * hs[-1] * ws[-1]
        self.to_latent = nn.Linear(flat, self.latent_dim)
        self.to_logvar = nn.Linear(flat, self.latent_dim) if self.variational else None
        dec: list[nn.Module] = [
            nn.Linear(self.latent_dim, flat),
            nn.ReLU(),
            nn.Unflatten(1, (chans[-1], hs[-1], ws[-1])),
        ]
        for i in range(4, 0, -1):
            # (in - 1) * 2 - 2 * (k // 2) + k + pad = 2 * in - 1 + pad must equal the size at level i - 1
            pad = (hs[i - 1] - 2 * hs[i] + 1, ws[i - 1] - 2 * ws[i] + 1)
            dec.append(nn.ConvTranspose2d(chans[i], chans[i - 1], k, stride=2, padding=k // 2,
                                          output_padding=pad))
            if i > 1:
                dec.append(nn.ReLU())
        self.decoder = nn.Sequential(*dec)

    def layer_sequence(self, output: str):
        if output != "latent":
            raise ValueError(f"arch {self.arch!r}: layer_sequence output must be 'latent', got {output!r}")
        return [*self.encoder, self.to_latent]


class Conv1dAutoencoder(_BottleneckAutoencoder):
    """Stride-2 Conv1d + ReLU blocks along time, a dense bottleneck, and a mirrored ConvTranspose1d
    decoder, for windows of multichannel series.

    A window is stored as a 1-channel image (1, C, L): C sensor channels as rows, L time steps as
    columns. The encoder views it as (B, C, L), the rows being the Conv1d's input channels (an
    input (3, C, L) gives 3C of them), and the decoder's output is viewed back as (B, 1, C, L).
    Each convolution (one per entry of `channels`) halves the length, rounding up; each transposed
    convolution's output_padding restores the exact length, so any L works.
    """

    def __init__(self, arch, input_shape, n_classes, params):
        super().__init__(arch, input_shape, n_classes, params)
        c, rows, length = self.input_shape
        k = int(self.params["kernel_size"])
        chans = [c * rows, *self.params["channels"]]
        n = len(chans) - 1
        lengths = _conv_sizes(length, n)
        enc: list[nn.Module] = [nn.Flatten(1, 2)]
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            enc += [nn.Conv1d(c_in, c_out, k, stride=2, padding=k // 2), nn.ReLU()]
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        flat = chans[-1] * lengths[-1]
        self.to_latent = nn.Linear(flat, self.latent_dim)
        self.to_logvar = nn.Linear(flat, self.latent_dim) if self.variational else None
        dec: list[nn.Module] = [
            nn.Linear(self.latent_dim, flat),
            nn.ReLU(),
            nn.Unflatten(1, (chans[-1], lengths[-1])),
        ]
        for i in range(n, 0, -1):
            # as in ConvAutoencoder: the output length 2 * in - 1 + pad must equal the length at level i - 1
            dec.append(nn.ConvTranspose1d(chans[i], chans[i - 1], k, stride=2, padding=k // 2,
                                          output_padding=lengths[i - 1] - 2 * lengths[i] + 1))
            if i > 1:
                dec.append(nn.ReLU())
        self.decoder = nn.Sequential(*dec, nn.Unflatten(1, (c, rows)))

    def chain_refusal(self, output: str) -> str:
        """Why importance's local path does not apply (`layer_sequence` is None)."""
        return f"arch {self.arch!r} runs Conv1d layers; the local path handles Conv2d only"


class CNNClassifier(_Model):
    """[Conv2d 'same' + ReLU + MaxPool 2 (ceil)] per entry of `channels`, then a `feature_dim`
    ReLU layer (the feature vector) and the class layer."""

    def __init__(self, arch, input_shape, n_classes, params):
        super().__init__(arch, input_shape, n_classes, params)
        c, h, w = self.input_shape
        k = int(self.params["kernel_size"])
        chans = [c, *self.params["channels"]]
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, k, padding=k // 2) for c_in, c_out in zip(chans[:-1], chans[1:])
        )
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        hs, ws = _conv_sizes(h, len(self.convs)), _conv_sizes(w, len(self.convs))
        self.fc = nn.Linear(chans[-1] * hs[-1] * ws[-1], self.latent_dim)
        self.head = nn.Linear(self.latent_dim, self.n_classes)

    def hidden_layer_names(self) -> list[str]:
        return [f"conv{i + 1}" for i in range(len(self.convs))] + ["features"]

    def _run(self, x, keep: dict | None):
        for i, conv in enumerate(self.convs):
            x = torch.relu(conv(x))
            if keep is not None:
                keep[f"conv{i + 1}"] = x.mean(dim=(2, 3))
            x = self.pool(x)
        f = torch.relu(self.fc(x.flatten(1)))
        if keep is not None:
            keep["features"] = f
        return f

    def features(self, x):
        return self._run(x, None)

    def hidden(self, x) -> "OrderedDict[str, torch.Tensor]":
        keep: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._run(x, keep)
        return keep

    def forward(self, x):
        return self.head(self.features(x))

    def layer_sequence(self, output: str):
        """What `_run` does (its functional ReLUs as modules), plus the head for 'logits'."""
        if output not in ("features", "logits"):
            raise ValueError(f"arch {self.arch!r}: layer_sequence output must be 'features' or 'logits', "
                             f"got {output!r}")
        layers: list[nn.Module] = []
        for conv in self.convs:
            layers += [conv, nn.ReLU(), self.pool]
        layers += [nn.Flatten(), self.fc, nn.ReLU()]
        return layers + ([self.head] if output == "logits" else [])


class MLPClassifier(_Model):
    """Flatten -> [Linear + ReLU] per entry of `hidden` -> Linear(n_classes); Kaiming init.

    The feature-visualisation study's 784-1250-1000-750-500-250-100-32-10 network by default.
    """

    def __init__(self, arch, input_shape, n_classes, params):
        super().__init__(arch, input_shape, n_classes, params)
        hidden = list(self.params["hidden"])
        self.body = _dense_stack([self.n_inputs, *hidden])
        self.head = nn.Linear(hidden[-1], self.n_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def hidden_layer_names(self) -> list[str]:
        return [f"fc{i + 1}" for i in range(len(self.params["hidden"]))]

    def hidden(self, x) -> "OrderedDict[str, torch.Tensor]":
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        h = x.flatten(1)
        names = iter(self.hidden_layer_names())
        for layer in self.body:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                out[next(names)] = h
        return out

    def features(self, x):
        return self.body(x.flatten(1))

    def forward(self, x):
        return self.head(self.features(x))

    def first_linear_split(self, output: str):
        tail = {"latent": [], "features": [], "logits": [self.head]}
        if output not in tail:
            raise ValueError(
                f"arch {self.arch!r}: first_linear_split output must be 'latent', 'features' "
                f"or 'logits', got {output!r}"
            )
        return self.body[0], nn.Sequential(nn.ReLU(), *list(self.body)[2:], *tail[output])


_CLASSES = {
    "dense_ae": DenseAutoencoder,
    "dense_vae": DenseAutoencoder,
    "conv_ae": ConvAutoencoder,
    "conv_vae": ConvAutoencoder,
    "conv1d_ae": Conv1dAutoencoder,
    "conv1d_vae": Conv1dAutoencoder,
    "cnn_classifier": CNNClassifier,
    "mlp_classifier": MLPClassifier,
}


def build_model(arch: str, input_shape: Sequence[int], n_classes: int,
                params: Mapping[str, Any] | None = None) -> nn.Module:
    """Build an untrained model.

    Parameters
    ----------
    arch : one of dense_ae, dense_vae, conv_ae, conv_vae, conv1d_ae, conv1d_vae, cnn_classifier,
        mlp_classifier.
    input_shape : (C, H, W) with C in {1, 3}; for conv1d archs a series window (1, channels, length).
    n_classes : number of classes K (the classifier's output size; recorded for autoencoders).
    params : arch sizes (config `models.<name>.params`); missing keys take the arch's defaults.

    Initialisation draws from torch's global generator: seed it first for reproducible weights.
    """
    resolved = resolve_params(arch, params)
    return _CLASSES[arch](arch, input_shape, n_classes, resolved)


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def stored_params(model: nn.Module) -> dict[str, Any]:
    """The params a record keeps: the resolved params, but an autoencoder's `output` only where it
    is not the default sigmoid, so that a record (and a checkpoint's fingerprint) of an image
    model has the bytes it had before outputs could be linear; `load_model` fills it back."""
    params = dict(model.params)
    if params.get("output") == "sigmoid":
        del params["output"]
    return params


def model_record(model: nn.Module, class_names: Sequence[str] | None = None,
                 **extra: Any) -> dict[str, Any]:
    """The plain dict stored in model.pt (only str/int/float/list/tensor: weights_only-safe)."""
    return {
        "arch": model.arch,
        "params": stored_params(model),
        "input_shape": list(model.input_shape),
        "n_classes": model.n_classes,
        "class_names": list(class_names) if class_names is not None else [],
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        **extra,
    }


def save_model(model: nn.Module, path: str | os.PathLike, class_names: Sequence[str] | None = None,
               **extra: Any) -> None:
    """Write the model's record (see `model_record`) atomically; `extra` adds plain keys."""
    # torch names the archive's inner folder after the file it writes to; saving to a buffer
    # gives the fixed name "archive", so the same weights give the same bytes.
    buf = io.BytesIO()
    torch.save(model_record(model, class_names, **extra), buf)
    write_bytes(buf.getvalue(), path)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by `save_model` (weights_only: no arbitrary unpickling); eval mode.
    A record of a network imported from torch.export or ONNX files gives a `loaded.LoadedModel`.

    The stored class names are in `model.class_names`, any extra keys in `model.record_extra`.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    configure_torch()  # the job's seed and threads, when torch was imported after the job started
    record = torch.load(path, map_location=map_location, weights_only=True)
    if "source" in record:  # a torch.export or ONNX network imported from the user's files
        from latent_atlas.models.loaded import model_from_record

        return model_from_record(record, map_location)
    missing = {"arch", "params", "input_shape", "n_classes", "state_dict"} - set(record)
    if missing:
        raise ValueError(f"{path}: not a latent-atlas model file (missing {sorted(missing)})")
    model = build_model(record["arch"], record["input_shape"], record["n_classes"], record["params"])
    model.load_state_dict(record["state_dict"])
    model.class_names = list(record.get("class_names", []))
    model.record_extra = {k: v for k, v in record.items()
                          if k not in {"arch", "params", "input_shape", "n_classes", "class_names",
                                       "state_dict"}}
    return model.to(map_location).eval()


def first_layer_weights(model: nn.Module) -> "torch.Tensor | None":
    """Weights of the first nn.Linear of a dense model as images (units, C, H, W); None for conv models."""
    split = model.first_linear_split("latent")
    if split is None:
        return None
    return split[0].weight.detach().cpu().reshape(-1, *model.input_shape)
