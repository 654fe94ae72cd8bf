"""Which values of a traced graph are spike signals: the support check (every op between
neurons must be one an SNN can run), max-pool sites, residual adds and the walks through
value-preserving ops (reshape, padding, slicing, concatenation).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .errors import ConversionError
from .graph import node_owner, relu_ceiling
from .modules import get_module

__all__ = [
    "add_into",
    "check_supported",
    "is_add",
    "max_pool_nodes",
    "preserved_inputs",
    "signal_nodes",
    "signal_users",
    "traces_to_source",
]

# --------------------------------------------------------------------------- support check

_LINEAR_MODULES = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
)  # fmt: skip
_MAX_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d)


def add_into(a: Any, b: Any) -> Any:
    """``a + b``, written into ``a`` when ``a`` already has the result's shape and dtype.

    What :func:`~multispike.convert.to_snn` puts at a residual join whose ``a`` is a fresh
    tensor nothing else reads (``x += shortcut`` as timm writes it): the same values as
    ``a + b`` without a new activation-sized tensor. With broadcasting or type promotion
    (autocast) it adds out of place.
    """
    if (
        isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and a.shape == torch.broadcast_shapes(a.shape, b.shape)
        and a.dtype == torch.result_type(a, b)
    ):
        return a.add_(b)
    return a + b


_PASS_FUNCTIONS = {
    add_into, operator.add, operator.iadd, operator.sub, operator.isub, operator.neg,
    operator.getitem, torch.add, torch.sub, torch.cat, torch.concat, torch.stack, torch.flatten,
    torch.reshape,
    torch.squeeze, torch.unsqueeze, torch.permute, torch.transpose, torch.mean, torch.sum,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.linear, F.conv1d, F.conv2d, F.conv3d,
    F.dropout, F.dropout2d, F.batch_norm, getattr,
}  # fmt: skip
_MAX_FUNCTIONS = {F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool2d}
_SCALAR_FUNCTIONS = {operator.mul, operator.imul, operator.truediv, torch.mul, torch.div}
_PASS_METHODS = {
    "view", "reshape", "flatten", "mean", "sum", "contiguous", "permute", "transpose",
    "squeeze", "unsqueeze", "add", "add_", "sub", "expand", "clone", "size", "dim",
    "__getitem__", "chunk", "split", "to", "type_as", "float",
}  # fmt: skip
_SCALAR_METHODS = {"mul", "mul_", "div", "div_"}
_SHAPE_METHODS = {"size", "dim", "numel"}


def signal_nodes(gm: fx.GraphModule) -> set[fx.Node]:
    """Nodes carrying a tensor derived from the input (not shapes, not parameters)."""
    signal: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            signal.add(node)
            continue
        if node.op in ("get_attr", "output"):
            continue
        if node.op == "call_method" and node.target in _SHAPE_METHODS:
            continue
        if node.op == "call_function" and node.target is getattr:
            continue  # x.shape, x.ndim, ...
        if any(arg in signal for arg in node.all_input_nodes):
            signal.add(node)
    return signal


def signal_users(node: fx.Node) -> list[fx.Node]:
    """Users that consume ``node``'s values (not ``x.shape``/``x.ndim``/``x.size()`` queries)."""
    return [
        u
        for u in node.users
        if not (u.op == "call_function" and u.target is getattr)
        and not (u.op == "call_method" and u.target in _SHAPE_METHODS)
    ]


def _describe(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return f"module {node.target} ({type(get_module(gm, node.target)).__name__})"
    name = getattr(node.target, "__name__", str(node.target))
    where = node_owner(node) or "forward"
    return f"{'method .' if node.op == 'call_method' else 'function '}{name}() in {where}"


def _is_supported(gm: fx.GraphModule, node: fx.Node, signal: set[fx.Node]) -> str | None:
    """``None`` when ``node`` is exact in a multi-level SNN, else the reason it is not."""
    if relu_ceiling(gm, node) is not None or node.op in ("output", "placeholder"):
        return None
    if node.op == "call_module":
        from .neuron import MultiLevelIFNeuron
        from .quant import MultiLevelQuantizer

        mod = get_module(gm, node.target)
        if isinstance(mod, _LINEAR_MODULES + _MAX_MODULES):
            return None
        if isinstance(mod, (MultiLevelQuantizer, MultiLevelIFNeuron)):
            return None
        if isinstance(mod, nn.ConstantPad2d) and mod.value == 0:
            return None
        return f"{type(mod).__name__} is neither a ReLU nor a linear or pooling layer"
    if node.op == "call_function":
        if node.target in _PASS_FUNCTIONS or node.target in _MAX_FUNCTIONS:
            return None
        if node.target is F.pad:
            return None if _is_zero_pad(node) else "padding other than constant zero"
        if node.target in _SCALAR_FUNCTIONS:
            if sum(arg in signal for arg in node.all_input_nodes) <= 1:
                return None
            return "product of two signals (a gate) is not linear"
    if node.op == "call_method":
        if node.target in _PASS_METHODS:
            return None
        if node.target in _SCALAR_METHODS:
            if sum(arg in signal for arg in node.all_input_nodes) <= 1:
                return None
            return "product of two signals (a gate) is not linear"
    name = getattr(node.target, "__name__", str(node.target))
    return f"{name} is neither a ReLU nor a linear or pass-through op"


def check_supported(gm: fx.GraphModule, model_name: str = "") -> None:
    """Raise a ConversionError listing every unsupported op on the signal path."""
    signal = signal_nodes(gm)
    culprits = []
    for node in gm.graph.nodes:
        if node in signal or node.op == "output":
            reason = _is_supported(gm, node, signal)
            if reason is not None:
                culprits.append((_describe(gm, node), reason))
    if culprits:
        raise ConversionError(
            f"{model_name or gm.__class__.__name__} has {len(culprits)} operation(s) on the "
            "signal path that a multi-level SNN cannot compute exactly:",
            culprits,
        )


def max_pool_nodes(gm: fx.GraphModule) -> Iterator[fx.Node]:
    """Max-pooling call sites (exact at T=1; per-step max of spike payloads for T>1)."""
    for node in gm.graph.nodes:
        is_module = node.op == "call_module" and isinstance(
            get_module(gm, node.target), _MAX_MODULES
        )
        if is_module or (node.op == "call_function" and node.target in _MAX_FUNCTIONS):
            yield node


# --------------------------------------------------------------------------- value-preserving walks

_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add, add_into}
_ADD_METHODS = {"add", "add_"}

