"""Networks trained elsewhere: torch.export programs, ONNX graphs and state dicts, as models every
stage can use (config `models.<name>.source`; config/README.md, "Bring your own model").

The import job (`models.jobs.import_model`) reads the user's files once, checks them against the
dataset (input shape, output shapes, finite outputs on the first batch) and writes model.pt: for a
state dict the same record a trained model has (`networks.save_model`), so nothing downstream can
tell them apart; for torch.export and ONNX a record holding the programs' bytes (uint8 tensors, so
`torch.load(..., weights_only=True)` reads it) and the settings below. `networks.load_model`
hands such a record to `model_from_record`, which returns a `LoadedModel` with the interface of
`networks` (encode / decode / features / forward / head / hidden, `kind`, `latent_dim`, ...).

What each format carries:
- state dict (`torch.save(model.state_dict())` of a built-in arch): weights only; the arch and its
  params come from the config. Everything a trained model has (every fast path, featureviz, explain).
- torch.export (.pt2, `torch.export.save`): the graph and its weights, no Python code; needs a dynamic
  batch dimension. Gradients work (featureviz). A program that is a chain of layers (Conv2d,
  Linear, BatchNorm, the common activations, max / average / global average pooling, Flatten,
  dropout, and +, -, *, / by constants: `read_chain`) also gets the importance fast paths and
  explain's first-layer reading: its layers are read from the graph as torch modules, BatchNorm
  and the input normalisation are folded into the neighbouring layers (`models.chain`), and the
  result is checked against the program on a probe batch. The node that stops the reading (a
  residual add, an attention product, an op it does not know) is named in the importance log and
  in the config check's refusal of such a model for explain.
- ONNX (.onnx): the graph and its weights (external data read into the record), run by
  onnxruntime, so Keras / TensorFlow (tf2onnx) and JAX exports run as their authors' runtime runs
  them, with no converter that might miss an op or change a result. onnxruntime gives no gradients:
  featureviz is refused in config validation. For the importance fast paths a graph that is a layer
  chain is converted with onnx2torch, checked against onnxruntime on a probe batch and read as
  layers (`models.onnx_chain`); any other graph takes the rows path, with the reason logged.
Input normalisation (`input_range`, `mean`, `std`) is applied before the encoder; decoder outputs are
mapped back from `input_range` to [0, 1]. The layer chain starts with that normalisation, folded
into the first layer where that is exact.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from latent_atlas.errors import clean, one_line, summary
from latent_atlas.models.chain import ChannelAffine, fold_chain
from latent_atlas.runtime import log

PROGRAMS = ("encoder", "decoder", "head")
SETTINGS = ("latent_output", "logits_output", "input_name", "input_range", "mean", "std")
_RANGES = {"0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0)}


# --------------------------------------------------------------------------------------------
# Reading the user's files
# --------------------------------------------------------------------------------------------
def read_file(path: str | os.PathLike, key: str) -> bytes:
    """The bytes of a config-named file; errors name the config key and the path."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{key}: file not found: {path}") from None
    except OSError as err:
        raise OSError(f"{key}: cannot read {path}: {err}") from None


