"""Export a converted model to NIR (spiking graph) or ONNX (the T = 1 quantized network).

**NIR** (Neuromorphic Intermediate Representation, ``nir``). The SNN's fx graph becomes a
NIR graph, node for node: ``Conv2d`` → ``nir.Conv2d``, ``Linear`` → ``nir.Affine``, average
pooling → ``nir.AvgPool2d``, flatten → ``nir.Flatten``, a multi-level IF neuron →
``nir.IF``, a residual sum → two edges into one node (NIR sums a node's inputs), a strided
selection ``x[:, :, ::s, ::s]`` or a zero padding of channels (the CIFAR ResNets' option-A
shortcut) → a bias-free 1×1 ``nir.Conv2d`` with a 0/1 weight (exact). BatchNorm is
already folded into the conv/linear weights by the conversion. A neuron with threshold λ
and ``N`` spikes per step becomes ``nir.IF(r=1, v_threshold=q, v_reset=0)`` with the quantum
``q = λ/N``; it emits unit events, and the value ``q`` each event carries in multispike is
folded into the weights of the next conv/linear layer (``W' = W·q`` along its input
channels), together with constant factors such as the ×4 of a sum pooling written as
``4 × avg_pool``. Where no weight follows (the network's output, a residual sum of
differently scaled streams) a ``nir.Scale`` carries it; ``output="spikes"`` leaves the
output unscaled for readers without ``nir.Scale`` (the scale is then in the Output node's
``metadata["scale"]``; argmax is unchanged for a per-layer threshold).

What a reader of the file reproduces, and what it does not:

- weights, biases, strides, padding, pooling and topology: exactly (float32);
- ``N = 1`` (binary) neurons: the IF dynamics ``v += x``, spike when ``v`` reaches
  ``v_threshold``, **reset by subtraction**. NIR 1.0's ``IF`` specifies reset *to*
  ``v_reset`` (0 here), which differs whenever ``v`` overshoots the threshold, so every IF
  node carries ``metadata = {"reset": "subtract", "max_spikes": N, "v_init": q/2}``.
  snnTorch 1.0's ``import_from_nir`` subtracts but makes ``nir.IF`` a leaky neuron
  (``beta=0.9``) returning a tuple its graph cannot pass on; :func:`to_snntorch` reads the
  file with snnTorch's ``Leaky(beta=1, reset_mechanism="subtract", reset_delay=True)``
  instead, which reproduces multispike's binary SNN bit for bit (tested, and on all 1,100
  real N-MNIST samples of the NIR paper CNN, ``benchmarks/nir_nmnist.py``);
- the initial membrane ``v(0) = q/2`` (docs/method.md §3) is **not** expressible in NIR (it would
  be an input on the first step only): a reader that starts from ``v(0) = 0`` fires later
  (its cumulative count can be one spike lower at any step); set the membrane to
  ``metadata["v_init"]`` before the first step to reproduce multispike exactly;
- ``N > 1`` (multi-level) neurons: the node is an IF with threshold ``q`` that multispike
  lets fire up to ``N`` events in one step (``metadata["max_spikes"]``); a reader that
  emits at most one event per step reproduces it only where no step needs more — use a
  multi-spike reader (sinabs ``IAF`` with ``MaxSpike(N)``:
  :func:`~multispike.pipelines.export.sinabs.sinabs_from_nir`, tested) for an exact run;
- spike ties: multispike fires at ``v ≥ q``, NIR at ``v > v_threshold`` (on the threshold);
- shapes are NIR's: unbatched (``nir.Flatten`` with ``start_dim=0`` on the ``(C, H, W)``
  input type, as NIR's type check requires). Readers built on nirtorch (snnTorch) map it
  to ``nn.Flatten(0, -1)``, so feed them one unbatched sample ``(C, H, W)`` per step.
"""

from __future__ import annotations

