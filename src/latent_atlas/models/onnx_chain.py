"""ONNX graphs as torch layer chains, and ONNX files with their external data.

onnxruntime runs an ONNX graph (`loaded.OnnxProgram`) only as a whole: no torch layers, so
permutation importance takes its rows path. A graph that converts to torch modules which form a
chain of layers gets the fast paths that a torch.export program gets (`loaded.read_chain`):

- `torch_from_onnx` converts the graph with onnx2torch and keeps the module only if it computes
  what onnxruntime computes on a probe batch (to 1e-5 of the largest output). That run records
  each node's output shape (`node.meta['tensor_meta']`), which the reader needs to read per-channel
  constants, reshapes and global pooling.
- `read_torch_chain` reads the converted module as a list of torch layers that `chain.fold_chain`
  and the importance paths understand, or names the node that stops it.

onnx2torch 1.5.15 knows the ONNX ops up to opset 17, while torch 2.14 exports opset 20. A newer
graph is taken down to opset 17 by onnx's version converter, whose adapters refuse what opset 17
cannot express. Two things are done first, both exact: Gelu (opset 20, no earlier form) moves to a
domain of ours that a converter below maps to nn.GELU; a Reshape to a constant shape with no 0 drops
`allowzero=1` (the flag only changes what a 0 means; torch's dynamo exporter sets it, onnx2torch
refuses it).

`onnx_bytes` reads a .onnx file with its external data (the `.onnx.data` file torch.onnx.export
writes beside it), so that model.pt holds the whole graph.
"""

from __future__ import annotations

import math
import operator
import os
from pathlib import Path

import onnx
import onnx2torch
import torch
from onnx import external_data_helper, numpy_helper, version_converter
from onnx2torch.node_converters import (OnnxBinaryMathOperation, OnnxConstant, OnnxCopyIdentity,
                                        OnnxDropoutDynamic, OnnxFunction, OnnxGlobalAveragePool,
                                        OnnxGlobalAveragePoolWithKnownInputShape, OnnxMatMul,
                                        OnnxReduceStaticAxes, OnnxReshape, get_converter)
from onnx2torch.node_converters.binary_math_operations import _TORCH_FUNCTION_FROM_ONNX_TYPE as _BINARY
from onnx2torch.node_converters.registry import add_converter
from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from latent_atlas.errors import summary
from latent_atlas.models.loaded import OnnxProgram, chain_end, constant_affine, read_file

ONNX2TORCH_OPSET = 17  # the newest opset onnx2torch 1.5.15 maps
_DOMAIN = "latent_atlas"  # ops moved out of the standard domain for our own converters
_STANDARD = ("", "ai.onnx")
_RELATIVE_TOLERANCE = 1e-5


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def onnx_bytes(path: str | os.PathLike, key: str) -> bytes:
    """The bytes of an ONNX model file, with its external data embedded.

    A graph that keeps tensors in other files (`location` in the graph, relative to the .onnx file)
    is returned with them loaded (`SerializeToString()`), so the bytes are self-contained; a graph
    without external data is returned as the file's bytes, unchanged.

    Raises FileNotFoundError / OSError (from `read_file`) for the file itself, and ValueError naming
    `key`, the file and the data file when a data file is missing or unreadable, or when the graph
    with its data exceeds protobuf's 2 GiB limit (one message holds the whole graph).
    """
    data = read_file(path, key)
    try:
        model = onnx.load_model_from_string(data)
    except Exception:
        return data  # not a graph onnx can parse: onnxruntime says why when it loads the bytes
    external = [t for t in external_data_helper._get_all_tensors(model)  # onnx's own walk
                if external_data_helper.uses_external_data(t)]
    if not external:
        return data
    folder = Path(path).parent
    size = len(data)
    for tensor in external:
        info = external_data_helper.ExternalDataInfo(tensor)
        file = folder / info.location
        if not file.is_file():
            raise ValueError(f"{key}: {path} keeps tensor {tensor.name!r} in the external data file {file}, "
                             f"which is missing (keep the data file that was saved with the graph beside it)")
        size += info.length if info.length else max(file.stat().st_size - (info.offset or 0), 0)
    if size > onnx.checker.MAXIMUM_PROTOBUF:
        raise ValueError(f"{key}: {path} with its external data is {size / 2**30:.2f} GiB; model.pt stores an "
                         f"ONNX graph as one protobuf message, which is limited to 2 GiB (export a smaller "
                         f"model, or use format torch_export)")
    try:
        external_data_helper.load_external_data_for_model(model, str(folder))
    except Exception as err:
        raise ValueError(f"{key}: cannot read the external data of {path} ({summary(err)})") from None
    return model.SerializeToString()


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------
@add_converter(operation_type="Gelu", version=1, domain=_DOMAIN)
def _gelu(node, graph) -> OperationConverterResult:
    approximate = node.attributes.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise NotImplementedError(f"Gelu with approximate={approximate!r}")
    return OperationConverterResult(torch_module=nn.GELU(approximate=approximate),
                                    onnx_mapping=onnx_mapping_from_node(node))