# torch wraps its weights-only unpickler's refusal in advice to load with weights_only=False (which
# would run the file's code); the refusal itself names the global, or follows "WeightsUnpickler error:".
_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+) (?:was not an allowed global|whose module)")
_UNPICKLER_ERROR = re.compile(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", re.S)


def _load_refusal(err: Exception, path: str | os.PathLike, key: str) -> str:
    """Why torch.load(weights_only=True) refused the file: the pickled global it met, else its reason."""
    text = clean(str(err))
    if refused := _REFUSED_GLOBAL.search(text):
        name = refused[1] if "." in refused[1] else f"builtins.{refused[1]}"  # torch drops `builtins.`
        return (f"{key}: {path} holds a pickled global {name}, which is refused (only tensors and plain "
                f"containers are read; save the weights with torch.save(model.state_dict()))")
    own = _UNPICKLER_ERROR.search(text)
    why = f"{type(err).__name__}: {one_line(own[1])}" if own else summary(err)
    return f"{key}: {path} is not a state dict torch.load can read with weights_only=True ({why})"


def read_state_dict(path: str | os.PathLike, key: str) -> dict[str, torch.Tensor]:
    """A state dict saved with torch.save, read with weights_only=True (no unpickling of code).
    A latent-atlas model.pt (a record with a `state_dict`) is accepted too."""
    try:
        data = torch.load(io.BytesIO(read_file(path, key)), map_location="cpu", weights_only=True)
    except (FileNotFoundError, OSError):
        raise
    except Exception as err:
        raise ValueError(_load_refusal(err, path, key)) from None
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{key}: {path} holds a {type(data).__name__}, not a state dict (name -> tensor)")
    return dict(data)


def _torch_export_program(data: bytes, where: str) -> nn.Module:
    # torch.export.load logs why an archive is unreadable (a warning with a traceback), then raises a
    # vaguer error ("check the warnings above"): the logged error is held off the terminal and reported.
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    export_log = logging.getLogger("torch.export")
    export_log.addFilter(hold)
    try:
        return torch.export.load(io.BytesIO(data)).module()
    except Exception as err:
        cause = next((r.exc_info[1] for r in held if r.exc_info), err)
        raise ValueError(f"{where}: not a torch.export program torch.export.load can read "
                         f"({summary(cause)})") from None
    finally:
        export_log.removeFilter(hold)


class OnnxProgram:
    """An ONNX graph run by onnxruntime on the CPU, called like a torch function: tensors in,
    a dict {output name: tensor} out (on the input's device). No gradients."""

    def __init__(self, data: bytes, where: str, input_name: str | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        # the job's thread count (float results may depend on it), one graph at a time
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as err:
            raise ValueError(f"{where}: not an ONNX graph onnxruntime can load "
                             f"({summary(err)})") from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        if input_name is None and len(inputs) != 1:
            raise ValueError(f"{where}: the ONNX graph has {len(inputs)} inputs ({', '.join(inputs)}); "
                             f"set source.input_name to the one that takes the images")
        if input_name is not None and input_name not in inputs:
            raise ValueError(f"{where}: source.input_name {input_name!r} is not an input of the graph "
                             f"(inputs: {', '.join(inputs)})")
        self.input = inputs[input_name] if input_name else next(iter(inputs.values()))
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.data, self.where = data, where
        self.chains: dict = {}  # output -> (layers or None, why): the graph read through onnx2torch

    def input_dims(self) -> list:
        """The image input's dimensions: ints, or None where the graph leaves them open."""
        return [d if isinstance(d, int) else None for d in self.input.shape]

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        arrays = self.session.run(None, {self.input.name: x.detach().cpu().numpy().astype(np.float32, copy=False)})
        return OrderedDict((name, torch.from_numpy(a).to(x.device)) for name, a in zip(self.output_names, arrays))


def _pick(out: Any, which: int | str, where: str) -> torch.Tensor:
    """Output `which` (an index, or a name of a dict output) of a program's result."""
    if isinstance(out, torch.Tensor):
        if which not in (0, None):
            raise ValueError(f"{where}: the program has one output; output {which!r} does not exist")
        return out
    if isinstance(out, Mapping):
        names = list(out)
        if isinstance(which, str):
            if which not in out:
                raise ValueError(f"{where}: no output named {which!r} (outputs: {', '.join(map(str, names))})")
            return out[which]
        out = list(out.values())
    if isinstance(which, str):
        raise ValueError(f"{where}: the program's outputs have no names; give the output as an index")
    if not 0 <= which < len(out):
        raise ValueError(f"{where}: output {which} does not exist (the program has {len(out)} outputs)")
    return out[which]


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
class LoadedModel(nn.Module):
    """A torch.export or ONNX network with the interface of `latent_atlas.models.networks`.

    Parameters
    ----------
    fmt : 'torch_export' or 'onnx' (also the model's `arch` in messages and file metadata).
    kind : 'autoencoder' or 'classifier'.
    input_shape : (C, H, W) of the images.
    n_classes, latent_dim : sizes (latent_dim: the encoder's output width).
    programs : {'encoder': callable, 'decoder': ..., 'head': ...}; torch.export programs are
        nn.Modules (registered, so `.to(device)` moves their weights), ONNX ones `OnnxProgram`s.
    settings : the source's latent_output, logits_output, input_range, mean, std.
    """

    def __init__(self, fmt: str, kind: str, input_shape: Sequence[int], n_classes: int, latent_dim: int,
                 programs: Mapping[str, Callable], settings: Mapping[str, Any]):
        super().__init__()
        self.arch = fmt
        self.kind = kind
        self.input_shape = tuple(int(s) for s in input_shape)
        self.n_classes = int(n_classes)
        self.latent_dim = int(latent_dim)
        self.params: dict[str, Any] = {}
        self.class_names: list[str] = []
        self.settings = dict(settings)
        self.programs = dict(programs)
        for name, program in self.programs.items():
            if isinstance(program, nn.Module):
                self.add_module(f"{name}_program", program)
        lo, hi = _RANGES[self.settings.get("input_range") or "0,1"]
        c = self.input_shape[0]
        mean = np.broadcast_to(np.asarray(self.settings.get("mean") or [0.0], np.float32), (c,))
        std = np.broadcast_to(np.asarray(self.settings.get("std") or [1.0], np.float32), (c,))
        self.range = (lo, hi)
        # x' = ((hi - lo) x + lo - mean) / std, per channel; the identity skips the arithmetic (same bits)
        self.identity_input = (lo, hi) == (0.0, 1.0) and not mean.any() and bool((std == 1).all())
        self.register_buffer("in_scale", torch.from_numpy((hi - lo) / std).reshape(1, c, 1, 1).clone())
        self.register_buffer("in_shift", torch.from_numpy((lo - mean) / std).reshape(1, c, 1, 1).clone())
        if kind == "classifier" and "head" in self.programs:
            self.head = self._head

    def train(self, mode: bool = True) -> "LoadedModel":
        # exported programs refuse train()/eval(); they were exported in the mode they run in
        self.training = mode
        return self

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.identity_input else x * self.in_scale + self.in_shift

    def _encoder_outputs(self, x: torch.Tensor):
        return self.programs["encoder"](self._prepare(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent (autoencoders) or the features (classifiers), (B, d)."""
        return _pick(self._encoder_outputs(x), self.settings.get("latent_output", 0), "encoder")

    features = encode

    def _head(self, f: torch.Tensor) -> torch.Tensor:
        return _pick(self.programs["head"](f), 0, "head")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstructions (B, C, H, W) mapped from `input_range` back to [0, 1]."""
        if "decoder" not in self.programs:
            raise ValueError("this autoencoder was loaded without a decoder (source.decoder)")
        y = _pick(self.programs["decoder"](z), 0, "decoder")
        lo, hi = self.range
        return y if (lo, hi) == (0.0, 1.0) else (y - lo) / (hi - lo)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (classifiers; the head on the features, or the encoder's `logits_output`) or
        reconstructions (autoencoders)."""
        if self.kind == "autoencoder":
            return self.decode(self.encode(x))
        if "head" in self.programs:
            return self._head(self.features(x))
        return _pick(self._encoder_outputs(x), self.settings["logits_output"], "encoder")

    def hidden_layer_names(self) -> list[str]:
        return ["features"]

    def hidden(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """The one hidden layer a loaded classifier exposes: its features."""
        return OrderedDict(features=self.features(x))

    # --- fast paths of permutation importance -------------------------------------------------
    def _chain(self, name: str) -> tuple[list[nn.Module] | None, str]:
        """Program `name` as a folded layer chain of [0, 1] images (the encoder with the input
        normalisation first), or None and why not."""
        program = self.programs.get(name)
        which = self.settings.get("latent_output", 0) if name == "encoder" else 0
        if isinstance(program, OnnxProgram):
            layers, why = self._onnx_chain(name, program, which)
        elif isinstance(program, nn.Module):
            layers, why = read_chain(program, which)
        else:
            return None, f"{self.arch} {name}: the program is no torch module"
        if layers is None:
            return None, f"{self.arch} {name}: {why}"
        if name == "encoder" and not self.identity_input:
            layers = [ChannelAffine(self.in_scale.reshape(-1), self.in_shift.reshape(-1)), *layers]
        try:
            return fold_chain(layers, self.input_shape if name == "encoder" else None), ""
        except ValueError as err:
            return None, f"{self.arch} {name}: {err}"

    def _onnx_chain(self, name: str, program: "OnnxProgram", which) -> tuple[list[nn.Module] | None, str]:
        """An ONNX graph as torch layers: converted with onnx2torch, checked against onnxruntime on a
        seeded probe batch (models.onnx_chain), then read as a chain; once per program."""
        if which not in program.chains:
            from latent_atlas.models.onnx_chain import read_torch_chain, torch_from_onnx

            if which not in (0, None):
                program.chains[which] = (None, f"the chain reader reads a graph's only output, not {which!r}")
            else:
                shape = self.input_shape if name == "encoder" else (self.latent_dim,)
                probe = torch.rand((4, *shape), generator=torch.Generator().manual_seed(0))
                if name == "encoder":
                    probe = self._prepare(probe)
                module, why = torch_from_onnx(program.data, probe, program.where)
                program.chains[which] = (None, why) if module is None else read_torch_chain(module)
        return program.chains[which]

    def _layers(self, output: str) -> tuple[list[nn.Module] | None, str]:
        expected = {"autoencoder": ("latent",), "classifier": ("features", "logits")}[self.kind]
        if output not in expected:
            raise ValueError(f"{self.arch} {self.kind}: output must be {' or '.join(expected)}, got {output!r}")
        layers, why = self._chain("encoder")
        if layers is None or output != "logits":
            return layers, why
        if "head" not in self.programs:
            return None, f"{self.arch}: the logits come from the encoder's output {self.settings['logits_output']!r}"
        head, why = self._chain("head")
        return (None, why) if head is None else (layers + head, "")

    def chain_refusal(self, output: str) -> str:
        """Why the output's layers cannot be read as a chain ("" when they can)."""
        return self._layers(output)[1]

    def first_layer(self) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
        """The encoder's first Conv2d or Linear (BatchNorm and the input normalisation folded in)
        with the activation after it, as a function of [0, 1] images, and 'conv' or 'dense': the
        explain stage's first-layer activations. Read from a torch.export program that is a layer
        chain (`read_chain`); ValueError naming the node that stops the reading otherwise."""
        layers, why = self._chain("encoder")
        first = next((i for i, m in enumerate(layers or []) if isinstance(m, (nn.Conv2d, nn.Linear))), None)
        if first is None:
            raise ValueError(f"{why or self.arch + ' encoder: no Conv2d or Linear'}; explain reads the first layer "
                             f"of a torch.export program that is a chain of layers (models/loaded.py, read_chain)")
        end = first + 1 + int(first + 1 < len(layers) and isinstance(layers[first + 1], _ACTIVATION_MODULES))
        stack = nn.Sequential(*layers[:end])
        return stack, "conv" if isinstance(layers[first], nn.Conv2d) else "dense"

    def first_linear_split(self, output: str):
        """(first Linear, rest) when the program is Flatten -> Linear -> supported layers; else None."""
        layers, _ = self._layers(output)
        if not layers or len(layers) < 2 or not isinstance(layers[0], nn.Flatten) \
                or not isinstance(layers[1], nn.Linear) or any(isinstance(m, nn.Conv2d) for m in layers):
            return None
        return layers[1], nn.Sequential(*layers[2:])

    def layer_sequence(self, output: str):
        """The program's layers as torch modules when it is convolutional; else None."""
        layers, _ = self._layers(output)
        if not layers or not any(isinstance(m, nn.Conv2d) for m in layers):
            return None
        return layers


def layer_chain(program: nn.Module, output: int = 0) -> list[nn.Module] | None:
    """The layers of an exported program that is a plain chain (`read_chain`), or None."""
    return read_chain(program, output)[0]


_ACTIVATIONS = {
    "relu": lambda a: nn.ReLU(), "tanh": lambda a: nn.Tanh(), "sigmoid": lambda a: nn.Sigmoid(),
    "silu": lambda a: nn.SiLU(), "elu": lambda a: nn.ELU(alpha=float(a[1] if a[1] is not None else 1.0)),
    "gelu": lambda a: nn.GELU(approximate=a[1] if isinstance(a[1], str) else "none"),
    "leaky_relu": lambda a: nn.LeakyReLU(float(a[1] if a[1] is not None else 0.01)),
    "hardtanh": lambda a: nn.Hardtanh(float(a[1] if a[1] is not None else -1.0),
                                      float(a[2] if a[2] is not None else 1.0)),
}
_ACTIVATION_MODULES = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.ELU, nn.GELU, nn.LeakyReLU, nn.Hardtanh)
_IDENTITY = ("dropout", "clone", "contiguous", "alias", "detach")
_ARITHMETIC = {"sub": "sub", "add": "add", "mul": "mul", "div": "div", "rsub": "rsub"}


def _op(fn) -> tuple[str, str]:
    """(name, overload) of an aten op ('conv2d', 'default'); ('', '') for anything else."""
    schema = getattr(fn, "_schema", None)
    if schema is None or not schema.name.startswith("aten::"):
        return "", ""
    return schema.name[len("aten::"):], schema.overload_name or "default"


def _shape(node) -> tuple | None:
    val = getattr(node, "meta", {}).get("val")
    return None if val is None else tuple(int(d) if isinstance(d, int) else None for d in val.shape)


def constant_affine(name: str, operand, shape: tuple | None) -> ChannelAffine | str:
    """x (op) operand as a ChannelAffine, or why not: the operand is a number, or a constant tensor
    with one value per channel (broadcast against x of `shape`: (C,) against (B, C), (C, 1, 1) or
    (1, C, 1, 1) against (B, C, H, W))."""
    value = torch.as_tensor(operand, dtype=torch.float32).detach().cpu()
    flat = value.reshape(-1)
    if len(flat) > 1:
        padded = [1] * ((len(shape) if shape else 0) - value.dim()) + list(value.shape)
        if not shape or len(padded) != len(shape) or padded[1] != shape[1] or \
                any(d != 1 for i, d in enumerate(padded) if i != 1):
            return f"a constant of shape {tuple(value.shape)} that is not one value per channel"
    one, zero = torch.ones_like(flat), torch.zeros_like(flat)
    scale, shift = {"add": (one, flat), "sub": (one, -flat), "mul": (flat, zero), "div": (1 / flat, zero),
                    "rsub": (-one, flat)}[name]
    return ChannelAffine(scale, shift)


def read_chain(program: nn.Module, output: int = 0) -> tuple[list[nn.Module] | None, str]:
    """The layers of an exported program that is a plain chain (aten ops on one input, each
    feeding the next), as torch modules sharing the program's weights, and "" -- or None and the
    node that stops the reading, named ("node 'add_1' (aten.add.Tensor) reads two activations
    (a residual or branching block)").

    Read: Conv2d, Linear, BatchNorm (eval), ReLU / LeakyReLU / GELU / SiLU / ELU / Tanh / Sigmoid /
    Hardtanh, MaxPool2d, AvgPool2d, adaptive average pooling and a mean over the map (global
    average pooling) where they are a fixed pooling window, Flatten (also view / reshape to
    (batch, -1)), dropout and copies (dropped: eval mode), and +, -, *, / by a number or a
    per-channel constant (an input normalisation). `fold_chain` then folds BatchNorm and the
    affine steps into the neighbouring layers.
    """
    graph = getattr(program, "graph", None)
    if graph is None:
        return None, f"{type(program).__name__} has no graph"
    if output != 0:
        return None, f"the chain reader reads a program's only output, not output {output!r}"
    attrs = {}
    layers: list[nn.Module] = []
    current = None
    for node in graph.nodes:
        if node.op == "get_attr":
            attrs[node.name] = _fetch(program, node.target)  # a parameter, buffer or constant
            continue
        if node.op == "placeholder":
            if current is not None:
                return None, f"the program takes several inputs (node {node.name!r})"
            current = node
            continue
        if node.op == "call_module":  # the input guards of an unlifted program
            continue
        if node.op == "output":
            return chain_end(node, current, layers, "program")
        name, overload = _op(node.target) if node.op == "call_function" else ("", "")
        where = f"node {node.name!r} ({node.target})"
        if node.op == "call_function" and node.target.__name__ == "getitem" and name == "":
            if node.args[0] is current and node.args[1] == 0:
                continue  # output 0 of a batch norm that returns (y, mean, invstd)
            return None, f"{where}: takes output {node.args[1]} of {node.args[0]}"
        if node.op != "call_function" or not name:
            return None, f"{where}: not an aten operation"
        reads = [a for a in node.args if isinstance(a, torch.fx.Node) and a.op != "get_attr"]
        if not node.args or node.args[0] is not current:
            if name in _ARITHMETIC and len(node.args) == 2 and node.args[1] is current:
                pass  # rsub-like: number (op) x
            else:
                return None, f"{where}: does not read the previous layer's output"
        if len(reads) > 1:
            return None, f"{where}: reads {len(reads)} activations (a residual or branching block)"
        layer = _layer(node, name, overload, attrs, current)
        if isinstance(layer, str):
            return None, f"{where}: {layer}"
        layers.extend(layer)
        current = node
    return None, "the graph has no output node"


def chain_end(node, current, layers: list[nn.Module], what: str) -> tuple[list[nn.Module] | None, str]:
    """What a chain reader returns at the graph's output node: the layers when the graph returns
    the last layer's output alone, else None and why."""
    outs = node.args[0]
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    if len(outs) != 1 or outs[0] is not current:
        return None, f"the {what} returns several outputs, or one that is not its last layer"
    return layers, ""


def _fetch(program: nn.Module, target: str):
    """The attribute at dotted path `target` of the program (None when it has none)."""
    obj = program
    for part in target.split("."):
        obj = getattr(obj, part, None)
    return obj


def _tensor_arg(arg, attrs):
    """A node argument that is a weight: the tensor it names (None for None, False if unknown)."""
    if arg is None:
        return None
    return attrs.get(getattr(arg, "name", None), False)


def _layer(node, name: str, overload: str, attrs, current) -> list[nn.Module] | str:
    """The torch module(s) that compute one aten node of a chain, or why it cannot be read."""
    args = list(node.args) + [None] * 8
    kwargs = dict(node.kwargs)
    shape_in = _shape(current) if hasattr(current, "meta") else None
    if name in _ACTIVATIONS:
        if name == "gelu" and "approximate" in kwargs:
            args[1] = kwargs.pop("approximate")
        if kwargs:
            return f"keyword arguments {sorted(kwargs)} are not read"
        return [_ACTIVATIONS[name](args)]
    if kwargs:
        return f"keyword arguments {sorted(kwargs)} are not read"
    if name in _IDENTITY:
        if name == "dropout" and args[2]:
            return "dropout in training mode"
        return []
    if name in _ARITHMETIC:
        if overload not in ("Tensor", "Scalar"):
            return f"aten.{name}.{overload} is not read"
        if name in ("add", "sub") and len(node.args) > 2 and node.args[2] not in (None, 1):
            return "add/sub with alpha is not read"
        other = node.args[1] if node.args[0] is current else node.args[0]
        if node.args[0] is not current:  # constant (op) x
            if name == "div":
                return "a constant divided by the activation is not read"
            name = "rsub" if name == "sub" else name
        if isinstance(other, torch.fx.Node):
            other = attrs.get(other.name)
            if other is None:
                return "an operand that is not a constant"
        affine = constant_affine(name, other, shape_in)
        return affine if isinstance(affine, str) else [affine]
    if name == "flatten":
        if args[1] == 1 and args[2] in (None, -1):
            return [nn.Flatten()]
        return f"flatten({args[1]}, {args[2]}) is not a flatten to (batch, features)"
    if name in ("view", "reshape", "_unsafe_view"):
        target = list(args[1] or [])
        out = _shape(node)
        flattens = (len(target) == 2 and out is not None and len(out) == 2 and shape_in is not None
                    and all(isinstance(d, int) for d in shape_in[1:]) and out[1] == int(np.prod(shape_in[1:])))
        if flattens:
            return [nn.Flatten()]
        return f"{name} to {target} is not a flatten to (batch, features)"
    if name == "linear":
        w, b = _tensor_arg(args[1], attrs), _tensor_arg(args[2], attrs)
        if w is False or b is False or w is None:
            return "its weight or bias is not a parameter of the program"
        layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device="meta")
        layer.weight, layer.bias = w, b
        return [layer]
    if name == "conv2d":
        w, b = _tensor_arg(args[1], attrs), _tensor_arg(args[2], attrs)
        if w is False or b is False or w is None:
            return "its weight or bias is not a parameter of the program"
        stride, padding, dilation = (args[3] or [1, 1]), (args[4] or [0, 0]), (args[5] or [1, 1])
        if isinstance(padding, str):
            return f"padding={padding!r} is not read (give the padding as numbers)"
        groups = args[6] or 1
        layer = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=tuple(stride),
                          padding=tuple(padding), dilation=tuple(dilation), groups=groups,
                          bias=b is not None, device="meta")
        layer.weight, layer.bias = w, b
        return [layer]
    if name in ("batch_norm", "_native_batch_norm_legit_no_training"):
        training = args[5] if name == "batch_norm" else False
        if training:
            return "batch norm in training mode (export the model in eval mode)"
        w, b, mean, var = (_tensor_arg(args[i], attrs) for i in (1, 2, 3, 4))
        if any(v is False for v in (w, b, mean, var)) or mean is None or var is None:
            return "its statistics or affine parameters are not tensors of the program"
        eps = float(args[7] if name == "batch_norm" else args[6])
        kind = nn.BatchNorm2d if shape_in is not None and len(shape_in) == 4 else nn.BatchNorm1d
        bn = kind(len(mean), eps=eps, affine=w is not None, device="meta")
        if w is not None:
            bn.weight, bn.bias = w, b
        bn.running_mean, bn.running_var = mean, var
        bn.eval()
        return [bn]
    if name == "max_pool2d":
        kernel = args[1]
        return [nn.MaxPool2d(tuple(kernel), stride=tuple(args[2] or kernel), padding=tuple(args[3] or [0, 0]),
                             dilation=tuple(args[4] or [1, 1]), ceil_mode=bool(args[5]))]
    if name == "avg_pool2d":
        kernel = args[1]
        if args[6] is not None:
            return "avg_pool2d with divisor_override is not read"
        return [nn.AvgPool2d(tuple(kernel), stride=tuple(args[2] or kernel), padding=tuple(args[3] or [0, 0]),
                             ceil_mode=bool(args[4]), count_include_pad=True if args[5] is None else bool(args[5]))]
    if name in ("adaptive_avg_pool2d", "_adaptive_avg_pool2d", "mean"):
        if shape_in is None or len(shape_in) != 4 or None in shape_in[2:]:
            return "pooling of a map whose size the program does not record"
        h, w = shape_in[2:]
        if name == "mean":
            dims = sorted(d % 4 for d in (args[1] or []))
            if dims != [2, 3]:
                return f"a mean over dims {args[1]} (only the mean over the map is read)"
            pool = nn.AvgPool2d((h, w))
            return [pool] if args[2] else [pool, nn.Flatten()]
        out_h, out_w = (list(args[1]) * 2)[:2] if len(args[1]) == 1 else args[1]
        if h % out_h or w % out_w:
            return f"adaptive pooling of {h}x{w} to {out_h}x{out_w} (not a fixed window)"
        return [nn.AvgPool2d((h // out_h, w // out_w))]
    return f"aten.{name}.{overload} is not read by the chain reader"


def first_layer_refusal(source: Mapping[str, Any], key: str) -> str | None:
    """Why explain cannot read the first layer of a torch.export encoder (`source`, a model's
    source settings), checked when the config is: the node that stops the chain reader. None when
    it can, and when the file cannot be read here (the import job then reports that)."""
    path = Path(source["encoder"])
    try:
        stat = path.stat()
    except OSError:
        return None
    return _first_layer_refusal(str(path), (stat.st_mtime_ns, stat.st_size), source.get("latent_output") or 0,
                                key) or None


@functools.lru_cache(maxsize=32)
def _first_layer_refusal(path: str, stamp: tuple, output, key: str) -> str:
    try:
        program = _torch_export_program(read_file(path, key), f"{key} ({path})")
    except (OSError, ValueError):
        return ""
    layers, why = read_chain(program, output)
    if layers is None:
        return f"its encoder {path} cannot be read as a chain of layers: {why}"
    if not any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in layers):
        return f"its encoder {path} has no Conv2d or Linear layer"
    return ""


# --------------------------------------------------------------------------------------------
# model.pt records of loaded programs
# --------------------------------------------------------------------------------------------
def _as_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _programs(fmt: str, data: Mapping[str, bytes], settings: Mapping[str, Any],
              where: Mapping[str, str]) -> dict[str, Callable]:
    if fmt == "torch_export":
        return {name: _torch_export_program(b, where[name]) for name, b in data.items()}
    # only the encoder takes images: input_name names its image input
    return {name: OnnxProgram(b, where[name], settings.get("input_name") if name == "encoder" else None)
            for name, b in data.items()}


def model_from_record(record: Mapping[str, Any], map_location="cpu") -> LoadedModel:
    """The LoadedModel of a model.pt record written by `import_record` (eval mode)."""
    data = {name: t.numpy().tobytes() for name, t in record["programs"].items()}
    where = {name: f"model.pt ({name} from {record['files'].get(name)})" for name in data}
    model = LoadedModel(record["source"], record["kind"], record["input_shape"], record["n_classes"],
                        record["latent_dim"], _programs(record["source"], data, record["settings"], where),
                        record["settings"])
    model.class_names = list(record.get("class_names", []))
    model.record_extra = {k: record[k] for k in ("dataset", "name") if k in record}
    return model.to(map_location).eval()


def _batch_dims_ok(dims: Sequence, shape: Sequence[int], where: str) -> None:
    """The program's input dims against the dataset's (C, H, W); the batch dim must be open."""
    if len(dims) != 1 + len(shape) or any(d is not None and d != s for d, s in zip(dims[1:], shape)):
        shown = ", ".join("?" if d is None else str(d) for d in dims)
        raise ValueError(f"{where} takes inputs of shape ({shown}); the dataset's images are "
                         f"(batch, {', '.join(map(str, shape))})")
    if dims[0] is not None:
        raise ValueError(f"{where} was exported with a fixed batch size {dims[0]}; export it with a "
                         f"dynamic batch dimension (torch.export: dynamic_shapes={{'x': {{0: Dim('batch')}}}}; "
                         f"torch.onnx / tf2onnx: a dynamic first axis)")


def _program_input_dims(program, fmt: str) -> list:
    if fmt == "onnx":
        return program.input_dims()
    inputs = [n for n in program.graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        return []
    val = inputs[0].meta.get("val")
    return [] if val is None else [int(d) if isinstance(d, int) else None for d in val.shape]


def _finite(t: torch.Tensor, what: str, where: str) -> None:
    bad = ~torch.isfinite(t)
    if bad.any():
        raise ValueError(f"{where}: the {what} of the first batch has {int(bad.sum())} NaN or infinite "
                         f"values (of {t.numel()}); check the input normalisation (source.input_range, "
                         f"mean, std) and the exported weights")


def import_record(name: str, kind: str, source: Mapping[str, Any], images: np.ndarray,
                  n_classes: int, class_names: Sequence[str], dataset: str,
                  first_batch: int = 64) -> dict[str, Any]:
    """Read a torch_export or onnx model's files, check them on the dataset's first images and
    return the record that model.pt stores.

    Parameters
    ----------
    name : the model's config key; kind : its `kind` (autoencoder or classifier); source : its
    `source`, defaults filled.
    images : (N, C, H, W) float32 in [0, 1], the dataset's images (the first `first_batch` are run).

    Raises ValueError naming the config key, the file and what is wrong: input shape (both shapes),
    a fixed batch size, several graph inputs and none named, output shapes, NaN or inf outputs.
    """
    fmt, key = source["format"], f"models.{name}.source"
    files = {p: source[p] for p in PROGRAMS if source.get(p)}
    read = read_file
    if fmt == "onnx":  # its external data (the .onnx.data file torch.onnx.export writes) goes into the record
        from latent_atlas.models.onnx_chain import onnx_bytes as read  # onnx_chain imports this module
    data = {p: read(path, f"{key}.{p}") for p, path in files.items()}
    where = {p: f"{key}.{p} ({files[p]})" for p in files}
    settings = {k: source.get(k) for k in SETTINGS}
    programs = _programs(fmt, data, settings, where)
    shape = tuple(int(s) for s in images.shape[1:])
    _batch_dims_ok(_program_input_dims(programs["encoder"], fmt) or [None, *shape], shape, where["encoder"])
    x = torch.from_numpy(np.ascontiguousarray(images[:first_batch], dtype=np.float32))
    probe = LoadedModel(fmt, kind, shape, n_classes, 1, programs, settings)
    with torch.no_grad():
        try:
            z = probe.encode(x)
        except ValueError as err:
            raise ValueError(f"{where['encoder']}: {err}") from None
        except Exception as err:
            raise ValueError(f"{where['encoder']}: running it on the first batch {tuple(x.shape)} failed "
                             f"({summary(err)})") from None
        if z.ndim != 2 or z.shape[0] != len(x):
            raise ValueError(f"{where['encoder']}: output {settings['latent_output']!r} has shape "
                             f"{tuple(z.shape)}; a latent must be (batch, d) = ({len(x)}, d)")
        _finite(z, f"encoder output {settings['latent_output']!r}", where["encoder"])
        probe.latent_dim = int(z.shape[1])
        if "decoder" in programs:
            r = probe.decode(z)
            if tuple(r.shape) != tuple(x.shape):
                raise ValueError(f"{where['decoder']}: decodes ({len(x)}, {z.shape[1]}) latents to shape "
                                 f"{tuple(r.shape)}; the dataset's images are {tuple(x.shape)}")
            _finite(r, "decoder output", where["decoder"])
        if kind == "classifier":
            logits = probe(x)
            what = where.get("head", where["encoder"])
            if tuple(logits.shape) != (len(x), n_classes):
                raise ValueError(f"{what}: logits of shape {tuple(logits.shape)}; the dataset has "
                                 f"{n_classes} classes, so ({len(x)}, {n_classes}) was expected")
            _finite(logits, "logits", what)
    log.info("%s: %s %s, input %s, latent size %d, programs %s", name, fmt, kind, shape, probe.latent_dim,
             ", ".join(f"{p} {files[p]}" for p in files))
    return {
        "source": fmt, "arch": fmt, "kind": kind, "input_shape": list(shape), "n_classes": int(n_classes),
        "class_names": list(class_names), "latent_dim": probe.latent_dim,
        "programs": {p: _as_tensor(b) for p, b in data.items()}, "files": {p: str(f) for p, f in files.items()},
        "settings": settings, "dataset": dataset, "name": name,
    }