import copy
import math
import operator
from pathlib import Path
from typing import Literal

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ...convert import MultiLevelIFNeuron, SpikingNetwork
from ...convert.modules import get_module
from ...convert.signals import add_into
from .errors import ExportError

__all__ = ["export_nir", "graph_with_shapes"]

_ALIAS_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_ALIAS_METHODS = {"contiguous", "clone", "float"}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}


class _Value:
    """A tensor of the SNN graph in NIR: the sum of ``sources``' outputs times ``scale``."""

    def __init__(self, sources: list[str], shape: tuple[int, ...], scale: Tensor | None = None):
        self.sources, self.shape, self.scale = sources, shape, scale


class _NirBuilder:
    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []

    def add(self, name: str, node: nir.NIRNode, value: _Value, shape) -> _Value:
        """Add ``node`` fed by ``value`` (its scale must be folded already)."""
        name = name.replace(".", "_")
        self.nodes[name] = node
        self.edges += [(src, name) for src in value.sources]
        return _Value([name], tuple(shape))

    def materialize(self, value: _Value, where: str) -> _Value:
        """Put a pending scale into a ``nir.Scale`` node."""
        if value.scale is None:
            return value
        scale = _expand_scale(value.scale, value.shape)
        return self.add(
            f"{where}_scale",
            nir.Scale(scale=scale),
            _Value(value.sources, value.shape),
            value.shape,
        )


def _expand_scale(scale: Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """A scalar or per-channel (dim 0 of the unbatched shape) scale at full ``shape``."""
    s = scale.detach().double()
    if s.dim() == 1 and len(shape) > 1:
        s = s.view(-1, *([1] * (len(shape) - 1)))
    return s.expand(shape).float().numpy().copy()


def _fold_input_scale(weight: Tensor, scale: Tensor | None, groups: int = 1) -> Tensor:
    """``W'[o, i] = W[o, i]·s[i]`` for a scalar or per-input-channel scale ``s``."""
    if scale is None:
        return weight
    s = scale.detach().to(weight)
    if s.dim() == 0:
        return weight * s
    out_ch, in_per_group = weight.shape[:2]
    s = s.view(groups, 1, in_per_group).expand(groups, out_ch // groups, in_per_group)
    s = s.reshape(out_ch, in_per_group)
    return weight * s.view(out_ch, in_per_group, *([1] * (weight.dim() - 2)))


def _pair(v) -> np.ndarray:
    return np.array(v if isinstance(v, (tuple, list)) else (v, v))


def _shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["tensor_meta"].shape[1:])


def _const(arg) -> float | None:
    return float(arg) if isinstance(arg, (int, float)) and not isinstance(arg, bool) else None


def graph_with_shapes(model: SpikingNetwork) -> fx.GraphModule:
    """A CPU copy of the SNN's graph, neurons at one step, every node's one-sample output
    shape in ``node.meta["tensor_meta"]`` (the exporters' starting point)."""
    gm = copy.deepcopy(model.net).cpu().eval()
    for neuron in gm.modules():
        if isinstance(neuron, MultiLevelIFNeuron):
            neuron.timesteps = 1
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros(1, *model.input_shape))
    return gm


def export_nir(
    model: SpikingNetwork,
    path: str | Path | None = None,
    *,
    output: Literal["values", "spikes"] = "values",
) -> nir.NIRGraph:
    """The spiking network as a NIR graph (written to ``path`` when given).

    Args:
        model: a :class:`SpikingNetwork` (not modified).
        path: write the graph there with ``nir.write`` (HDF5).
        output: ``"values"`` ends the graph with the exact output values (a ``nir.Scale``
            after a final neuron); ``"spikes"`` ends it with the final neurons' events.

    Raises:
        ExportError: an operation NIR cannot express (max pooling, an unfolded BatchNorm,
            a product of signals, ...), naming the graph node.
    """
    if not isinstance(model, SpikingNetwork):
        raise TypeError(f"export_nir expects a SpikingNetwork, got {type(model).__name__}")
    if output not in ("values", "spikes"):
        raise ValueError(f"output must be 'values' or 'spikes', got {output!r}")
    gm = graph_with_shapes(model)
    builder = _NirBuilder(gm)
    values: dict[fx.Node, _Value] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            shape = tuple(model.input_shape)
            builder.nodes["input"] = nir.Input(input_type=np.array(shape))
            values[node] = _Value(["input"], shape)
        elif node.op == "output":
            _output(builder, node, values, output)
        else:
            values[node] = _convert_node(builder, node, values)
    graph = nir.NIRGraph(nodes=builder.nodes, edges=builder.edges, type_check=False)
    graph.metadata = {"producer": "multispike", "timesteps": model.timesteps}
    if path is not None:
        nir.write(str(path), graph)
    return graph