# Value-preserving ops: every output value is a value of one input (moved, copied, dropped
# or selected by max), so a tensor of spike values stays one. Dropout is the identity in eval
# mode, the mode `trace` puts a model in. Zero-valued constant padding (`nn.ZeroPad*d`,
# `nn.ConstantPad*d` with value 0, `F.pad` in constant mode with value 0) belongs here too.
_PRESERVING_MODULES = (
    nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
_CONSTANT_PADS = (nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d)  # nn.ZeroPad*d too
_JOINING_FUNCTIONS = {torch.cat, torch.concat, torch.stack}  # preserve every tensor in args[0]
_PRESERVING_FUNCTIONS = _JOINING_FUNCTIONS | {
    operator.getitem, torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze,
    torch.permute, torch.transpose, F.dropout, F.dropout2d,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool2d,
}  # fmt: skip
_PRESERVING_METHODS = {
    "view", "reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze", "expand",
    "contiguous", "clone", "__getitem__", "to", "float", "type_as",
}  # fmt: skip


def _is_zero_pad(node: fx.Node) -> bool:
    """Whether ``node`` is ``F.pad`` in constant mode with value 0 (the defaults)."""
    if node.op != "call_function" or node.target is not F.pad:
        return False
    mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
    value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
    return mode == "constant" and not value


def is_add(node: fx.Node) -> bool:
    """Whether ``node`` is an addition (``a + b``, ``+=``, ``torch.add``, ``.add``/``.add_``)."""
    return (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (
        node.op == "call_method" and node.target in _ADD_METHODS
    )


def preserved_inputs(gm: fx.GraphModule, node: fx.Node) -> list[Any] | None:
    """The arguments whose values ``node`` passes on unchanged, or ``None`` if it makes new ones.

    ``node`` passes values on unchanged when it is a value-preserving op: a reshape, permute,
    slice, copy, dtype/device move, identity, dropout (eval), max-pool, zero-valued constant
    pad (the first argument) or a concatenation/stack (every tensor joined). Arguments that
    only steer the op (shapes, indices, ``type_as``'s reference) are not listed.
    """
    if node.op == "call_module":
        mod = get_module(gm, node.target)
        keeps = isinstance(mod, _PRESERVING_MODULES) or (
            isinstance(mod, _CONSTANT_PADS) and mod.value == 0
        )
    elif node.op == "call_function":
        if node.target in _JOINING_FUNCTIONS:
            return list(node.args[0] if node.args else node.kwargs["tensors"])
        keeps = node.target in _PRESERVING_FUNCTIONS or _is_zero_pad(node)
    else:
        keeps = node.op == "call_method" and node.target in _PRESERVING_METHODS
    return [node.args[0]] if keeps and node.args else None


def traces_to_source(
    gm: fx.GraphModule,
    node: fx.Node,
    is_source: Callable[[fx.Node], bool],
    *,
    through_adds: bool,
    memo: dict[fx.Node, bool] | None = None,
) -> bool:
    """Whether ``node``'s values are values of source nodes, passed on unchanged.

    True when ``is_source(node)``, or when ``node`` is a value-preserving op
    (:func:`preserved_inputs`) whose preserved arguments all trace to sources; with
    ``through_adds``, also when ``node`` is an addition (:func:`is_add`) of two nodes that
    do. ``memo`` caches answers across calls: share it only between calls with one rule.
    """
    memo = {} if memo is None else memo
    if node not in memo:
        if is_source(node):
            memo[node] = True
        else:
            inputs = node.args[:2] if through_adds and is_add(node) else preserved_inputs(gm, node)
            memo[node] = bool(inputs) and all(
                isinstance(a, fx.Node)
                and traces_to_source(gm, a, is_source, through_adds=through_adds, memo=memo)
                for a in inputs
            )
    return memo[node]