def _constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """The graph's constant values by name: initializers and Constant node outputs."""
    values = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in _STANDARD:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                values[node.output[0]] = value
    return values


def _for_onnx2torch(model: onnx.ModelProto) -> tuple[onnx.ModelProto | None, str]:
    """A copy of `model` that onnx2torch can convert, at opset <= 17 (module docstring), or None and
    the node that has no converter."""
    # shapes first: onnx's shape inference does not pass through ops of our domain, and onnx2torch's
    # converters read the shapes it records (BatchNormalization after a Gelu)
    model = onnx.shape_inference.infer_shapes(model)
    opsets = {o.domain: o.version for o in model.opset_import}
    standard = max((opsets[d] for d in _STANDARD if d in opsets), default=ONNX2TORCH_OPSET)
    constants = _constants(model.graph)
    for index, node in enumerate(model.graph.node):
        name = node.name or f"#{index}"
        if node.domain in _STANDARD and node.op_type == "Gelu":
            node.domain = _DOMAIN
            continue
        if node.domain in _STANDARD and node.op_type == "Reshape" and len(node.input) > 1 \
                and node.input[1] in constants and 0 not in numpy_helper.to_array(constants[node.input[1]]):
            for attribute in node.attribute:
                if attribute.name == "allowzero":
                    attribute.i = 0
        version = min(standard, ONNX2TORCH_OPSET) if node.domain in _STANDARD else opsets.get(node.domain)
        try:
            get_converter(operation_type=node.op_type, version=version or 1, domain=node.domain or "")
        except NotImplementedError:
            op = f"{node.domain}.{node.op_type}" if node.domain else node.op_type
            opset = standard if node.domain in _STANDARD else version
            return None, f"node {name!r} ({op}, opset {opset}): onnx2torch has no converter for it"
    if any(node.domain == _DOMAIN for node in model.graph.node):
        model.opset_import.append(onnx.helper.make_opsetid(_DOMAIN, 1))
    if standard > ONNX2TORCH_OPSET:
        try:
            model = version_converter.convert_version(model, ONNX2TORCH_OPSET)
        except Exception as err:
            return None, (f"onnx's version converter cannot take the graph from opset {standard} to "
                          f"{ONNX2TORCH_OPSET}, the newest onnx2torch maps ({summary(err)})")
    return model, ""


def _difference(got, want: dict[str, torch.Tensor]) -> str:
    """Why the converted module's outputs are not onnxruntime's ("" when they agree to 1e-5 of the
    largest value of each output)."""
    got = [got] if isinstance(got, torch.Tensor) else list(got)
    if len(got) != len(want):
        return f"the converted module returns {len(got)} outputs, the graph {len(want)}"
    for (name, w), g in zip(want.items(), got):
        if tuple(g.shape) != tuple(w.shape):
            return f"output {name!r} has shape {tuple(g.shape)} in torch, {tuple(w.shape)} in onnxruntime"
        if not w.numel():
            continue
        scale = float(w.abs().max())
        diff = float((g.float() - w.float()).abs().max())
        if not diff <= _RELATIVE_TOLERANCE * scale:  # NaN fails too
            return (f"the converted module's output {name!r} differs from onnxruntime's by up to {diff:.3g} "
                    f"(largest value {scale:.3g}; {_RELATIVE_TOLERANCE:g} of it is allowed)")
    return ""