def _output(builder: _NirBuilder, node: fx.Node, values: dict, output: str) -> None:
    (result,) = node.args
    if not isinstance(result, fx.Node):
        raise ExportError(f"the model returns {type(result).__name__}: NIR export needs one tensor")
    value = values[result]
    metadata = {}
    if output == "values":
        value = builder.materialize(value, "output")
    elif value.scale is not None:
        metadata["scale"] = _expand_scale(value.scale, value.shape)
    builder.add(
        "output",
        nir.Output(output_type=np.array(value.shape), metadata=metadata),
        value,
        value.shape,
    )


def _convert_node(builder: _NirBuilder, node: fx.Node, values: dict) -> _Value:
    gm = builder.gm
    shape = _shape(node)
    inputs = [values[a] for a in node.all_input_nodes if a in values]
    stack = node.meta.get("nn_module_stack") or {}
    owner = next(reversed(stack), "") if stack else ""
    where = f"{node.op} {getattr(node.target, '__name__', node.target)} ({node.name}"
    where += f" in {owner})" if owner else ")"
    if node.op == "call_module":
        mod = get_module(gm, node.target)
        if isinstance(mod, _ALIAS_MODULES):
            return inputs[0]
        if isinstance(mod, MultiLevelIFNeuron):
            return _neuron(builder, node.target, mod, inputs[0], shape)
        if isinstance(mod, nn.Conv2d):
            return _conv(builder, node.target, mod, inputs[0], shape)
        if isinstance(mod, nn.Linear):
            return _linear(builder, node.target, mod, inputs[0], shape)
        if isinstance(mod, nn.AvgPool2d):
            if mod.ceil_mode or (mod.divisor_override is not None):
                raise ExportError(f"{where}: ceil_mode/divisor_override have no NIR form")
            return _avgpool(
                builder, node.target, inputs[0], mod.kernel_size, mod.stride, mod.padding, shape
            )
        if isinstance(mod, nn.AdaptiveAvgPool2d):
            return _adaptive_avgpool(builder, node.target, inputs[0], where, shape)
        if isinstance(mod, nn.Flatten):
            return _flatten(builder, node.target, inputs[0], where, shape)
        raise ExportError(
            f"{where}: {type(mod).__name__} has no NIR counterpart (NIR has conv, linear, "
            "average pooling, flatten, sums and neurons); --format onnx or sinabs export it"
        )
    if node.op == "call_function":
        fn = node.target
        if fn in (operator.add, operator.iadd, torch.add, add_into) and len(inputs) == 2:
            a, b = (builder.materialize(v, f"{node.name}_{i}") for i, v in enumerate(inputs))
            return _Value(a.sources + b.sources, shape)
        if fn in (operator.mul, torch.mul, operator.truediv, torch.div) and len(inputs) == 1:
            factor = _const(next((a for a in node.args if not isinstance(a, fx.Node)), None))
            if factor is None:
                raise ExportError(f"{where}: only products with a constant number are exported")
            if fn in (operator.truediv, torch.div):
                factor = 1.0 / factor
            value = inputs[0]
            scale = torch.tensor(factor) if value.scale is None else value.scale * factor
            return _Value(value.sources, value.shape, scale)
        if fn is F.avg_pool2d:
            names = ["input", "kernel_size", "stride", "padding", "ceil_mode"]
            args = dict(zip(names, node.args, strict=False))
            args.update(node.kwargs)
            if args.get("ceil_mode") or args.get("divisor_override") is not None:
                raise ExportError(f"{where}: ceil_mode/divisor_override have no NIR form")
            kernel = args["kernel_size"]
            stride = args.get("stride") or kernel
            return _avgpool(
                builder, node.name, inputs[0], kernel, stride, args.get("padding", 0), shape
            )
        if fn is F.adaptive_avg_pool2d:
            return _adaptive_avgpool(builder, node.name, inputs[0], where, shape)
        if fn is torch.flatten:
            return _flatten(builder, node.name, inputs[0], where, shape)
        if fn is operator.getitem and len(inputs) == 1:
            return _strided_selection(builder, node, inputs[0], where, shape)
        if fn is F.pad and len(inputs) == 1:
            return _channel_padding(builder, node, inputs[0], where, shape)
    if node.op == "call_method":
        if node.target in _ALIAS_METHODS:
            return inputs[0]
        if node.target in _FLATTEN_METHODS:
            return _flatten(builder, node.name, inputs[0], where, shape)
    raise ExportError(
        f"{where} has no NIR counterpart (supported: conv, linear, average pooling, "
        "flatten, sums, constant factors, strided selection, channel padding, neurons); "
        "--format onnx or sinabs export it"
    )


