"""torch.fx graph surgery: trace a model, check it, find activation call sites, swap modules.

Everything here works on a traced copy; the traced graph keeps the source model's
qualified names, so ANN, QANN and SNN layers line up by name.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timm.layers import BatchNormAct2d, FrozenBatchNormAct2d
from timm.models import get_notrace_functions, get_notrace_modules
from torch import fx, nn

from .errors import ConversionError
from .modules import get_module, set_module
from .rewrites import STATIC_REWRITES, apply_static_rewrites

__all__ = [
    "ActivationSite",
    "activation_sites",
    "node_owner",
    "relu_ceiling",
    "replace_sites",
    "trace",
]


# timm's own no-trace list, except BatchNorm+act layers: those are traced *through* so the
# BatchNorm can be folded and the activation quantized.
_TIMM_LEAVES = tuple(
    m for m in get_notrace_modules() if m not in (BatchNormAct2d, FrozenBatchNormAct2d)
)
_TIMM_AUTOWRAP = tuple(get_notrace_functions())


class _Tracer(fx.Tracer):
    """fx tracer honouring timm's no-trace modules and our own spiking/quantizing layers."""

    def __init__(self, extra_leaves: tuple[type, ...] = ()) -> None:
        super().__init__(autowrap_functions=_TIMM_AUTOWRAP)
        self.extra_leaves = _TIMM_LEAVES + extra_leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if type(m) in STATIC_REWRITES:
            return False
        return isinstance(m, self.extra_leaves) or super().is_leaf_module(m, qualname)


def trace(
    model: nn.Module,
    input_shape: tuple[int, ...] | None = None,
    extra_leaves: tuple[type, ...] = (),
) -> fx.GraphModule:
    """Trace an eval-mode deepcopy of ``model``; the caller's model is not touched.

    Args:
        model: the network to trace.
        input_shape: one input sample's shape; needed only by layers that branch on it.
        extra_leaves: module types to keep as opaque ``call_module`` nodes.

    Raises:
        ConversionError: the model's forward cannot be traced symbolically.
    """
    from .neuron import MultiLevelIFNeuron
    from .quant import MultiLevelQuantizer

    work = copy.deepcopy(model).eval()
    apply_static_rewrites(work, input_shape)
    tracer = _Tracer(extra_leaves + (MultiLevelQuantizer, MultiLevelIFNeuron))
    try:
        graph = tracer.trace(work)
    except Exception as err:  # fx raises many types; all mean "forward is not traceable"
        raise ConversionError(
            f"cannot trace {type(model).__name__}.forward with torch.fx ({type(err).__name__}: "
            f"{err}). Remove data-dependent control flow from forward, or register the "
            "offending module with timm.layers.register_notrace_module."
        ) from err
    gm = fx.GraphModule(work, graph, class_name=type(model).__name__)
    _drop_asserts(gm)
    return gm


def _drop_asserts(gm: fx.GraphModule) -> None:
    """Remove input checks (``torch._assert``) and the shape queries that only fed them.

    They are no-ops on valid input, but their extra uses of a conv's output would block
    BatchNorm folding.
    """
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and getattr(node.target, "__name__", "") == "_assert":
            gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.recompile()


# --------------------------------------------------------------------------- activation sites

_RELU_FUNCTIONS = {F.relu: "relu", torch.relu: "relu", torch.relu_: "relu", F.relu_: "relu"}
_RELU6_FUNCTIONS = {F.relu6: "relu6"}
_RELU_METHODS = {"relu", "relu_"}


class ActivationSite:
    """One call of a ReLU-like activation in the traced graph.

    Attributes:
        node: the fx node.
        path: the qualified name its quantizer/neuron gets (unique per call site).
        ceiling: upper clip of the activation (6 for ReLU6, ``inf`` for ReLU).
        source: description for reports, e.g. ``"nn.ReLU layer1.0.act1"``.
    """

    def __init__(self, node: fx.Node, path: str, ceiling: float, source: str) -> None:
        self.node, self.path, self.ceiling, self.source = node, path, ceiling, source


def relu_ceiling(gm: fx.GraphModule, node: fx.Node) -> float | None:
    """``inf`` for ReLU, 6 for ReLU6 / hardtanh(0, 6), ``None`` when not a ReLU-like call."""
    if node.op == "call_module":
        mod = get_module(gm, node.target)
        if isinstance(mod, nn.ReLU):
            return float("inf")
        if isinstance(mod, nn.Hardtanh) and mod.min_val == 0.0:  # ReLU6 is a Hardtanh
            return float(mod.max_val)
    elif node.op == "call_function":
        if node.target in _RELU_FUNCTIONS:
            return float("inf")
        if node.target in _RELU6_FUNCTIONS:
            return 6.0
        if node.target is F.hardtanh:
            lo = node.kwargs.get("min_val", node.args[1] if len(node.args) > 1 else -1.0)
            hi = node.kwargs.get("max_val", node.args[2] if len(node.args) > 2 else 1.0)
            return float(hi) if lo == 0.0 else None
    elif node.op == "call_method" and node.target in _RELU_METHODS:
        return float("inf")
    return None


def node_owner(node: fx.Node) -> str:
    """Qualified name of the module whose forward issued ``node`` (``""`` for the root)."""
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack), "") if stack else ""


def activation_sites(gm: fx.GraphModule) -> list[ActivationSite]:
    """Every ReLU/ReLU6 call site in graph order, each with its own unique module path.

    A module called once keeps its own path; a module called again (a reused ``nn.ReLU``)
    or a functional call gets ``<owner>.<name>_<k>``, free in the graph module.
    """
    taken = {name for name, _ in gm.named_modules()}
    seen_modules: set[str] = set()
    sites = []
    for node in gm.graph.nodes:
        ceiling = relu_ceiling(gm, node)
        if ceiling is None:
            continue
        if node.op == "call_module" and node.target not in seen_modules:
            seen_modules.add(node.target)
            path = node.target
            kind = type(get_module(gm, path)).__name__
            source = f"nn.{kind} {path}"
        else:
            if node.op == "call_module":
                base, kind = node.target, f"nn.{type(get_module(gm, node.target)).__name__}"
                source = f"{kind} {base} (reused)"
            else:
                owner = node_owner(node)
                name = getattr(node.target, "__name__", str(node.target)).rstrip("_")
                base = f"{owner}.{name}" if owner else name
                source = f"{'F.' if node.op == 'call_function' else '.'}{name}() in " + (
                    owner or "forward"
                )
            path, k = base, 1
            while path in taken:
                path, k = f"{base}_{k}", k + 1
        taken.add(path)
        sites.append(ActivationSite(node, path, ceiling, source))
    return sites


def replace_sites(
    gm: fx.GraphModule,
    sites: list[ActivationSite],
    factory: Callable[[ActivationSite], nn.Module],
) -> None:
    """Replace each activation call site by ``call_module`` of ``factory(site)`` at its path."""
    for site in sites:
        node = site.node
        set_module(gm, site.path, factory(site))
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(site.path, (node.args[0],))
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    gm.graph.lint()