def torch_from_onnx(data: bytes, probe: torch.Tensor, where: str) -> tuple[nn.Module | None, str]:
    """The ONNX graph `data` as a torch module (onnx2torch, eval mode) that computes what onnxruntime
    computes, and "" -- or None and why not.

    Parameters
    ----------
    data : the graph's bytes (self-contained: `onnx_bytes`).
    probe : (B, ...) float32 inputs of the graph's one input, on the CPU: both runtimes run it, and
        every output must agree to 1e-5 of its largest absolute value. The module's nodes keep the
        output shapes of this run (`node.meta['tensor_meta']`, read by `read_torch_chain`).
    where : what the graph is, for the reasons ("models.x.source.encoder (byom/encoder.onnx)").

    Never raises: the reason names what failed (onnxruntime's refusal, a node whose op onnx2torch
    does not map, a conversion error, the largest difference of the outputs), and the caller keeps
    running the graph with onnxruntime.
    """
    try:
        reference = OnnxProgram(data, where)
    except ValueError as err:
        return None, str(err)
    try:
        model, why = _for_onnx2torch(onnx.load_model_from_string(data))
        if model is None:
            return None, f"{where}: {why}"
        module = onnx2torch.convert(model).eval()
    except Exception as err:
        return None, f"{where}: onnx2torch cannot convert the graph ({summary(err)})"
    x = probe.detach().float().cpu()
    try:
        with torch.no_grad():
            got = ShapeProp(module).propagate(x)
            want = reference(x)
    except Exception as err:
        return None, f"{where}: the converted module fails on a batch of shape {tuple(x.shape)} ({summary(err)})"
    why = _difference(got, want)
    return (None, f"{where}: {why}") if why else (module, "")


# --------------------------------------------------------------------------------------------
# Reading the converted module as a chain
# --------------------------------------------------------------------------------------------
_LAYERS = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.ReLU,
           nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid)
_DROPPED = (nn.Identity, nn.Dropout, OnnxCopyIdentity, OnnxDropoutDynamic)  # identities in eval mode
_BINARY_OPS = {function: op for op, function in _BINARY.items()}  # torch.add -> 'Add', ...


def _op_type(layer: nn.Module) -> str:
    """The ONNX op an onnx2torch module computes ('Add', 'Tanh', 'ReduceMean'), else its class."""
    if isinstance(layer, OnnxBinaryMathOperation):
        return _BINARY_OPS.get(layer.math_op_function, "binary operation")
    if isinstance(layer, OnnxFunction):
        return layer.function.__name__.capitalize()
    return getattr(layer, "operation_type", None) or type(layer).__name__


def _shape(node: torch.fx.Node) -> tuple | None:
    """A node's output shape from the probe run of `torch_from_onnx`, batch as None; None unknown."""
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return None if shape is None else (None, *(int(d) for d in shape[1:]))


def _map_pool(shape: tuple | None) -> nn.Module | str:
    """Average pooling over the whole (H, W) map of `shape` as an AvgPool2d, or why not."""
    if shape is None or len(shape) != 4:
        return "pooling of a map whose size is unknown (the module was not run by torch_from_onnx)"
    return nn.AvgPool2d(tuple(shape[2:]))


def _torch_layer(layer: nn.Module, node: torch.fx.Node, current: torch.fx.Node,
                 constants: dict) -> list[nn.Module] | str:
    """The torch module(s) computing one call_module node that reads `current` (and constants),
    or why it cannot be read."""
    shape_in, shape_out = _shape(current), _shape(node)
    if isinstance(layer, nn.Flatten):
        return [layer] if (layer.start_dim, layer.end_dim) == (1, -1) else \
            f"flatten({layer.start_dim}, {layer.end_dim}) is not a flatten to (batch, features)"
    if isinstance(layer, _LAYERS):
        return [layer]
    if isinstance(layer, _DROPPED):
        return [] if not layer.training else "dropout in training mode"
    if isinstance(layer, OnnxFunction):
        return [nn.Tanh()] if layer.function is torch.tanh else f"{_op_type(layer)} is not read"
    if isinstance(layer, OnnxBinaryMathOperation):
        if layer.broadcast == 1 and layer.axis is not None:
            return "an old-style broadcast along an axis is not read"
        op = _op_type(layer).lower()
        first, other = node.args
        if first is not current:  # constant (op) x
            if op == "div":
                return "a constant divided by the activation is not read"
            op, other = ("rsub" if op == "sub" else op), first
        if other not in constants:
            return "an operand that is not a constant"
        affine = constant_affine(op, constants[other], shape_in)
        return affine if isinstance(affine, str) else [affine]
    if isinstance(layer, OnnxReshape):
        if shape_in is not None and shape_out is not None and len(shape_out) == 2 and \
                shape_out[1] == math.prod(shape_in[1:]):
            return [nn.Flatten()]
        return f"a reshape of {shape_in} to {shape_out} is not a flatten to (batch, features)"
    if isinstance(layer, (OnnxGlobalAveragePool, OnnxGlobalAveragePoolWithKnownInputShape)):
        pool = _map_pool(shape_in)
        return pool if isinstance(pool, str) else [pool]
    if isinstance(layer, OnnxReduceStaticAxes):
        if layer.operation_type != "ReduceMean" or shape_in is None or \
                sorted(a % len(shape_in) for a in layer.axes or []) != [2, 3] or len(shape_in) != 4:
            return f"{layer.operation_type} over axes {layer.axes} (only the mean over the map is read)"
        pool = _map_pool(shape_in)
        return pool if isinstance(pool, str) else [pool] + ([] if layer.keepdims else [nn.Flatten()])
    if isinstance(layer, OnnxMatMul):
        weight = constants.get(node.args[1]) if node.args[0] is current else None
        if weight is None or weight.dim() != 2 or shape_in is None or len(shape_in) != 2:
            return "a matrix product that is not (batch, features) @ a constant matrix"
        linear = nn.Linear(weight.shape[0], weight.shape[1], bias=False, device="meta")
        linear.weight = nn.Parameter(weight.detach().t().contiguous(), requires_grad=False)
        return [linear]
    return f"{type(layer).__name__} is not read by the chain reader"