def _neuron(b: _NirBuilder, name: str, mod: MultiLevelIFNeuron, value: _Value, shape) -> _Value:
    value = b.materialize(value, name)
    quantum = mod.quantum.detach().cpu()
    q = _expand_scale(quantum, shape)
    node = nir.IF(
        r=np.ones(shape, dtype=np.float32),
        v_threshold=q,
        v_reset=np.zeros(shape, dtype=np.float32),
        metadata={"reset": "subtract", "max_spikes": mod.max_spikes, "v_init": q / 2},
    )
    out = b.add(name, node, value, shape)
    return _Value(out.sources, out.shape, quantum)


def _conv(b: _NirBuilder, name: str, mod: nn.Conv2d, value: _Value, shape) -> _Value:
    if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
        raise ExportError(f"{name}: padding {mod.padding!r}/{mod.padding_mode} has no NIR form")
    weight = _fold_input_scale(mod.weight.detach().cpu(), value.scale, mod.groups)
    bias = mod.bias.detach().cpu() if mod.bias is not None else torch.zeros(mod.out_channels)
    node = nir.Conv2d(
        input_shape=tuple(value.shape[1:]),
        weight=weight.numpy(),
        stride=_pair(mod.stride),
        padding=_pair(mod.padding),
        dilation=_pair(mod.dilation),
        groups=mod.groups,
        bias=bias.numpy(),
    )
    return b.add(name, node, value, shape)


def _linear(b: _NirBuilder, name: str, mod: nn.Linear, value: _Value, shape) -> _Value:
    if len(value.shape) != 1:
        raise ExportError(f"{name}: nir.Affine takes flat (features,) inputs, got {value.shape}")
    weight = _fold_input_scale(mod.weight.detach().cpu(), value.scale)
    bias = mod.bias.detach().cpu() if mod.bias is not None else torch.zeros(mod.out_features)
    return b.add(name, nir.Affine(weight=weight.numpy(), bias=bias.numpy()), value, shape)


def _avgpool(b: _NirBuilder, name: str, value: _Value, kernel, stride, padding, shape) -> _Value:
    node = nir.AvgPool2d(kernel_size=_pair(kernel), stride=_pair(stride), padding=_pair(padding))
    out = b.add(name, node, value, shape)
    return _Value(out.sources, out.shape, value.scale)  # per-channel scales commute