def read_torch_chain(module: torch.fx.GraphModule) -> tuple[list[nn.Module] | None, str]:
    """The layers of an onnx2torch module (`torch_from_onnx`) that is a plain chain (one input,
    each node feeding the next, one output), as torch modules sharing its weights, and "" -- or
    None and the node that stops the reading, named with its ONNX op ("node 'node_add' (Add): reads
    2 activations (a residual or branching block)").

    Read: Conv2d, Linear (Gemm; MatMul by a constant matrix), BatchNorm1d/2d, ReLU / LeakyReLU /
    GELU / SiLU (also Sigmoid then Mul) / ELU / Tanh / Sigmoid, MaxPool2d, AvgPool2d, global
    average pooling (GlobalAveragePool, ReduceMean over the map) as an AvgPool2d over the map,
    Flatten (also a Reshape to (batch, features)), Dropout and Identity (dropped in eval mode), and
    Add / Sub / Mul / Div by a constant number or per-channel constant as a `ChannelAffine` (an
    input normalisation). Shapes come from the probe run of `torch_from_onnx`; without them
    per-channel constants, reshapes and global pooling are not read.
    """
    graph = getattr(module, "graph", None)
    if graph is None:
        return None, f"{type(module).__name__} has no graph"
    constants: dict[torch.fx.Node, object] = {}
    layers: list[nn.Module] = []
    current = None
    sigmoid_input = None  # x of a Sigmoid just read: x * sigmoid(x) is a SiLU
    for node in graph.nodes:
        if node.op == "placeholder":
            if current is not None:
                return None, f"the graph takes several inputs (node {node.name!r})"
            current = node
            continue
        if node.op == "get_attr":  # an initializer
            constants[node] = module.get_buffer(node.target)
            continue
        if node.op == "output":
            return chain_end(node, current, layers, "graph")
        if node.op == "call_function" and node.target is operator.getitem:
            if node.args == (current, 0):
                continue  # output 0 of a node with several (Dropout's mask, BatchNorm's statistics)
            return None, f"node {node.name!r}: takes output {node.args[1]} of {node.args[0]}"
        if node.op != "call_module":
            return None, f"node {node.name!r} ({node.target}): not a module of onnx2torch"
        layer = module.get_submodule(node.target)
        if isinstance(layer, OnnxConstant):
            constants[node] = layer.value
            continue
        where = f"node {node.target!r} ({_op_type(layer)})"
        args = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, torch.fx.Node)]
        activations = [a for a in args if a not in constants]
        if isinstance(layer, OnnxBinaryMathOperation) and _op_type(layer) == "Mul" and sigmoid_input is not None \
                and len(node.args) == 2 and set(node.args) == {sigmoid_input, current}:
            layers[-1] = nn.SiLU()
            current, sigmoid_input = node, None
            continue
        if len(activations) > 1:
            return None, f"{where}: reads {len(activations)} activations (a residual or branching block)"
        if activations != [current]:
            return None, f"{where}: does not read the previous layer's output"
        read = _torch_layer(layer, node, current, constants)
        if isinstance(read, str):
            return None, f"{where}: {read}"
        sigmoid_input = current if isinstance(layer, nn.Sigmoid) else None
        layers.extend(read)
        current = node
    return None, "the graph has no output node"