def _adaptive_avgpool(b: _NirBuilder, name: str, value: _Value, where: str, shape) -> _Value:
    (h, w), (oh, ow) = value.shape[1:], shape[1:]
    if h % oh or w % ow:
        raise ExportError(f"{where}: adaptive pooling {h}x{w} → {oh}x{ow} is not a fixed kernel")
    kernel = (h // oh, w // ow)
    return _avgpool(b, name, value, kernel, kernel, 0, shape)


def _flatten(b: _NirBuilder, name: str, value: _Value, where: str, shape) -> _Value:
    if len(shape) != 1 or math.prod(value.shape) != shape[0]:
        raise ExportError(f"{where}: only flattening (B, ...) to (B, features) is exported")
    if len(value.shape) == 1:
        return value
    node = nir.Flatten(input_type={"input": np.array(value.shape)}, start_dim=0, end_dim=-1)
    out = b.add(name, node, value, shape)
    scale = value.scale
    if scale is not None and scale.dim() == 1:  # per channel → per feature
        scale = scale.repeat_interleave(math.prod(value.shape[1:]))
    return _Value(out.sources, out.shape, scale)


def _strided_selection(b: _NirBuilder, node: fx.Node, value: _Value, where: str, shape) -> _Value:
    """``x[:, :, ::sh, ::sw]`` is a 1×1 convolution, stride ``(sh, sw)``, identity weight."""
    index = node.args[1]
    index = index if isinstance(index, tuple) else (index,)
    steps = []
    for k, item in enumerate(index):
        whole = isinstance(item, slice) and item.start in (None, 0) and item.stop is None
        if k < 2 and not (whole and item.step in (None, 1)):
            raise ExportError(f"{where}: slicing the batch or channel axis has no NIR form")
        if not whole:
            raise ExportError(f"{where}: only whole strided slices x[:, :, ::s, ::s] are exported")
        steps.append(item.step or 1)
    if len(value.shape) != 3 or len(steps) > 4:
        raise ExportError(f"{where}: strided selection is exported on (B, C, H, W) tensors only")
    stride = (steps + [1, 1, 1, 1])[2:4]
    channels = value.shape[0]
    weight = torch.eye(channels).view(channels, channels, 1, 1)
    return _fixed_conv(b, node.name, weight, stride, value, shape)


def _channel_padding(b: _NirBuilder, node: fx.Node, value: _Value, where: str, shape) -> _Value:
    """``F.pad(x, (0, 0, 0, 0, p0, p1))``: a 1×1 convolution with a 0/1 weight, ``p0`` zero
    channels before and ``p1`` after (the CIFAR ResNets' option-A shortcut)."""
    pad = tuple(node.args[1] if len(node.args) > 1 else node.kwargs["pad"])
    mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
    fill = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
    if mode != "constant" or fill not in (None, 0, 0.0) or len(value.shape) != 3:
        raise ExportError(f"{where}: only zero padding of channels is exported")
    if len(pad) != 6 or any(pad[:4]) or min(pad) < 0:
        raise ExportError(f"{where}: only channel padding (0, 0, 0, 0, p0, p1) is exported")
    channels, (before, after) = value.shape[0], pad[4:]
    weight = torch.zeros(before + channels + after, channels, 1, 1)
    weight[before : before + channels, :, 0, 0] = torch.eye(channels)
    return _fixed_conv(b, node.name, weight, (1, 1), value, shape)


def _fixed_conv(b: _NirBuilder, name: str, weight: Tensor, stride, value: _Value, shape) -> _Value:
    """A bias-free 1×1 ``nir.Conv2d`` with a given 0/1 weight; the pending scale folds in
    (each output is one input times its scale: exact)."""
    weight = _fold_input_scale(weight, value.scale)
    node = nir.Conv2d(
        input_shape=tuple(value.shape[1:]),
        weight=weight.numpy(),
        stride=_pair(tuple(stride)),
        padding=_pair(0),
        dilation=_pair(1),
        groups=1,
        bias=np.zeros(weight.shape[0], dtype=np.float32),
    )
    return b.add(name, node, value, shape)
